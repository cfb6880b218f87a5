"""Classification heads on the pooled embedding, as pure functions of a parameter dict.

Used by the probe (on cached embeddings) and by fine-tuning (on the encoder's mean embedding).
Plain jnp rather than a Flax module: the probe trains many heads inside one vmapped while-loop with
host-side initialisation and its own dropout masks, and a params dict is all either user needs.

- "probe": the paper's head (HF RobertaClassificationHead, fed the mean embedding instead of CLS):
  dropout -> dense(hidden) -> tanh -> dropout -> out(C); D*H + H*C weights (0.59M on roberta-base).
- "logreg": multinomial logistic regression, one dense layer (regularised by weight decay only).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

HEAD_KINDS = ("probe", "logreg")
Params = dict[str, Any]
# dropout_fn(x, site) -> x with dropout applied; `site` tells the two dropout layers apart.
DropoutFn = Callable[[jax.Array, int], jax.Array]


def init_head(kind: str, in_dim: int, num_classes: int, seed: int) -> Params:
  """Host-side init (NumPy): kernels N(0, 1/fan_in) (LeCun normal, Flax Dense's default), zero biases."""
  if kind not in HEAD_KINDS:
    raise ValueError(f"unknown head {kind!r} (expected one of {HEAD_KINDS})")
  rng = np.random.default_rng(seed)

  def dense(fan_in: int, fan_out: int) -> dict[str, np.ndarray]:
    return {"kernel": (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32),
            "bias": np.zeros((fan_out,), np.float32)}

  if kind == "probe":
    return {"dense": dense(in_dim, in_dim), "out_proj": dense(in_dim, num_classes)}
  return {"out_proj": dense(in_dim, num_classes)}


def apply_head(kind: str, params: Params, x_BxD: jax.Array, dropout_fn: DropoutFn | None = None) -> jax.Array:
  """Logits BxC. dropout_fn=None means evaluation (no dropout)."""
  drop = dropout_fn or (lambda x, site: x)
  if kind == "probe":
    h_BxH = jnp.tanh(drop(x_BxD, 0) @ params["dense"]["kernel"] + params["dense"]["bias"])
    return drop(h_BxH, 1) @ params["out_proj"]["kernel"] + params["out_proj"]["bias"]
  if kind == "logreg":
    return x_BxD @ params["out_proj"]["kernel"] + params["out_proj"]["bias"]
  raise ValueError(f"unknown head {kind!r} (expected one of {HEAD_KINDS})")

