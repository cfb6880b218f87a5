"""Fine-tuning: the encoder and the paper's head trained together on one few-shot sample.

- Trainable: all encoder weights, or all but the embeddings and the first `freeze_layers` layers. Frozen
  subtrees are not differentiated at all (they are passed to the loss as constants), so no backward pass
  runs through the frozen bottom of the network. The (new, randomly initialised) head has its own
  learning rate.
- AdamW (decoupled weight decay, not on biases / LayerNorm) with linear warmup and linear decay;
  mini-batches of a fixed row count padded to length buckets (`batching.bucket_length`), so the step
  compiles once per bucket; a short last batch is padded with zero-weight rows instead of compiling a new
  shape.
- Early stopping on validation macro-F1 (ties broken by validation loss), evaluated every `eval_every`
  steps (0 = once per epoch), with a patience counted in evaluations; the best parameters are the ones
  evaluated on test.
- NEFTune (optional, `neftune_alpha` > 0): Uniform(-1, 1) * alpha / sqrt(L * d) noise on the input token
  embeddings during training steps only, never at evaluation.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxemb.data.batching import bucket_length
from jaxemb.models.inference import pad_sequences
from jaxemb.eval.heads import apply_head, init_head
from jaxemb.metrics.classification import macro_f1
from jaxemb.models.config import EncoderConfig
from jaxemb.models.dropout import dropout as encoder_dropout
from jaxemb.models.encoder import encode, mean_pool
from jaxemb.train import early_stopping
from jaxemb.train.optim import adamw, warmup_linear_decay


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
  """No defaults here: the values live in configs/eval.py (`config.finetune`, max_length from
  `config.max_length`), read by evaluators/finetune.py."""
  lr: float                     # encoder learning rate
  head_lr: float                # the head starts from random: a larger rate (set = lr for one global rate)
  weight_decay: float
  warmup_frac: float
  batch_size: int
  eval_batch_size: int
  max_epochs: int
  eval_every: int               # steps between validation evaluations; 0 = once per epoch
  patience: int                 # evaluations without improvement before stopping
  freeze_layers: int            # N >= 1 freezes the embeddings and layers 0..N-1
  neftune_alpha: float          # 0 = off
  head_dropout: float
  max_length: int


@dataclasses.dataclass
class FinetuneResult:
  probs_ExC: np.ndarray
  best_val_f1: float
  best_step: int
  steps_run: int
  params: dict[str, Any]  # the kept (best) trainable parameters: {"encoder": unfrozen subtrees, "head": ...}


def frozen_subtrees(config: EncoderConfig, freeze_layers: int) -> tuple[str, ...]:
  """Names of params["encoder"] subtrees that stay fixed."""
  if freeze_layers < 0 or freeze_layers > config.num_layers:
    raise ValueError(f"finetune.freeze_layers must be in [0, {config.num_layers}], got {freeze_layers}")
  if freeze_layers == 0:
    return ()
  return ("embeddings",) + tuple(f"layer_{i}" for i in range(freeze_layers))


def _pad_batch(token_ids: Sequence[Sequence[int]], rows: np.ndarray, n_rows: int, max_length: int,
               pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  length = bucket_length(max(len(token_ids[i]) for i in rows), max_length)
  return pad_sequences([token_ids[i] for i in rows], n_rows, length, pad_id)


@functools.lru_cache(maxsize=8)
def _compiled(config: EncoderConfig, settings: FinetuneSettings, num_classes: int):
  """(optimizer, jitted train step, jitted logits fn) for one configuration.

  The optimiser is the toolkit's AdamW at learning rate 1 (weight decay skips biases and LayerNorm, as the
  HF Trainer the original used does); the step scales its updates by each group's peak rate times the
  schedule's factor, a traced multiplier rather than an optax schedule, so runs with different step counts
  (shot sizes) share the compiled step.
  """
  del num_classes  # part of the cache key: the head's shape
  opt = adamw(1.0, settings.weight_decay)

  def logits_fn(trainable, frozen, ids_BxL, mask_BxL, rng):
    params_encoder = {**frozen, **trainable["encoder"]}
    if rng is None:
      hidden = encode(params_encoder, ids_BxL, mask_BxL, config=config)
      return apply_head("probe", trainable["head"], mean_pool(hidden, mask_BxL))
    enc_rng, noise_rng, head_rng = jax.random.split(rng, 3)
    hidden = encode(params_encoder, ids_BxL, mask_BxL, config=config, dropout_rng=enc_rng,
                    embed_noise_alpha=settings.neftune_alpha,
                    noise_rng=noise_rng if settings.neftune_alpha > 0 else None)
    drop = lambda x, site: encoder_dropout(x, settings.head_dropout, jax.random.fold_in(head_rng, site))
    return apply_head("probe", trainable["head"], mean_pool(hidden, mask_BxL), drop)

  def loss_fn(trainable, frozen, ids_BxL, mask_BxL, y_B, w_B, rng):
    logits_BxC = logits_fn(trainable, frozen, ids_BxL, mask_BxL, rng)
    ce_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, y_B)
    return (ce_B * w_B).sum() / jnp.maximum(w_B.sum(), 1.0)

  @jax.jit
  def train_step(trainable, frozen, opt_state, ids_BxL, mask_BxL, y_B, w_B, rng, lr_mult):
    loss, grads = jax.value_and_grad(loss_fn)(trainable, frozen, ids_BxL, mask_BxL, y_B, w_B, rng)
    updates, opt_state = opt.update(grads, opt_state, trainable)
    lrs = {"encoder": settings.lr * lr_mult, "head": settings.head_lr * lr_mult}  # adamw(1.0) negated
    updates = {k: jax.tree.map(lambda u, lr=lrs[k]: lr * u, v) for k, v in updates.items()}
    return optax.apply_updates(trainable, updates), opt_state, loss

  @jax.jit
  def eval_logits(trainable, frozen, ids_BxL, mask_BxL):
    return logits_fn(trainable, frozen, ids_BxL, mask_BxL, None)

  return opt, train_step, eval_logits


def _predict(eval_logits, trainable, frozen, token_ids, rows: np.ndarray, settings: FinetuneSettings,
             pad_id: int) -> np.ndarray:
  """Softmax probabilities for `rows`, in order; batches sorted by length so buckets stay tight."""
  out = None
  order = rows[np.argsort([-len(token_ids[i]) for i in rows], kind="stable")]
  pos = {int(r): k for k, r in enumerate(rows)}
  for start in range(0, len(order), settings.eval_batch_size):
    chunk = order[start:start + settings.eval_batch_size]
    ids_BxL, mask_BxL = _pad_batch(token_ids, chunk, settings.eval_batch_size, settings.max_length, pad_id)
    probs = np.asarray(jax.nn.softmax(eval_logits(trainable, frozen, ids_BxL, mask_BxL), -1))
    if out is None:
      out = np.zeros((len(rows), probs.shape[1]), np.float32)
    out[[pos[int(i)] for i in chunk]] = probs[:len(chunk)]
  return out


def finetune(encoder_params: dict[str, Any], config: EncoderConfig, token_ids: Sequence[Sequence[int]],
             y_N: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, eval_idx: np.ndarray, *,
             num_classes: int, seed: int, settings: FinetuneSettings, pad_id: int,
             log=None) -> FinetuneResult:
  """Fine-tunes a copy of `encoder_params` (params["encoder"]) + a new head; probabilities on eval_idx.

  token_ids[i]: token ids of document i (special tokens included, already truncated to max_length).
  """
  if len(train_idx) == 0 or len(val_idx) == 0:
    raise ValueError("fine-tuning needs non-empty training and validation sets")
  frozen_names = frozen_subtrees(config, settings.freeze_layers)
  frozen = {k: v for k, v in encoder_params.items() if k in frozen_names}
  trainable = {"encoder": {k: v for k, v in encoder_params.items() if k not in frozen_names},
               "head": init_head("probe", config.hidden_size, num_classes, seed)}
  steps_per_epoch = -(-len(train_idx) // settings.batch_size)
  total_steps = steps_per_epoch * settings.max_epochs
  eval_every = settings.eval_every or steps_per_epoch
  # the multiplier of the peak learning rates; step 0 already learns (warmup_offset=1)
  lr_factor = warmup_linear_decay(1.0, total_steps, max(1, int(settings.warmup_frac * total_steps)),
                                  warmup_offset=1)
  opt, train_step, eval_logits = _compiled(config, settings, num_classes)
  opt_state = opt.init(trainable)
  rng = np.random.default_rng(seed)
  key = jax.random.PRNGKey(seed)
  y_N = np.asarray(y_N, np.int32)

  best, es, step = trainable, early_stopping.init(), 0
  stop = False
  for _ in range(settings.max_epochs):
    order = rng.permutation(train_idx)
    for start in range(0, len(order), settings.batch_size):
      rows = order[start:start + settings.batch_size]
      ids_BxL, mask_BxL = _pad_batch(token_ids, rows, settings.batch_size, settings.max_length, pad_id)
      y_B = np.zeros((settings.batch_size,), np.int32)
      w_B = np.zeros((settings.batch_size,), np.float32)
      y_B[:len(rows)], w_B[:len(rows)] = y_N[rows], 1.0
      trainable, opt_state, loss = train_step(trainable, frozen, opt_state, ids_BxL, mask_BxL, y_B, w_B,
                                              jax.random.fold_in(key, step),
                                              np.float32(lr_factor(step)))
      step += 1
      if step % eval_every == 0 or step == total_steps:
        probs = _predict(eval_logits, trainable, frozen, token_ids, np.asarray(val_idx), settings, pad_id)
        f1 = macro_f1(y_N[val_idx], probs.argmax(-1), num_classes)
        val_loss = float(-np.log(np.maximum(probs[np.arange(len(val_idx)), y_N[val_idx]], 1e-12)).mean())
        if log is not None:
          log(f"    step {step}/{total_steps} loss {float(loss):.4f} val macro-F1 {f1:.4f}")
        if not np.isfinite(float(loss)):
          raise FloatingPointError(f"fine-tuning loss is {float(loss)} at step {step}")
        es, improved = early_stopping.update(es, f1, val_loss, step)
        if improved:
          best = trainable
        stop = bool(early_stopping.exhausted(es, settings.patience))
      if stop:
        break
    if stop:
      break
  probs = _predict(eval_logits, best, frozen, token_ids, np.asarray(eval_idx), settings, pad_id)
  return FinetuneResult(probs, float(es.best_f1), int(es.best_step), int(step), best)
