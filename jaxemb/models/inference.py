"""Batching for forward-only passes (embedding): the plan `Encoder.embed` runs, rows sorted by length and each
batch padded to a fine length grid (a forward pass compiles in about a second, so padding costs more than a
few more compiled shapes). Training batches are `jaxemb/data/batching.py`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def inference_bucket_length(n_tokens: int, max_length: int, step: int = 32) -> int:
  """Padded length for forward-only passes (embedding): a multiple of `step`, capped at max_length.

  A forward pass compiles in about a second, so a finer grid than LENGTH_BUCKETS pays for itself: with the
  coarse grid a batch whose longest text has 130 tokens is padded to 256 (measured: embedding 1.8x slower
  than sentence-transformers' pad-to-longest).
  """
  return min(max_length, max(step, -(-n_tokens // step) * step))


def inference_batch_sizes(n: int, batch_size: int, multiple: int = 1) -> list[int]:
  """Row counts of the forward-only batches that cover `n` rows: full batches of `batch_size`, then the tail
  split into halvings of batch_size (batch_size/2, /4, ... while still multiples of `multiple`, the device
  count), largest first; the last one padded up to the smallest size. Padding a 20-row tail to 32 rows
  computes 60% more rows than needed; 16 + 4 computes none. Each distinct size compiles once per length
  bucket, and there are at most log2(batch_size / multiple) of them.

  batch_size must be a multiple of `multiple`. Sum of the result >= n, and < n + the smallest size."""
  if batch_size < 1 or multiple < 1 or batch_size % multiple:
    raise ValueError(f"batch_size {batch_size} must be a positive multiple of {multiple}")
  sizes = [batch_size] * (n // batch_size)
  rest = n - len(sizes) * batch_size
  allowed, s = [], batch_size // 2
  while s >= multiple and s % multiple == 0:
    allowed.append(s)
    s //= 2
  allowed = allowed or [batch_size]
  while rest > 0:
    size = next((a for a in allowed if a <= rest), allowed[-1])
    sizes.append(size)
    rest -= size
  return sizes


def inference_batches(lengths: Sequence[int], batch_size: int, max_length: int,
                      devices: int = 1) -> list[tuple[np.ndarray, int, int]]:
  """Encoder.embed's batching plan: (row indices, rows computed, padded length) per batch, in order.

  Rows sorted by length, longest first (stable); batch_size rounded up to a multiple of `devices` (for
  sharding); a partial last batch split by `inference_batch_sizes` (its last piece may compute a few padding
  rows beyond its indices); each batch padded to the `inference_bucket_length` of its longest row."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  batch_size = -(-batch_size // devices) * devices
  order = np.argsort([-n for n in lengths], kind="stable")
  plan, start = [], 0
  for size in inference_batch_sizes(len(order), batch_size, devices):
    rows = order[start:start + size]
    start += size
    plan.append((rows, size, inference_bucket_length(int(lengths[rows[0]]), max_length)))
  return plan


def pad_sequences(seqs: Sequence[Sequence[int]], n_rows: int, length: int,
                  pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Token id lists (special tokens included) -> ids_BxL padded with pad_id and attention_mask_BxL, with
  n_rows >= len(seqs) rows (extra rows are all padding, mask 0)."""
  ids_BxL = np.full((n_rows, length), pad_id, np.int32)
  mask_BxL = np.zeros((n_rows, length), np.int32)
  for r, seq in enumerate(seqs):
    ids_BxL[r, :len(seq)] = seq
    mask_BxL[r, :len(seq)] = 1
  return ids_BxL, mask_BxL
