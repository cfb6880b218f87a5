"""LoRA (Hu et al. 2021) on the encoder's dense layers, and the weight-space operations of adaptation.

A dense layer stores W (out, in) and computes y = x W^T + b. Its adapter adds (alpha / r) * (x A^T) B^T with
A (r, in) and B (out, r); B starts at zero, so training starts exactly at the base model. Because
x W^T + s (x A^T) B^T = x (W + s B A)^T, the adapter forward IS the forward of the merged weight
W + s B A: training runs the encoder on merged weights (one r x in by out x r product per layer, small next to
the activations) and export writes the merged weights as an ordinary checkpoint, with no adapter code needed
to load it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

# Dense layers of one encoder layer, by their parameter path below `layer_<i>`.
TARGETS = {
    "attention": ("attention/query", "attention/key", "attention/value", "attention/output/dense"),
    "ffn": ("intermediate/dense", "output/dense"),
}


def target_paths(encoder_params: dict, targets: str = "attention,ffn") -> list[str]:
  """'layer_<i>/<module>' paths (each holding a 2-D `weight`) the adapters attach to, in layer order."""
  groups = [t.strip() for t in targets.split(",") if t.strip()]
  bad = sorted(set(groups) - set(TARGETS))
  if bad or not groups:
    raise ValueError(f"config.lora.targets: unknown target(s) {bad or targets!r}; choose from {sorted(TARGETS)}")
  layers = sorted((k for k in encoder_params if k.startswith("layer_")), key=lambda k: int(k.split("_")[1]))
  return [f"{layer}/{m}" for layer in layers for g in groups for m in TARGETS[g]]


def init_lora(encoder_params: dict, rank: int, targets: str = "attention,ffn", seed: int = 0) -> dict:
  """{path: {"a": r x in (N(0, 1/r)), "b": out x r (zeros)}} for every target dense layer."""
  if rank < 1:
    raise ValueError(f"config.lora.rank must be >= 1 to add adapters, got {rank}")
  flat = traverse_util.flatten_dict(encoder_params, sep="/")
  rng = np.random.default_rng(seed)
  out = {}
  for path in target_paths(encoder_params, targets):
    w = flat[f"{path}/weight"]
    out_dim, in_dim = w.shape
    out[path] = {"a": (rng.standard_normal((rank, in_dim)) / np.sqrt(rank)).astype(np.float32),
                 "b": np.zeros((out_dim, rank), np.float32)}
  return out


def merge(encoder_params: dict, lora: dict, scale: float) -> dict:
  """Encoder params with W + scale * B A at every adapted layer (a pure function: jit- and grad-safe)."""
  flat = dict(traverse_util.flatten_dict(encoder_params, sep="/"))
  for path, ab in lora.items():
    key = f"{path}/weight"
    flat[key] = flat[key] + scale * jnp.matmul(ab["b"], ab["a"], precision=jax.lax.Precision.HIGHEST)
  return traverse_util.unflatten_dict(flat, sep="/")


def interpolate(base: Any, tuned: Any, alpha: float) -> Any:
  """(1 - alpha) * base + alpha * tuned, leaf by leaf (WiSE-FT, Wortsman et al. 2022), float32 numpy.
  alpha = 0 returns the base arrays' values bit for bit, alpha = 1 the tuned ones."""
  if alpha == 0.0:
    return jax.tree.map(lambda b, t: np.array(b, np.float32), base, tuned)
  if alpha == 1.0:
    return jax.tree.map(lambda b, t: np.array(t, np.float32), base, tuned)
  a = np.float32(alpha)
  return jax.tree.map(lambda b, t: ((np.float32(1) - a) * np.asarray(b, np.float32)
                                    + a * np.asarray(t, np.float32)).astype(np.float32), base, tuned)
