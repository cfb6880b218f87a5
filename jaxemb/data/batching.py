"""Length buckets and batch builders: every batch the jitted step sees has one of a few fixed shapes.

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
from jaxemb.data.spans import SpanSample, effective_max_span, sample_spans

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


MLM_PACKINGS = ("chunk", "truncate")
METADATA_SAMPLERS = ("random", "length_bucketed", "balanced")
DEFAULT_EXCLUDE_SPLITS = ("test",)  # Pre-training never sees the evaluation test split unless asked to.

# Stream salts: numpy's SeedSequence treats [a, b, c] and [a, b, c, 0] alike, so every non-span stream ends in a
# fixed non-zero word and cannot coincide with a DeCLUTR span stream (seed, epoch, doc_index).
_MAGIC = 0x6A786D62
_SALT_EPOCH, _SALT_MASK, _SALT_BALANCED = 1, 2, 3


def _rng(*parts: int) -> np.random.Generator:
  return np.random.default_rng([*(int(p) for p in parts), _MAGIC])


def epoch_batches(doc_indices: np.ndarray, lengths: np.ndarray, *, batch_size: int, seed: int, epoch: int,
                  window_batches: int = 50) -> np.ndarray:
  """The global batches of one epoch, int64 [n_batches, batch_size] of document indices.

  Shuffle; sort each window of `window_batches * batch_size` documents by length (so a batch's padded bucket
  fits most of its rows); cut into batches; shuffle the batch order. The remainder (< batch_size documents of
  this epoch's permutation) is dropped so every batch is full. `lengths` is indexed by document index.
  """
  rng = _rng(seed, epoch, _SALT_EPOCH)
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


def _pad_rows(rows: Sequence[np.ndarray], length: int, special: SpecialTokens) -> tuple[np.ndarray, np.ndarray]:
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


class _Batches:
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
    draws = MaskDraws.draw(_rng(self.seed, step, _SALT_MASK), global_rows, L, M, len(self._replacements))
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
    ids_BxL, mask_BxL = _pad_rows(toks, L, self.special)
    out = self._mask(ids_BxL, mask_BxL, step, self.batch_size, self.host_rows)
    return {"input_ids": out["input_ids"], "attention_mask": mask_BxL, "mlm_positions": out["mlm_positions"],
            "mlm_labels": out["mlm_labels"], "mlm_weights": out["mlm_weights"]}


class MLMBatches(_Batches):
  """MLM batches: input_ids BxL (masked 80/10/10), attention_mask BxL, mlm_positions/labels/weights BxM.

  packing="chunk": the selected documents, each as [CLS] ids [SEP], are concatenated in corpus order and cut
  into blocks of max_length (HF run_mlm's group_texts, as the original; the last, shorter block is kept and
  padded); blocks are shuffled per epoch. packing="truncate": one document per row, cut to max_length.
  Rows are this host's slice of the global batch (B / process_count rows).
  """

  def __init__(self, prepared, *, batch_size: int, max_length: int = 512, seed: int = 0, packing: str = "chunk",
               mask_prob: float = 0.15, window_batches: int = 50, splits: Sequence[str] | None = None,
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


class MetadataBatches(_Batches):
  """Metadata-objective batches: the truncated MLM batch plus `category` B (int32 index into `categories`).

  Documents without a metadata category are left out (`n_without_category`).
  sampler="random": plain shuffled batches (the original; positives only by chance): a seeded permutation
  per epoch cut into batches, so a batch's rows (and SupCon's positives and negatives) have unrelated
  lengths. sampler="length_bucketed": as "random", but each window of `window_batches` batches is sorted by
  length before it is cut (as MLM's truncate packing), so a batch pads to a bucket that fits most rows;
  its positives and negatives are then length-matched, which SupCon can exploit, so it is not the default.
  sampler="balanced": each batch draws B // per_category categories uniformly (among those with
  >= per_category documents) and per_category documents of each (the first B % per_category categories get
  one more), so every sampled category has >= 2 rows; rows of a category are adjacent. `steps_per_epoch` is
  then nominal (documents // B). Categories with fewer than per_category documents are counted
  (`too_small_categories`): the balanced sampler never draws them.
  """

  def __init__(self, prepared, *, batch_size: int, max_length: int = 512, seed: int = 0, sampler: str = "random",
               mask_prob: float = 0.15, window_batches: int = 50, per_category: int = 2,
               splits: Sequence[str] | None = None, exclude_splits: Sequence[str] = DEFAULT_EXCLUDE_SPLITS,
               process_index: int = 0, process_count: int = 1):
    super().__init__(prepared, batch_size=batch_size, seed=seed, mask_prob=mask_prob, splits=splits,
                     exclude_splits=exclude_splits, process_index=process_index, process_count=process_count)
    if sampler not in METADATA_SAMPLERS:
      raise ValueError(f"sampler must be one of {METADATA_SAMPLERS}, got {sampler!r}")
    if per_category < 2:
      raise ValueError(f"per_category must be >= 2 (SupCon needs a positive), got {per_category}")
    self.sampler, self.max_length, self.window_batches = sampler, max_length, window_batches
    self.per_category = per_category
    self.categories: list[str] = list(prepared.categories)
    has_cat = prepared.category_index[self.doc_indices] >= 0
    self.n_without_category = int((~has_cat).sum())
    self.doc_indices = self.doc_indices[has_cat]
    self._check_nonempty(len(self.doc_indices), "documents with a metadata category")
    cats = prepared.category_index[self.doc_indices]
    self._by_category = {int(c): self.doc_indices[cats == c] for c in np.unique(cats)}
    self.eligible_categories = np.array(sorted(c for c, d in self._by_category.items() if len(d) >= per_category),
                                        np.int64)
    # Categories too small for a guaranteed positive cannot be drawn by the balanced sampler: report them.
    self.too_small_categories = [self.categories[c] for c, d in self._by_category.items() if len(d) < per_category]
    self.n_in_too_small_categories = int(sum(len(d) for d in self._by_category.values() if len(d) < per_category))
    if sampler == "balanced" and len(self.eligible_categories) == 0:
      raise ValueError(f"no metadata category has >= {per_category} documents")

  @property
  def steps_per_epoch(self) -> int:
    return len(self.doc_indices) // self.batch_size

  def plan(self, step: int) -> np.ndarray:
    """Document indices of global batch `step`, int64 [B]."""
    if self.sampler == "balanced":
      return self._balanced(step)
    epoch, b = divmod(step, self.steps_per_epoch)
    if self._epoch_cache is None or self._epoch_cache[0] != epoch:
      window = self.window_batches if self.sampler == "length_bucketed" else 1
      order = epoch_batches(self.doc_indices, self.prepared.lengths, batch_size=self.batch_size, seed=self.seed,
                            epoch=epoch, window_batches=window)
      self._epoch_cache = (epoch, order)
    return self._epoch_cache[1][b]

  def drop_counts(self) -> dict[str, int]:
    out = {"metadata/without_category": self.n_without_category}
    if self.sampler == "balanced":  # the other samplers still use these documents (without a sure positive)
      out["metadata/too_small_categories"] = len(self.too_small_categories)
      out["metadata/in_too_small_categories"] = self.n_in_too_small_categories
    return out

  def _balanced(self, step: int) -> np.ndarray:
    rng = _rng(self.seed, step, _SALT_BALANCED)
    n_groups = self.batch_size // self.per_category
    eligible = self.eligible_categories
    chosen = rng.choice(eligible, size=n_groups, replace=n_groups > len(eligible))
    sizes = np.full(n_groups, self.per_category)
    sizes[:self.batch_size - n_groups * self.per_category] += 1
    # A category drawn twice (more groups than categories) gets its documents drawn together, without repeats.
    need: dict[int, int] = {}
    for c, s in zip(chosen, sizes):
      need[int(c)] = need.get(int(c), 0) + int(s)
    picked = {c: list(rng.choice(self._by_category[c], size=n, replace=n > len(self._by_category[c])))
              for c, n in need.items()}
    rows = []
    for c, s in zip(chosen, sizes):
      rows.extend(picked[int(c)][:s])
      del picked[int(c)][:s]
    return np.asarray(rows, np.int64)

  def batch(self, step: int) -> dict[str, np.ndarray]:
    docs_B = self.plan(step)
    # SupCon's duplicate ids are over the GLOBAL batch (every host computes the same ids from the unmasked
    # rows), so every host reads the global batch's tokens once, and keeps its own rows for the batch.
    toks_B = self.prepared.tokens_many(docs_B)
    out = self._truncated_batch(docs_B, step, self.max_length, global_tokens=toks_B)
    out["category"] = self.prepared.category_index[docs_B[self.host_rows]].astype(np.int32)
    L = out["input_ids"].shape[1]  # the rows as the model sees them: equal there = duplicates
    out["dup"] = duplicate_ids([t[:L - 2] for t in toks_B])[self.host_rows]
    return out


class DeclutrBatches(_Batches):
  """DeCLUTR batches (N = B * A anchors; P positives per anchor), see docs/ARCHITECTURE.md.

  anchor_ids NxLa (MLM-masked), anchor_mask NxLa, mlm_positions/labels/weights NxM, positive_ids (N*P)xLp,
  positive_mask (N*P)xLp; anchors of document b are rows b*A .. b*A+A-1, positives of anchor i are rows
  i*P .. i*P+P-1. La and Lp are buckets (capped at max_span + 2) of the longest span in the global batch.
  Spans are slices of the document's token ids wrapped in [CLS] .. [SEP] (a deviation from the original,
  which re-tokenises span text; docs/ARCHITECTURE.md "Deviations from the paper"). Span randomness comes from
  numpy Generator((seed, epoch, doc_index)), fresh every epoch.

  split_positives=True (when every host's N*P rows are even): positives are Beta(2,4)-short, and padding all
  of them to the longest wastes most of their tokens. Each host sorts its positive rows by length and pads
  the shorter half and the longer half to their own buckets: positive_ids / positive_mask (R/2 x Ls, shorter
  half) and positive_long_ids / positive_long_mask (R/2 x Ll), plus positive_index [R] int32: row r of the
  layout above is row positive_index[r] of the GLOBAL concatenation [all hosts' short rows; all hosts' long
  rows]. Ls and Ll are the global maxima of the halves, so every host has the same shapes.

  Documents shorter than 2 * A * max_span tokens: short_docs="skip" leaves them out (`n_short_skipped`);
  "shrink" samples them with max_span = n // (2A) (`n_shrunk`), skipping only those below min_span.
  """

  def __init__(self, prepared, *, batch_size: int, seed: int = 0, anchors: int = 2, positives: int = 2,
               max_span: int = 256, min_span: int = 8, short_docs: str = "skip", mask_prob: float = 0.15,
               splits: Sequence[str] | None = None, exclude_splits: Sequence[str] = DEFAULT_EXCLUDE_SPLITS,
               process_index: int = 0, process_count: int = 1, split_positives: bool = False):
    super().__init__(prepared, batch_size=batch_size, seed=seed, mask_prob=mask_prob, splits=splits,
                     exclude_splits=exclude_splits, process_index=process_index, process_count=process_count)
    self.split_positives = bool(split_positives) and (self.host_batch_size * anchors * positives) % 2 == 0
    if anchors < 1 or positives < 1 or not 1 <= min_span <= max_span:
      raise ValueError(f"need anchors, positives >= 1 and 1 <= min_span <= max_span; got {anchors}, {positives}, "
                       f"{min_span}, {max_span}")
    self.anchors, self.positives, self.max_span, self.min_span = anchors, positives, max_span, min_span
    self.short_docs = short_docs
    self.max_length = max_span + 2
    spans = np.array([effective_max_span(int(n), anchors=anchors, max_span=max_span, min_span=min_span,
                                         short_docs=short_docs) or 0 for n in prepared.lengths[self.doc_indices]],
                     np.int64)
    self.n_short_skipped = int((spans == 0).sum())
    self.n_shrunk = int(((spans > 0) & (spans < max_span)).sum())
    self.doc_indices = self.doc_indices[spans > 0]
    self._doc_max_span = dict(zip(self.doc_indices.tolist(), spans[spans > 0].tolist()))
    self._check_nonempty(len(self.doc_indices), f"documents long enough for DeCLUTR (A={anchors}, max_span="
                         f"{max_span}, short_docs={short_docs!r}; {self.n_short_skipped} too short)")

  @property
  def steps_per_epoch(self) -> int:
    return len(self.doc_indices) // self.batch_size

  def drop_counts(self) -> dict[str, int]:
    # Shrunk documents are used, with shorter spans than max_span; counted because they change the task.
    return {"declutr/short_skipped": self.n_short_skipped, "declutr/shrunk": self.n_shrunk}

  def spans(self, doc_index: int, epoch: int) -> SpanSample:
    """The spans of one document in one epoch (a pure function of seed, epoch and doc_index)."""
    rng = np.random.default_rng([self.seed, epoch, int(doc_index)])
    return sample_spans(int(self.prepared.lengths[doc_index]), rng, anchors=self.anchors, positives=self.positives,
                        max_span=self._doc_max_span[int(doc_index)], min_span=self.min_span)

  def plan(self, step: int) -> np.ndarray:
    """Document indices of global batch `step`, int64 [B]."""
    return self._shuffled_plan(step)

  def batch(self, step: int) -> dict[str, np.ndarray]:
    epoch = step // self.steps_per_epoch
    docs_B = self.plan(step)
    # Spans of the whole global batch (cheap: token counts only) fix the shared padded lengths.
    samples = [self.spans(int(d), epoch) for d in docs_B]
    La = bucket_length(max(e - s for sm in samples for s, e in sm.anchors) + 2, self.max_length)
    # Positive span lengths (with [CLS]/[SEP]) per host, in row order: [process_count, R_h].
    plen_HxR = np.array([[e - s + 2 for sm in samples[h * self.host_batch_size:(h + 1) * self.host_batch_size]
                          for row in sm.positives for s, e in row] for h in range(self.process_count)])

    host_samples = samples[self.host_rows]
    anchor_rows, positive_rows = [], []
    for toks, sm in zip(self.prepared.tokens_many(docs_B[self.host_rows]), host_samples):
      for (s, e), row in zip(sm.anchors, sm.positives):
        anchor_rows.append(toks[s:e])
        positive_rows.extend(toks[ps:pe] for ps, pe in row)
    anchor_ids, anchor_mask = _pad_rows(anchor_rows, La, self.special)
    A = self.anchors
    host_anchor_rows = slice(self.host_rows.start * A, self.host_rows.stop * A)
    out = self._mask(anchor_ids, anchor_mask, step, self.batch_size * A, host_anchor_rows)
    batch = {"anchor_ids": out["input_ids"], "anchor_mask": anchor_mask, "mlm_positions": out["mlm_positions"],
             "mlm_labels": out["mlm_labels"], "mlm_weights": out["mlm_weights"]}
    if not self.split_positives:
      Lp = bucket_length(int(plen_HxR.max()), self.max_length)
      batch["positive_ids"], batch["positive_mask"] = _pad_rows(positive_rows, Lp, self.special)
      return batch
    # Shorter / longer half of each host's rows (stable sort: ties keep row order, so the split is a pure
    # function of the batch); the buckets are the global maxima of each half.
    order_HxR = np.argsort(plen_HxR, axis=1, kind="stable")
    half = plen_HxR.shape[1] // 2
    sorted_HxR = np.sort(plen_HxR, axis=1)
    Ls = bucket_length(int(sorted_HxR[:, :half].max()), self.max_length)
    Ll = bucket_length(int(sorted_HxR[:, half:].max()), self.max_length)
    order_R = order_HxR[self.process_index]
    batch["positive_ids"], batch["positive_mask"] = _pad_rows([positive_rows[i] for i in order_R[:half]], Ls,
                                                              self.special)
    batch["positive_long_ids"], batch["positive_long_mask"] = _pad_rows(
        [positive_rows[i] for i in order_R[half:]], Ll, self.special)
    # Row order_R[k] sits at k (k < half: this host's block of the global short array) or at k - half of its
    # block of the global long array, which follows all hosts' short rows.
    h, H = self.process_index, self.process_count
    slot_R = np.arange(len(order_R))
    global_R = np.where(slot_R < half, h * half + slot_R, H * half + h * half + (slot_R - half))
    index_R = np.empty(len(order_R), np.int32)
    index_R[order_R] = global_R
    batch["positive_index"] = index_R
    return batch
