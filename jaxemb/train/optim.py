"""The training toolkit shared by pre-training, fine-tuning and the probe heads: AdamW with one weight-decay
mask (no decay on biases and LayerNorm), learning-rate schedules (warmup + linear decay, slanted-triangular,
constant), global-norm clipping and gradient accumulation, all from optax. Early stopping is in
`early_stopping.py`, macro-F1 in `jaxemb/metrics/classification.py`, hash dropout in `jaxemb/models/dropout.py`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("linear", "slanted_triangular", "constant")


def warmup_linear_decay(peak_lr: float, total_steps: int, warmup_steps: int, warmup_offset: int = 0):
  """Linear warmup to peak_lr over `warmup_steps`, then linear decay to 0 at `total_steps`.

  warmup_offset=0: step s < warmup runs at peak * s / warmup, so step 0 runs at 0 (optax's joined linear
  schedules; pre-training). warmup_offset=1: peak * (s + 1) / warmup, so the first step already learns
  (the fine-tuner, whose few-shot runs have only tens of steps).
  """
  warmup = max(int(warmup_steps), 0)

  def schedule(step):
    t = jnp.asarray(step, jnp.float32)
    rise = (t + warmup_offset) / max(warmup, 1)
    fall = jnp.maximum(0.0, (total_steps - t) / max(total_steps - warmup, 1))
    return peak_lr * jnp.where(t < warmup, rise, fall)

  return schedule


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
    return warmup_linear_decay(cfg.lr, total_steps, min(int(cfg.warmup_steps), max(total_steps - 1, 0)))
  if cfg.schedule == "slanted_triangular":
    return slanted_triangular(cfg.lr, total_steps, cfg.cut_frac, cfg.ratio)
  if cfg.schedule == "constant":
    return optax.constant_schedule(cfg.lr)
  raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")


def decay_mask(params):
  """True where weight decay applies: not on biases, not on LayerNorm (HF / the original's convention).
  On the encoder and the heads these are exactly the parameters with ndim < 2."""
  def keep(path, _):
    keys = [getattr(k, "key", str(k)) for k in path]
    return not (keys[-1] == "bias" or "LayerNorm" in keys)
  return jax.tree_util.tree_map_with_path(keep, params)


def adamw(learning_rate, weight_decay: float, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
  """optax.adamw with `decay_mask`: the one AdamW of pre-training, fine-tuning and the probe heads."""
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)


def make_optimizer(cfg, total_steps: int):
  """Returns (optax transformation, schedule). With cfg.accumulate > 1, gradients of that many micro-batches
  are averaged before one update (optax.MultiSteps). Accumulation does NOT add contrastive negatives: each
  micro-batch's NT-Xent / SupCon sees only its own rows."""
  schedule = make_schedule(cfg, total_steps)
  tx = optax.chain(
      optax.clip_by_global_norm(cfg.clip_norm) if cfg.clip_norm > 0 else optax.identity(),
      adamw(schedule, cfg.weight_decay, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
  )
  if cfg.accumulate > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=int(cfg.accumulate))
  return tx, schedule
