"""DeCLUTR anchor/positive span sampling (Giorgi et al. 2021), as in docs/ARCHITECTURE.md "The method".

Spans are (start, end) token offsets, end exclusive, into a document's special-token-free token ids.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHORT_DOC_POLICIES = ("skip", "shrink")


@dataclasses.dataclass(frozen=True)
class SpanSample:
  anchors: list[tuple[int, int]]           # A spans
  positives: list[list[tuple[int, int]]]   # A lists of P spans; positives[i] belong to anchors[i]
  max_span: int                            # the max_span actually used (smaller than asked under "shrink")


def effective_max_span(n_tokens: int, *, anchors: int, max_span: int, min_span: int,
                       short_docs: str = "skip") -> int | None:
  """The max_span a document of `n_tokens` is sampled with, or None when it must be skipped.

  DeCLUTR needs n_tokens >= 2 * anchors * max_span. "skip" drops shorter documents; "shrink" lowers max_span
  to n_tokens // (2 * anchors) and drops the document only when that falls below min_span.
  """
  if short_docs not in SHORT_DOC_POLICIES:
    raise ValueError(f"short_docs must be one of {SHORT_DOC_POLICIES}, got {short_docs!r}")
  if n_tokens >= 2 * anchors * max_span:
    return max_span
  if short_docs == "shrink":
    shrunk = n_tokens // (2 * anchors)
    if shrunk >= min_span:
      return shrunk
  return None


def _span_length(rng: np.random.Generator, a: float, b: float, max_span: int, min_span: int) -> int:
  return int(rng.beta(a, b) * (max_span - min_span) + min_span)


def _capacity(run: int) -> int:
  # Most anchors a run of `run` consecutive free blocks can still hold when each pick removes its neighbours.
  return (run + 1) // 2


def sample_spans(n_tokens: int, rng: np.random.Generator, *, anchors: int, positives: int, max_span: int,
                 min_span: int) -> SpanSample:
  """Samples `anchors` anchors and `positives` positives per anchor from a document of `n_tokens` tokens.

  Requires n_tokens >= 2 * anchors * max_span (use `effective_max_span` first). Anchor length
  int(Beta(4,2) * (max_span - min_span) + min_span), placed uniformly inside a uniformly chosen block of the
  grid 0, max_span, 2*max_span, ...; the chosen block and its two neighbours leave the grid, so anchors never
  overlap or touch. Positive length int(Beta(2,4) * ...), start uniform in
  [max(0, a_start - len), min(a_end, n_tokens - len)]: it overlaps, abuts or lies inside its anchor.

  With anchors >= 3 an unlucky sequence of picks could empty the grid early (the original would then fail);
  the choice is restricted to blocks that leave room for the remaining anchors. For anchors <= 2 every block
  qualifies, so this is exactly the original sampler.
  """
  if not 1 <= min_span <= max_span:
    raise ValueError(f"need 1 <= min_span <= max_span, got min_span={min_span}, max_span={max_span}")
  if n_tokens < 2 * anchors * max_span:
    raise ValueError(f"document of {n_tokens} tokens is shorter than 2 * anchors * max_span = {2 * anchors * max_span}")
  n_blocks = n_tokens // max_span
  free = np.ones(n_blocks, dtype=bool)
  anchor_spans: list[tuple[int, int]] = []
  for k in range(anchors):
    length = _span_length(rng, 4.0, 2.0, max_span, min_span)
    candidates = np.flatnonzero(free)
    left = anchors - k - 1
    # One pick lowers the grid's capacity by at most 2, so the (quadratic) exact check is rarely needed.
    if left > 0 and _room(free) - 2 < left:
      candidates = np.array([b for b in candidates if _room_after(free, b) >= left], dtype=np.int64)
    block = int(candidates[rng.integers(len(candidates))])
    start = block * max_span + int(rng.integers(max_span - length + 1))
    anchor_spans.append((start, start + length))
    free[max(0, block - 1):block + 2] = False

  positive_spans: list[list[tuple[int, int]]] = []
  for a_start, a_end in anchor_spans:
    row = []
    for _ in range(positives):
      length = _span_length(rng, 2.0, 4.0, max_span, min_span)
      lo, hi = max(0, a_start - length), min(a_end, n_tokens - length)
      start = int(rng.integers(lo, hi + 1))
      row.append((start, start + length))
    positive_spans.append(row)
  return SpanSample(anchor_spans, positive_spans, max_span)


def _room_after(free: np.ndarray, block: int) -> int:
  """Anchors the grid can still hold after picking `block`."""
  after = free.copy()
  after[max(0, block - 1):block + 2] = False
  return _room(after)


def _room(free: np.ndarray) -> int:
  """Anchors the grid can still hold."""
  room, run = 0, 0
  for f in free:
    if f:
      run += 1
    else:
      room, run = room + _capacity(run), 0
  return room + _capacity(run)
