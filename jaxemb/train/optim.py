"""AdamW (no decay on biases and LayerNorm), warmup + linear decay or slanted-triangular schedule,
global-norm clipping and gradient accumulation, all from optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("linear", "slanted_triangular", "constant")


def slanted_triangular(peak_lr: float, total_steps: int, cut_frac: float = 0.1, ratio: float = 32.0):
  """ULMFiT's STLR (Howard & Ruder 2018), as the DeCLUTR original uses it: a short linear rise to peak_lr
  over cut_frac of training, then a long linear fall to peak_lr / ratio."""
  cut = max(1, int(total_steps * cut_frac))

  def schedule(step):
    t = jnp.asarray(step, jnp.float32)
    p = jnp.where(t < cut, t / cut, 1.0 - (t - cut) / max(cut * (1.0 / cut_frac - 1.0), 1.0))
    p = jnp.clip(p, 0.0, 1.0)
    return peak_lr * (1.0 + p * (ratio - 1.0)) / ratio

  return schedule


def make_schedule(cfg, total_steps: int):
  """cfg: the config's `optim` section. total_steps counts optimiser updates."""
  if cfg.schedule == "linear":
    warmup = min(int(cfg.warmup_steps), max(total_steps - 1, 0))
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.lr, max(warmup, 1)),
         optax.linear_schedule(cfg.lr, 0.0, max(total_steps - warmup, 1))], [warmup])
  if cfg.schedule == "slanted_triangular":
    return slanted_triangular(cfg.lr, total_steps, cfg.cut_frac, cfg.ratio)
  if cfg.schedule == "constant":
    return optax.constant_schedule(cfg.lr)
  raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")


def decay_mask(params):
  """True where weight decay applies: not on biases, not on LayerNorm (HF / the original's convention)."""
  def keep(path, _):
    keys = [getattr(k, "key", str(k)) for k in path]
    return not (keys[-1] == "bias" or "LayerNorm" in keys)
  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(cfg, total_steps: int):
  """Returns (optax transformation, schedule). With cfg.accumulate > 1, gradients of that many micro-batches
  are averaged before one update (optax.MultiSteps). Accumulation does NOT add contrastive negatives: each
  micro-batch's NT-Xent / SupCon sees only its own rows."""
  schedule = make_schedule(cfg, total_steps)
  tx = optax.chain(
      optax.clip_by_global_norm(cfg.clip_norm) if cfg.clip_norm > 0 else optax.identity(),
      optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay, mask=decay_mask),
  )
  if cfg.accumulate > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=int(cfg.accumulate))
  return tx, schedule
