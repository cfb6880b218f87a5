"""Length buckets and the batch builders' base (`Batches`): every batch the jitted step sees has one of a few
fixed shapes. Each objective's builder lives with its objective (jaxemb/objectives/<name>.py).

Batches are a pure function of (seed, step): a seeded per-epoch permutation of document indices decides which
documents form global batch `step`, and masking/span randomness is seeded by (seed, step) or
(seed, epoch, doc_index). The iterator state is therefore just {"step": int}, and resuming at a step gives
exactly the batches an uninterrupted run would have seen. Every host computes the same plan for the GLOBAL
batch (cheap: it needs only token counts, so all hosts agree on the padded shape) and reads tokens only for its
own rows [process_index * B / process_count, (process_index + 1) * B / process_count).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxemb.data.masking import MaskDraws, SpecialTokens, mask_tokens

# Padded lengths a batch may have. Few enough that a step compiles a handful of times, dense enough that
# short documents do not pay for 512 tokens of padding.
LENGTH_BUCKETS = (16, 32, 64, 128, 256, 384, 512)


def bucket_length(n_tokens: int, max_length: int) -> int:
  """Smallest bucket >= n_tokens, capped at max_length (max_length itself is always a valid bucket).

  A bucket within max(8, max_length / 8) tokens of max_length is merged into max_length: DeCLUTR spans of
  max_span 128 are 130 tokens with their special tokens, and separate 128 and 130 shapes would only double the
  compilations for 2 tokens of padding.
  """
  if n_tokens >= max_length:
    return max_length
  for b in LENGTH_BUCKETS:
    if b >= n_tokens:
      return max_length if b > max_length - max(8, max_length // 8) else b
  return max_length


def mlm_max_predictions(length: int, mask_prob: float = 0.15) -> int:
  """Static number M of MLM prediction slots for a row of `length` tokens (ceil of the rate, plus one)."""
  return int(math.ceil(length * mask_prob)) + 1


DEFAULT_EXCLUDE_SPLITS = ("test",)  # Pre-training never sees the evaluation test split unless asked to.

# Stream salts: numpy's SeedSequence treats [a, b, c] and [a, b, c, 0] alike, so every non-span stream ends in a
# fixed non-zero word and cannot coincide with a DeCLUTR span stream (seed, epoch, doc_index).
_MAGIC = 0x6A786D62
_SALT_EPOCH, _SALT_MASK = 1, 2  # the objectives' own streams: metadata 3, SimCSE 11, pairs 13


def seeded_rng(*parts: int) -> np.random.Generator:
  return np.random.default_rng([*(int(p) for p in parts), _MAGIC])


def epoch_batches(doc_indices: np.ndarray, lengths: np.ndarray, *, batch_size: int, seed: int, epoch: int,
                  window_batches: int = 50) -> np.ndarray:
  """The global batches of one epoch, int64 [n_batches, batch_size] of document indices.

  Shuffle; sort each window of `window_batches * batch_size` documents by length (so a batch's padded bucket
  fits most of its rows); cut into batches; shuffle the batch order. The remainder (< batch_size documents of
  this epoch's permutation) is dropped so every batch is full. `lengths` is indexed by document index.
  """
  rng = seeded_rng(seed, epoch, _SALT_EPOCH)
  perm = rng.permutation(np.asarray(doc_indices, np.int64))
  n_batches = len(perm) // batch_size
  perm = perm[:n_batches * batch_size]
  if window_batches > 1:
    w = window_batches * batch_size
    for start in range(0, len(perm), w):
      window = perm[start:start + w]
      perm[start:start + w] = window[np.argsort(lengths[window], kind="stable")]
  batches = perm.reshape(n_batches, batch_size)
  return batches[rng.permutation(n_batches)]


def pad_rows(rows: Sequence[np.ndarray], length: int, special: SpecialTokens) -> tuple[np.ndarray, np.ndarray]:
  """[CLS] row [SEP] per row (row already cut to fit), padded to `length`. Returns ids_BxL, attention_mask_BxL."""
  ids_BxL = np.full((len(rows), length), special.pad, np.int32)
  mask_BxL = np.zeros((len(rows), length), np.int32)
  for r, toks in enumerate(rows):
    n = len(toks)
    ids_BxL[r, 0] = special.cls
    ids_BxL[r, 1:n + 1] = toks
    ids_BxL[r, n + 1] = special.sep
    mask_BxL[r, :n + 2] = 1
  return ids_BxL, mask_BxL


class Batches:
  """Shared plumbing: host slicing, state, iteration. Subclasses implement `batch(step)`."""

  def __init__(self, prepared, *, batch_size: int, seed: int, mask_prob: float, splits: Sequence[str] | None,
               exclude_splits: Sequence[str], process_index: int, process_count: int):
    if batch_size <= 0 or process_count <= 0 or batch_size % process_count:
      raise ValueError(f"global batch_size {batch_size} must be a positive multiple of process_count {process_count}")
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    self.prepared = prepared
    self.special: SpecialTokens = prepared.special
    self.batch_size = batch_size
    self.seed = seed
    self.mask_prob = mask_prob
    self.process_index, self.process_count = process_index, process_count
    self.host_batch_size = batch_size // process_count
    self.host_rows = slice(process_index * self.host_batch_size, (process_index + 1) * self.host_batch_size)
    self.doc_indices = prepared.indices(splits, exclude_splits)
    self._replacements = self.special.replacement_ids()
    self._step = 0
    self._epoch_cache: tuple[int, np.ndarray] | None = None

  # -- state -----------------------------------------------------------------------------------------------
  def get_state(self) -> dict[str, int]:
    return {"step": self._step}

  def set_state(self, state: dict[str, Any]) -> None:
    self._step = int(state["step"])

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = self.batch(self._step)
    self._step += 1
    return batch

  @property
  def steps_per_epoch(self) -> int:
    raise NotImplementedError

  def drop_counts(self) -> dict[str, int]:
    """Documents of the selected splits this builder does not use (or uses shortened), by reason. Flat
    {reason: count} for the workdir's data_spec.json and metrics.jsonl's first row; {} when none."""
    return {}

  def batch(self, step: int) -> dict[str, np.ndarray]:
    raise NotImplementedError

  # -- helpers ---------------------------------------------------------------------------------------------
  def _shuffled_plan(self, step: int) -> np.ndarray:
    """Document indices of global batch `step` of a plain seeded shuffle per epoch, int64 [B]."""
    epoch, b = divmod(step, self.steps_per_epoch)
    if self._epoch_cache is None or self._epoch_cache[0] != epoch:
      order = epoch_batches(self.doc_indices, self.prepared.lengths, batch_size=self.batch_size, seed=self.seed,
                            epoch=epoch, window_batches=1)
      self._epoch_cache = (epoch, order)
    return self._epoch_cache[1][b]

  def _check_nonempty(self, n_units: int, what: str) -> None:
    if n_units < self.batch_size:
      raise ValueError(f"only {n_units} {what} available for a global batch of {self.batch_size} "
                       f"(corpus {self.prepared.corpus_path})")

  def _mask(self, ids_BxL: np.ndarray, mask_BxL: np.ndarray, step: int, global_rows: int,
            row_slice: slice) -> dict[str, np.ndarray]:
    L = ids_BxL.shape[1]
    M = mlm_max_predictions(L, self.mask_prob)
    # Drawn for all global rows, then sliced: the union over hosts equals the single-host batch.
    draws = MaskDraws.draw(seeded_rng(self.seed, step, _SALT_MASK), global_rows, L, M, len(self._replacements))
    return mask_tokens(ids_BxL, mask_BxL, self.special, draws.rows(row_slice.start, row_slice.stop),
                       mask_prob=self.mask_prob, replacement_ids=self._replacements)

  def _truncated_batch(self, docs_B: np.ndarray, step: int, max_length: int,
                       global_tokens: list | None = None) -> dict[str, np.ndarray]:
    """One document per row, cut to max_length - 2 tokens, padded to the bucket of the longest global row.
    `global_tokens`: the token ids of every document of the global batch when the caller has read them."""
    L = bucket_length(int(np.minimum(self.prepared.lengths[docs_B] + 2, max_length).max()), max_length)
    host = (self.prepared.tokens_many(docs_B[self.host_rows]) if global_tokens is None
            else global_tokens[self.host_rows])
    toks = [t[:L - 2] for t in host]
    ids_BxL, mask_BxL = pad_rows(toks, L, self.special)
    out = self._mask(ids_BxL, mask_BxL, step, self.batch_size, self.host_rows)
    return {"input_ids": out["input_ids"], "attention_mask": mask_BxL, "mlm_positions": out["mlm_positions"],
            "mlm_labels": out["mlm_labels"], "mlm_weights": out["mlm_weights"]}


def duplicate_ids(rows) -> np.ndarray:
  """int32 [B]: for each row (a sequence of token ids), the index of the first row with the same ids. Equal ids
  = the same text after the tokenizer's normalisation; the contrastive losses leave such rows out of each
  other's denominators (no false negatives)."""
  return first_of_equal_keys([hashlib.sha1(np.asarray(r, np.int32).tobytes()).digest() for r in rows])


def first_of_equal_keys(keys) -> np.ndarray:
  """int32 [B]: for each key, the index of the first position with an equal key (the `dup` ids of a batch)."""
  first: dict = {}
  return np.array([first.setdefault(k, i) for i, k in enumerate(keys)], np.int32)


def document_text_keys(prepared, doc_indices: np.ndarray, chunk: int = 4096) -> dict[int, int]:
  """{document index: splits.text_key of its text}: equal for exact duplicates after whitespace and case
  normalisation, the key the split planner groups duplicates by. Rows cut from documents (crops, windows)
  are duplicates when their DOCUMENTS are, whatever part of them each row shows."""
  from jaxemb.data.splits import text_key
  out: dict[int, int] = {}
  for i in range(0, len(doc_indices), chunk):
    part = [int(d) for d in doc_indices[i:i + chunk]]
    out.update({d: text_key(r["text"]) for d, r in zip(part, prepared.records(part))})
  return out
