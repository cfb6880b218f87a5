"""Masked language modelling: cross-entropy at the masked positions only.

The hidden rows at the M masked positions are gathered BEFORE the LM head, so the head transform and the
vocabulary projection run on ~15% of the tokens (the largest single saving of a CPU train step).
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import ml_collections
import numpy as np

from jaxemb.data.batching import DEFAULT_EXCLUDE_SPLITS, Batches, bucket_length, epoch_batches
from jaxemb.models.encoder import encode, gather_rows, mean_pool, mlm_logits
from jaxemb.objectives import Objective
from jaxemb.objectives.losses import masked_lm_loss


def mlm_loss_from_hidden(params, hidden_BxLxD, positions_BxM, labels_BxM, weights_BxM, *, config, dtype):
  """(loss, n_predictions) of the MLM head applied to the gathered masked rows."""
  return mlm_loss_from_rows(params, gather_rows(hidden_BxLxD, positions_BxM), labels_BxM, weights_BxM,
                            config=config, dtype=dtype)


def mlm_loss_from_rows(params, rows_BxMxD, labels_BxM, weights_BxM, *, config, dtype):
  """(loss, n_predictions) of the MLM head on hidden rows already gathered at the prediction slots (a
  GradCache pass returns these, objectives/cached.py)."""
  logits_BxMxV = mlm_logits(params, rows_BxMxD, config=config, dtype=dtype)
  return masked_lm_loss(logits_BxMxV, labels_BxM, weights_BxM)


def loss_fn(params, batch, rng: jax.Array, *, config, dtype, remat: bool | str, attention: str,
            return_pooled: bool = False):
  """MLM objective on an MLM batch (docs/ARCHITECTURE.md). Returns (loss, metrics), and with return_pooled
  the (embeddings_BxD, ids, mask) of the masked rows as a third element."""
  hidden_BxLxD = encode(params["encoder"], batch["input_ids"], batch["attention_mask"], config=config,
                        dropout_rng=rng, dtype=dtype, remat=remat, attention=attention)
  loss, n = mlm_loss_from_hidden(params, hidden_BxLxD, batch["mlm_positions"], batch["mlm_labels"],
                                 batch["mlm_weights"], config=config, dtype=dtype)
  metrics = {"mlm_loss": loss, "n_predictions": n}
  if return_pooled:
    pooled = (mean_pool(hidden_BxLxD, batch["attention_mask"]), batch["input_ids"], batch["attention_mask"])
    return loss, metrics, pooled
  return loss, metrics


MLM_PACKINGS = ("chunk", "truncate")


class MLMBatches(Batches):
  """MLM batches: input_ids BxL (masked 80/10/10), attention_mask BxL, mlm_positions/labels/weights BxM.

  packing="chunk": the selected documents, each as [CLS] ids [SEP], are concatenated in corpus order and cut
  into blocks of max_length (HF run_mlm's group_texts, as the original; the last, shorter block is kept and
  padded); blocks are shuffled per epoch. packing="truncate": one document per row, cut to max_length.
  Rows are this host's slice of the global batch (B / process_count rows).
  """

  def __init__(self, prepared, *, batch_size: int, max_length: int, seed: int, packing: str,
               mask_prob: float, window_batches: int = 50, splits: Sequence[str] | None = None,
               exclude_splits: Sequence[str] = DEFAULT_EXCLUDE_SPLITS, process_index: int = 0,
               process_count: int = 1):
    super().__init__(prepared, batch_size=batch_size, seed=seed, mask_prob=mask_prob, splits=splits,
                     exclude_splits=exclude_splits, process_index=process_index, process_count=process_count)
    if packing not in MLM_PACKINGS:
      raise ValueError(f"packing must be one of {MLM_PACKINGS}, got {packing!r}")
    if max_length < 3:
      raise ValueError(f"max_length must be >= 3, got {max_length}")
    self.packing, self.max_length, self.window_batches = packing, max_length, window_batches
    if packing == "chunk":
      # Offsets of each selected document in the concatenated stream (each document adds 2 special tokens).
      sizes = prepared.lengths[self.doc_indices].astype(np.int64) + 2
      self._doc_starts = np.concatenate([[0], np.cumsum(sizes)])
      total = int(self._doc_starts[-1])
      self.n_units = -(-total // max_length)
      self._block_lengths = np.minimum(max_length, total - np.arange(self.n_units, dtype=np.int64) * max_length)
      self._check_nonempty(self.n_units, "blocks")
    else:
      self.n_units = len(self.doc_indices)
      self._check_nonempty(self.n_units, "documents")

  @property
  def steps_per_epoch(self) -> int:
    return self.n_units // self.batch_size

  def plan(self, step: int) -> np.ndarray:
    """Global batch `step`: block numbers (chunk) or document indices (truncate), int64 [B]."""
    epoch, b = divmod(step, self.steps_per_epoch)
    if self._epoch_cache is None or self._epoch_cache[0] != epoch:
      if self.packing == "chunk":
        units = np.arange(self.n_units, dtype=np.int64)
        order = epoch_batches(units, self._block_lengths, batch_size=self.batch_size, seed=self.seed, epoch=epoch,
                              window_batches=1)
      else:
        order = epoch_batches(self.doc_indices, self.prepared.lengths, batch_size=self.batch_size, seed=self.seed,
                              epoch=epoch, window_batches=self.window_batches)
      self._epoch_cache = (epoch, order)
    return self._epoch_cache[1][b]

  def batch(self, step: int) -> dict[str, np.ndarray]:
    units_B = self.plan(step)
    if self.packing == "truncate":
      return self._truncated_batch(units_B, step, self.max_length)
    L = bucket_length(int(self._block_lengths[units_B].max()), self.max_length)
    rows = self._blocks(units_B[self.host_rows])
    ids_BxL = np.full((len(rows), L), self.special.pad, np.int32)
    mask_BxL = np.zeros((len(rows), L), np.int32)
    for r, row in enumerate(rows):
      ids_BxL[r, :len(row)] = row
      mask_BxL[r, :len(row)] = 1
    out = self._mask(ids_BxL, mask_BxL, step, self.batch_size, self.host_rows)
    return {"input_ids": out["input_ids"], "attention_mask": mask_BxL, "mlm_positions": out["mlm_positions"],
            "mlm_labels": out["mlm_labels"], "mlm_weights": out["mlm_weights"]}

  def _blocks(self, blocks: np.ndarray) -> list[np.ndarray]:
    """Token rows of the given block numbers; each needed document is read once (one batched read)."""
    total = int(self._doc_starts[-1])
    spans = []
    for k in blocks.tolist():
      start, stop = k * self.max_length, min((k + 1) * self.max_length, total)
      first = int(np.searchsorted(self._doc_starts, start, side="right")) - 1
      last = int(np.searchsorted(self._doc_starts, stop, side="left"))  # exclusive
      spans.append((start, stop, first, last))
    positions = sorted({p for _, _, first, last in spans for p in range(first, last)})
    toks = dict(zip(positions, self.prepared.tokens_many(self.doc_indices[positions])))
    cls, sep = np.array([self.special.cls], np.int32), np.array([self.special.sep], np.int32)
    rows = []
    for start, stop, first, last in spans:
      stream = np.concatenate([piece for p in range(first, last) for piece in (cls, toks[p], sep)])
      offset = start - int(self._doc_starts[first])
      rows.append(stream[offset:offset + (stop - start)])
    return rows


def _batches(cfg, prepared, common):
  return MLMBatches(prepared, max_length=cfg.data.max_length, packing=cfg.data.mlm_packing,
                             mask_prob=cfg.data.mask_prob, **common)


def _loss(cfg, config, dtype, remat):
  return partial(loss_fn, config=config, dtype=dtype, remat=remat, attention=cfg.model.attention,
                 return_pooled=True)


def _pad_lengths(cfg) -> dict[str, int]:
  n = cfg.data.max_length
  return {"input_ids": n, "attention_mask": n}


OBJECTIVE = Objective(name="mlm", defaults=ml_collections.ConfigDict, batches=_batches, loss=_loss,
                      pad_lengths=_pad_lengths)
