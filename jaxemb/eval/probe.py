"""The frozen-encoder probe: a head trained on cached embeddings, all seeds of one shot size in one jit.

Every seed of a shot size has a training set of the same size (few-shot sampling takes min(N, n_class) per
class whatever the seed), so the seeds stack into a leading axis and one `jax.vmap`-ed program trains them
together: init, AdamW, early stopping on validation macro-F1 and the final predictions all happen inside a
single jitted call, with no host round trip per step.

Training is full-batch while the training set fits in `batch_size` rows, otherwise each step draws
`batch_size` rows with replacement (so "all" on a large pool costs the same per step as 64-shot).
Features are centred on the run's own training set and divided by its RMS, which makes one learning rate
work across encoders whose embedding norms differ by 10x; only the run's training rows are used for this,
never validation or test.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxemb.eval.heads import make_head


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
  lr: float = 1e-3
  weight_decay: float = 1e-2
  dropout: float = 0.1
  max_steps: int = 1000
  eval_every: int = 10      # steps between validation evaluations
  patience: int = 10        # evaluations without a validation macro-F1 improvement before stopping
  batch_size: int = 256     # full batch up to this many training rows


@dataclasses.dataclass
class ProbeResult:
  probs_SxExC: np.ndarray   # class probabilities of the eval rows, per seed
  best_val_f1_S: np.ndarray
  best_step_S: np.ndarray   # step whose parameters were kept
  steps_run_S: np.ndarray   # steps trained before early stopping


def macro_f1_jnp(y_V: jax.Array, pred_V: jax.Array, num_classes: int) -> jax.Array:
  """Macro-F1 over classes present in y or pred (same definition as metrics.macro_f1), jit-friendly."""
  t_VxC = jax.nn.one_hot(y_V, num_classes)
  p_VxC = jax.nn.one_hot(pred_V, num_classes)
  tp_C = (t_VxC * p_VxC).sum(0)
  denom_C = t_VxC.sum(0) + p_VxC.sum(0)
  present_C = denom_C > 0
  f1_C = jnp.where(present_C, 2 * tp_C / jnp.maximum(denom_C, 1), 0.0)
  return f1_C.sum() / jnp.maximum(present_C.sum(), 1)


def _bucket_rows(n: int) -> int:
  """Pad a training-set size to a power of two (>= 8) so shot sizes share compiled programs."""
  return max(8, 1 << (int(n) - 1).bit_length())


@functools.partial(jax.jit, static_argnames=("head_kind", "num_classes", "settings"))
def _fit_seeds(x_NxD, y_N, train_idx_SxT, train_w_SxT, val_idx_V, eval_idx_E, seeds_S, *,
               head_kind: str, num_classes: int, settings: ProbeSettings):
  d = x_NxD.shape[1]
  head = make_head(head_kind, d, num_classes, settings.dropout)
  opt = optax.adamw(settings.lr, weight_decay=settings.weight_decay)
  n_rows = train_idx_SxT.shape[1]
  sampled = n_rows > settings.batch_size

  def fit_one(train_idx_T, w_T, seed):
    xtr_TxD = x_NxD[train_idx_T]
    ytr_T = y_N[train_idx_T]
    wsum = w_T.sum()
    mu_D = (w_T[:, None] * xtr_TxD).sum(0) / wsum
    scale = jnp.sqrt((w_T[:, None] * (xtr_TxD - mu_D) ** 2).sum() / (wsum * d)) + 1e-6
    norm = lambda x: (x - mu_D) / scale
    xtr_TxD = norm(xtr_TxD)
    xval_VxD, yval_V = norm(x_NxD[val_idx_V]), y_N[val_idx_V]

    init_key, loop_key = jax.random.split(jax.random.PRNGKey(seed))
    params = head.init(init_key, jnp.zeros((1, d), x_NxD.dtype))
    opt_state = opt.init(params)

    def loss_fn(params, x_BxD, y_B, w_B, rng):
      logits_BxC = head.apply(params, x_BxD, deterministic=False, rngs={"dropout": rng})
      ce_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, y_B)
      return (ce_B * w_B).sum() / w_B.sum()

    def train_step(carry, _):
      params, opt_state, key = carry
      key, batch_key, drop_key = jax.random.split(key, 3)
      if sampled:
        pos_B = jax.random.choice(batch_key, n_rows, (settings.batch_size,), p=w_T / wsum)
        batch = (xtr_TxD[pos_B], ytr_T[pos_B], jnp.ones((settings.batch_size,), x_NxD.dtype))
      else:
        batch = (xtr_TxD, ytr_T, w_T)
      grads = jax.grad(loss_fn)(params, *batch, drop_key)
      updates, opt_state = opt.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state, key), None

    def chunk(state):
      params, opt_state, key, step, best, best_f1, best_step, bad = state
      (params, opt_state, key), _ = jax.lax.scan(train_step, (params, opt_state, key), None,
                                                 length=settings.eval_every)
      step = step + settings.eval_every
      pred_V = head.apply(params, xval_VxD).argmax(-1)
      f1 = macro_f1_jnp(yval_V, pred_V, num_classes)
      improved = f1 > best_f1  # strict: on a tie keep the earlier (less fitted) parameters
      best = jax.tree.map(lambda new, old: jnp.where(improved, new, old), params, best)
      return (params, opt_state, key, step, best,
              jnp.where(improved, f1, best_f1), jnp.where(improved, step, best_step),
              jnp.where(improved, 0, bad + 1))

    def keep_going(state):
      step, bad = state[3], state[7]
      return (step < settings.max_steps) & (bad < settings.patience)

    state = (params, opt_state, loop_key, jnp.int32(0), params, jnp.float32(-1.0), jnp.int32(0),
             jnp.int32(0))
    _, _, _, steps_run, best, best_f1, best_step, _ = jax.lax.while_loop(keep_going, chunk, state)
    probs_ExC = jax.nn.softmax(head.apply(best, norm(x_NxD[eval_idx_E])), -1)
    return probs_ExC, best_f1, best_step, steps_run

  return jax.vmap(fit_one, in_axes=(0, 0, 0))(train_idx_SxT, train_w_SxT, seeds_S)


def train_probe(x_NxD: np.ndarray | jax.Array, y_N: np.ndarray, train_idx_per_seed: list[np.ndarray],
                seeds: list[int], val_idx_V: np.ndarray, eval_idx_E: np.ndarray, *, head_kind: str,
                num_classes: int, settings: ProbeSettings) -> ProbeResult:
  """Trains one head per seed (all at once) and returns probabilities on x[eval_idx_E].

  x_NxD: embeddings of every document (float32); y_N: int class ids (only train/val rows are read
  during training). train_idx_per_seed[s]: indices of seed s's training set; all the same length.
  """
  sizes = {len(ix) for ix in train_idx_per_seed}
  if len(sizes) != 1:
    raise ValueError(f"all seeds of one shot size must have equal training-set sizes, got {sorted(sizes)}")
  n = sizes.pop()
  if n == 0:
    raise ValueError("empty training set")
  t = _bucket_rows(n)
  train_idx_SxT = np.zeros((len(seeds), t), np.int32)
  train_w_SxT = np.zeros((len(seeds), t), np.float32)
  for s, ix in enumerate(train_idx_per_seed):
    train_idx_SxT[s, :n] = ix
    train_w_SxT[s, :n] = 1.0
  probs, best_f1, best_step, steps_run = _fit_seeds(
      jnp.asarray(x_NxD, jnp.float32), jnp.asarray(y_N, jnp.int32), train_idx_SxT, train_w_SxT,
      jnp.asarray(val_idx_V, jnp.int32), jnp.asarray(eval_idx_E, jnp.int32),
      jnp.asarray(seeds, jnp.uint32), head_kind=head_kind, num_classes=num_classes, settings=settings)
  return ProbeResult(np.asarray(probs), np.asarray(best_f1), np.asarray(best_step), np.asarray(steps_run))
