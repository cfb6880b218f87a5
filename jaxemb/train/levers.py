"""Levers that keep an adapted encoder close to the one it started from (docs/ADAPTATION.md).

A strong sentence encoder (all-MiniLM-L6-v2 was contrastively trained on ~1B pairs) is easy to make worse:
continued training pulls it away from what made it good. Each lever is a config field, off by default, so the
paper's objectives run unchanged:

- `freeze.embeddings`, `freeze.layers` = k: the embeddings and the lowest k layers get no gradient and no
  update (their backward pass is skipped too).
- `lora.rank` = r > 0: the encoder weights are frozen; rank-r adapters (alpha / r scale) on the attention
  and/or FFN dense layers train instead, merged into the weights for the forward pass and on export.
- `mlm_head.warmup_steps` = n: for the first n steps only the heads train (LP-FT: a random head trained
  jointly with the encoder distorts its features; warm it up first).
- `toward_base.l2sp` = lambda: + lambda/2 * ||theta - theta0||^2 over the encoder (L2-SP: decay toward the
  initial weights, not toward zero).
- `toward_base.distill` = w: + w * mean_i ||n(e_i) - n(e0_i)||^2, n = l2 normalisation, e0 = the frozen initial
  encoder's embedding of the same rows without dropout (embedding self-distillation).

The initial encoder theta0 is an argument of the jitted step (never a compiled-in constant).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxemb import objectives
from jaxemb.models import lora as lora_lib
from jaxemb.models.encoder import encode, mean_pool


def defaults(c: ml_collections.ConfigDict) -> None:
  """Adds the adaptation blocks to a training config (all levers off)."""
  c.freeze = ml_collections.ConfigDict()
  c.freeze.embeddings = False
  c.freeze.layers = 0              # the lowest k encoder layers get no update
  c.lora = ml_collections.ConfigDict()
  c.lora.rank = 0                  # > 0: LoRA adapters instead of training the encoder weights
  c.lora.alpha = 16.0              # adapter scale = alpha / rank
  c.lora.targets = "attention,ffn"
  c.mlm_head = ml_collections.ConfigDict()
  c.mlm_head.bias_init = "zeros"   # zeros or unigram (log-frequencies of the training corpus's tokens)
  c.mlm_head.warmup_steps = 0      # optimiser updates with the encoder frozen while only the heads train
  c.toward_base = ml_collections.ConfigDict()
  c.toward_base.l2sp = 0.0              # lambda of lambda/2 * ||theta - theta0||^2 (encoder)
  c.toward_base.distill = 0.0           # weight of the embedding self-distillation term


@dataclasses.dataclass(frozen=True)
class Levers:
  """The adaptation levers of a run, read from its config (`from_config`: the config holds every default)."""
  frozen_embeddings: bool
  frozen_layers: int
  lora_scale: float                # lora.alpha / lora.rank; 0 = no LoRA
  warmup_steps: int                # optimiser updates, as every step count of the config
  l2sp: float
  distill: float
  accumulate: int                  # micro-batches per optimiser update: the train state's step counts micro-batches
  head_trains: bool                # the objective's loss reads the MLM head (Objective.uses_mlm_head)

  @classmethod
  def from_config(cls, cfg: ml_collections.ConfigDict, num_layers: int) -> "Levers":
    if not 0 <= int(cfg.freeze.layers) <= num_layers:
      raise ValueError(f"config.freeze.layers must be in [0, {num_layers}], got {cfg.freeze.layers}")
    if int(cfg.lora.rank) < 0 or float(cfg.toward_base.l2sp) < 0 or float(cfg.toward_base.distill) < 0:
      raise ValueError("config.lora.rank, config.toward_base.l2sp and config.toward_base.distill must be >= 0")
    if cfg.mlm_head.bias_init not in ("zeros", "unigram"):
      raise ValueError(f"config.mlm_head.bias_init must be zeros or unigram, got {cfg.mlm_head.bias_init!r}")
    rank = int(cfg.lora.rank)
    return cls(head_trains=bool(objectives.get(cfg.objective).uses_mlm_head(cfg)), frozen_embeddings=bool(cfg.freeze.embeddings), frozen_layers=int(cfg.freeze.layers),
               lora_scale=float(cfg.lora.alpha) / rank if rank else 0.0,
               warmup_steps=int(cfg.mlm_head.warmup_steps), l2sp=float(cfg.toward_base.l2sp),
               distill=float(cfg.toward_base.distill), accumulate=int(cfg.optim.accumulate))

  @property
  def needs_initial(self) -> bool:
    """Whether the step needs the initial encoder theta0 as an argument."""
    return self.l2sp > 0 or self.distill > 0

  @property
  def active(self) -> bool:
    return bool(self.frozen_embeddings or self.frozen_layers or self.lora_scale or self.warmup_steps or self.l2sp
                or self.distill or not self.head_trains)

  def _in_warmup(self, step: jax.Array) -> jax.Array:
    """Whether micro-step `step` belongs to one of the first `warmup_steps` optimiser updates."""
    return step // self.accumulate < self.warmup_steps

  # ---------------------------------------------------------------------------------------------- freezing
  def frozen(self, params: dict) -> dict:
    """Pytree of bools like params: True where a leaf never trains (static)."""
    def leaf_frozen(path, _):
      keys = [getattr(k, "key", str(k)) for k in path]
      if keys[0] == "mlm_head":  # a head the loss never reads gets no gradient, but weight decay would shrink it
        return not self.head_trains
      if keys[0] != "encoder":
        return False
      if self.lora_scale:
        return True  # the adapters train instead
      if keys[1] == "embeddings":
        return self.frozen_embeddings
      return keys[1].startswith("layer_") and int(keys[1].split("_")[1]) < self.frozen_layers
    return jax.tree_util.tree_map_with_path(leaf_frozen, params)

  def update_scale(self, params: dict, step: jax.Array) -> dict:
    """Per-leaf multiplier of the optimiser update: 0 for frozen leaves and, during the head warm-up, for
    every encoder / adapter leaf; 1 elsewhere. `step` counts micro-batches."""
    in_warmup = self._in_warmup(step)

    def scale(path, frozen):
      keys = [getattr(k, "key", str(k)) for k in path]
      if frozen:
        return jnp.float32(0.0)
      if keys[0] in ("encoder", "lora") and self.warmup_steps:
        return jnp.where(in_warmup, 0.0, 1.0).astype(jnp.float32)
      return jnp.float32(1.0)
    return jax.tree_util.tree_map_with_path(scale, self.frozen(params))

  def effective(self, params: dict, step: jax.Array) -> dict:
    """The params the objective sees at micro-step `step`: frozen leaves behind stop_gradient, adapters merged
    in."""
    frozen = self.frozen(params)
    out = jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, frozen)
    if self.warmup_steps:
      in_warmup = self._in_warmup(step)
      out["encoder"] = jax.tree.map(lambda p: jnp.where(in_warmup, jax.lax.stop_gradient(p), p), out["encoder"])
    if self.lora_scale:
      adapters = out.pop("lora")
      out["encoder"] = lora_lib.merge(out["encoder"], adapters, self.lora_scale)
    return out

  # ------------------------------------------------------------------------------- toward the initial encoder
  def penalties(self, effective_params: dict, pooled, initial_encoder: Any, *, config, dtype
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(extra loss, metrics) of L2-SP and self-distillation against the initial encoder `initial_encoder`."""
    extra, metrics = jnp.float32(0.0), {}
    if self.l2sp > 0:
      sq = sum(jnp.sum(jnp.square(p - p0)) for p, p0 in
               zip(jax.tree.leaves(effective_params["encoder"]), jax.tree.leaves(initial_encoder)))
      metrics["l2sp_sq_dist"] = sq
      extra = extra + 0.5 * self.l2sp * sq
    if self.distill > 0:
      if pooled is None:
        raise ValueError("config.toward_base.distill needs an objective that returns pooled embeddings")
      emb_NxD, ids_NxL, mask_NxL = pooled
      teacher_NxD = jax.lax.stop_gradient(mean_pool(
          encode(initial_encoder, ids_NxL, mask_NxL, config=config, dtype=dtype), mask_NxL))

      def unit(x):
        return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), 1e-12))
      d = jnp.mean(jnp.sum(jnp.square(unit(emb_NxD) - unit(teacher_NxD)), -1))
      metrics["distill_loss"] = d
      extra = extra + self.distill * d
    return extra, metrics


def add_adapters(cfg: ml_collections.ConfigDict, params: dict) -> dict:
  """params plus a "lora" subtree when config.lora.rank > 0."""
  if int(cfg.lora.rank) > 0:
    params = {**params, "lora": lora_lib.init_lora(params["encoder"], int(cfg.lora.rank), cfg.lora.targets,
                                                   seed=cfg.seed)}
  return params


def final_encoder(params: dict, cfg: ml_collections.ConfigDict) -> Any:
  """The trained encoder as plain weights: adapters merged (what export writes).

  The merge runs on this host's copy of the replicated arrays (numpy in, computed on a local device): host 0
  calls this alone (validation, export), and an operation on the global arrays would be a program over
  every host's devices that the other hosts never join (a hang on a multi-host run)."""
  if int(cfg.lora.rank) > 0:
    local = lambda tree: jax.tree.map(_local_copy, tree)  # noqa: E731
    return lora_lib.merge(local(params["encoder"]), local(params["lora"]),
                          float(cfg.lora.alpha) / int(cfg.lora.rank))
  return params["encoder"]


def _local_copy(x):
  """A replicated jax.Array's first local shard as numpy (every host holds a full copy); numpy unchanged."""
  return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)
