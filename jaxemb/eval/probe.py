"""The frozen-encoder probe: heads trained on cached embeddings, every (shots, seed) run in ONE jitted call.

The runs of one shot size (all seeds) are stacked on a leading axis and `jax.vmap`-ed through one program
that does AdamW, early stopping on validation macro-F1 (ties broken by validation loss) and the final
predictions, with no host round trip per step; every shot size is padded to the same shapes, so a whole
shots x seeds grid compiles ONE program per head. On CPU, vmap buys no FLOPs (cost is linear in the number
of runs) but XLA compilation costs seconds per program here. Runs of a group advance in lockstep; a run
whose patience is exhausted keeps its best parameters while the loop goes on for the others.

Rows per step: a run with at most `batch_size` training examples trains full-batch (padded rows weigh 0);
a larger one draws `batch_size` rows with replacement each step, so "all" on a big pool costs the same per
step as a few-shot run.

class_weight="balanced" weighs each training row's cross-entropy by n / (K * n_k) of its class (as
scikit-learn's option): on an imbalanced "all" pool the rare classes then count as much as the common ones.

Features are centred on the run's own training rows and divided by their RMS: one learning rate then works
for encoders whose embedding norms differ by 10x. Only the run's training rows enter these statistics.

Dropout masks and row draws come from the encoder's integer hash (`models.dropout.hash_bits`) of (seed,
step, position) rather than jax.random: threefry bits for ~10^5 decisions per run per step cost more than
the head's matmuls on CPU, and each jax.random call site adds compile time.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxemb.eval.heads import apply_head, init_head
from jaxemb.metrics.classification import macro_f1
from jaxemb.models.dropout import hash_bits, hash_dropout, mix32
from jaxemb.train import early_stopping
from jaxemb.train.optim import adamw


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
  """No defaults here: the values live in configs/eval.py (`config.probe`), read by evaluators/probe.py."""
  lr: float
  weight_decay: float
  dropout: float
  max_steps: int
  eval_every: int           # steps between validation evaluations
  patience: int             # evaluations without a validation macro-F1 improvement before stopping
  batch_size: int           # full batch up to this many training rows, sampled rows above


@dataclasses.dataclass
class ProbeResult:
  probs_RxExC: np.ndarray   # class probabilities of the eval rows, per run
  best_val_f1_R: np.ndarray
  best_step_R: np.ndarray   # step whose parameters were kept
  steps_run_R: np.ndarray   # steps trained before the run's patience ran out (or max_steps)


CLASS_WEIGHTS = ("none", "balanced")


def class_weights(y_train: np.ndarray, num_classes: int, kind: str = "none") -> np.ndarray:
  """Per-class loss weights, float32 [num_classes]. "none": all 1. "balanced": n / (K * n_k) over the K
  classes present in y_train (scikit-learn's class_weight="balanced"), so every present class carries the
  same total weight n / K; classes absent from y_train get 0 (no row of theirs is ever drawn)."""
  if kind not in CLASS_WEIGHTS:
    raise ValueError(f"class_weight must be one of {CLASS_WEIGHTS}, got {kind!r}")
  if kind == "none":
    return np.ones(num_classes, np.float32)
  counts_C = np.bincount(np.asarray(y_train, np.int64), minlength=num_classes).astype(np.float64)
  present = counts_C > 0
  w_C = np.zeros(num_classes, np.float64)
  w_C[present] = counts_C.sum() / (present.sum() * counts_C[present])
  return w_C.astype(np.float32)


def weighted_cross_entropy(logits_BxC: jax.Array, y_B: jax.Array, row_w_B: jax.Array,
                           class_w_C: jax.Array) -> jax.Array:
  """sum_i r_i c_(y_i) CE_i / sum_i r_i: row weights r (0 for padding rows) and class weights c.

  Normalised by the row weights, not by r * c: with "balanced" weights over a full batch the two agree
  (sum of c over the rows = n), and over sampled rows this is the unbiased estimate of the full-batch loss.
  """
  ce_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, y_B)
  return (ce_B * row_w_B * class_w_C[y_B]).sum() / row_w_B.sum()


def _bucket_rows(n: int) -> int:
  """Pad a training-set size to a power of two (>= 8) so grids of similar size share compiled programs."""
  return max(8, 1 << (int(n) - 1).bit_length())


@functools.partial(jax.jit, static_argnames=("head_kind", "num_classes", "settings"))
def _fit_runs(x_NxD, y_N, idx_RxT, n_R, val_idx_V, eval_idx_E, seeds_R, params0_R, class_w_RxC, *,
              head_kind: str, num_classes: int, settings: ProbeSettings):
  d = x_NxD.shape[1]
  t = idx_RxT.shape[1]
  b = min(t, settings.batch_size)
  opt = adamw(settings.lr, settings.weight_decay)  # the toolkit's: kernels decay, biases do not

  def fit_one(idx_T, n, seed, params, class_w_C):
    real_T = (jnp.arange(t) < n).astype(jnp.float32)
    xtr_TxD = x_NxD[idx_T]
    mu_D = (real_T[:, None] * xtr_TxD).sum(0) / n
    scale = jnp.sqrt((real_T[:, None] * (xtr_TxD - mu_D) ** 2).sum() / (n * d)) + 1e-6
    norm = lambda x: (x - mu_D) / scale
    xval_VxD, yval_V = norm(x_NxD[val_idx_V]), y_N[val_idx_V]
    full_batch = n <= b
    seed_key = mix32(seed.astype(jnp.uint32) ^ jnp.uint32(0x5BD1E995))

    def loss_fn(params, x_BxD, y_B, w_B, step_key):
      drop = lambda x, site: hash_dropout(x, settings.dropout, step_key, jnp.uint32(site + 1))
      logits_BxC = apply_head(head_kind, params, x_BxD, drop if settings.dropout > 0 else None)
      return weighted_cross_entropy(logits_BxC, y_B, w_B, class_w_C)

    def train_step(carry, step):
      params, opt_state = carry
      step_key = mix32(seed_key ^ mix32(step.astype(jnp.uint32)))
      # row draws: the stream (step_key, 0); dropout sites use (step_key, site + 1)
      drawn_B = (hash_bits((b,), step_key, jnp.uint32(0)) % n.astype(jnp.uint32)).astype(jnp.int32)
      pos_B = jnp.where(full_batch, jnp.arange(b), drawn_B)
      w_B = jnp.where(full_batch, real_T[:b], 1.0)
      row_B = idx_T[pos_B]
      grads = jax.grad(loss_fn)(params, norm(x_NxD[row_B]), y_N[row_B], w_B, step_key)
      updates, opt_state = opt.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    def chunk(state):
      params, opt_state, step, best, es = state
      steps = step + jnp.arange(settings.eval_every, dtype=jnp.int32)
      (params, opt_state), _ = jax.lax.scan(train_step, (params, opt_state), steps)
      step = step + settings.eval_every
      logits_VxC = apply_head(head_kind, params, xval_VxD)
      f1 = macro_f1(yval_V, logits_VxC.argmax(-1), num_classes, xp=jnp)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits_VxC, yval_V).mean()
      es, improved = early_stopping.update(es, f1, loss, step, xp=jnp)
      best = jax.tree.map(lambda new, old: jnp.where(improved, new, old), params, best)
      return params, opt_state, step, best, es

    def keep_going(state):
      step, es = state[2], state[4]
      return (step < settings.max_steps) & ~early_stopping.exhausted(es, settings.patience)

    state = (params, opt.init(params), jnp.int32(0), params, early_stopping.init(xp=jnp))
    _, _, steps_run, best, es = jax.lax.while_loop(keep_going, chunk, state)
    probs_ExC = jax.nn.softmax(apply_head(head_kind, best, norm(x_NxD[eval_idx_E])), -1)
    return probs_ExC, es.best_f1, es.best_step, steps_run

  return jax.vmap(fit_one)(idx_RxT, n_R, seeds_R, params0_R, class_w_RxC)


def train_probe(x_NxD: np.ndarray | jax.Array, y_N: np.ndarray, train_idx_per_run: list[np.ndarray],
                seed_per_run: list[int], val_idx_V: np.ndarray, eval_idx_E: np.ndarray, *, head_kind: str,
                num_classes: int, settings: ProbeSettings, group_per_run: list | None = None,
                class_weight: str = "none") -> ProbeResult:
  """Trains one head per run and returns probabilities on x[eval_idx_E], run order preserved.

  x_NxD: embeddings of every document (float32); y_N: int class ids (only the rows named by the training
  and validation indices are read while training). train_idx_per_run[r]: run r's training rows (any
  sizes >= 1); seed_per_run[r]: its seed (initialisation, dropout, row draws).
  group_per_run: runs with the same group value (e.g. the shot size) go through one vmapped call and stop
  together; groups of equal run count share one compiled program (all are padded to the same shapes), so
  a shots x seeds grid compiles once yet a converged 8-shot group does not wait for the "all" group.
  class_weight: "none" or "balanced" (training cross-entropy weighted by `class_weights` of each run's own
  training labels); validation loss and macro-F1 for early stopping are unweighted.
  """
  if len(train_idx_per_run) != len(seed_per_run) or not train_idx_per_run:
    raise ValueError("need one seed per run and at least one run")
  sizes_R = np.array([len(ix) for ix in train_idx_per_run])
  if (sizes_R == 0).any():
    raise ValueError("empty training set")
  if len(val_idx_V) == 0:
    raise ValueError("empty validation set: early stopping needs one")
  t = _bucket_rows(sizes_R.max())
  idx_RxT = np.zeros((len(sizes_R), t), np.int32)
  for r, ix in enumerate(train_idx_per_run):
    idx_RxT[r, :len(ix)] = ix
  d = int(np.shape(x_NxD)[1])
  inits = [init_head(head_kind, d, num_classes, seed=int(s)) for s in seed_per_run]
  params0_R = jax.tree.map(lambda *p: np.stack(p), *inits)
  seeds_R = np.asarray(seed_per_run, np.uint32)
  y_np = np.asarray(y_N)
  class_w_RxC = np.stack([class_weights(y_np[ix], num_classes, class_weight) for ix in train_idx_per_run])
  x_NxD, y_N = jnp.asarray(x_NxD, jnp.float32), jnp.asarray(y_N, jnp.int32)
  val_idx_V, eval_idx_E = jnp.asarray(val_idx_V, jnp.int32), jnp.asarray(eval_idx_E, jnp.int32)

  groups = [0] * len(sizes_R) if group_per_run is None else list(group_per_run)
  outs: list[tuple[np.ndarray, list]] = []
  for g in dict.fromkeys(groups):  # first-appearance order
    rows = np.array([r for r, gr in enumerate(groups) if gr == g])
    out = _fit_runs(x_NxD, y_N, idx_RxT[rows], sizes_R[rows].astype(np.int32), val_idx_V, eval_idx_E,
                    seeds_R[rows], jax.tree.map(lambda p: p[rows], params0_R), class_w_RxC[rows],
                    head_kind=head_kind,
                    num_classes=num_classes, settings=settings)
    outs.append((rows, [np.asarray(o) for o in out]))
  merged = []
  for k in range(4):
    first = outs[0][1][k]
    arr = np.zeros((len(sizes_R),) + first.shape[1:], first.dtype)
    for rows, out in outs:
      arr[rows] = out[k]
    merged.append(arr)
  return ProbeResult(*merged)
