"""Retrieval maths: exact dense search in blocks, BM25, hybrid fusion and the IR metrics (the dense search and
the metrics live in jaxemb/metrics/retrieval.py, where training's validation reads them too).

A run is the top-k of every query over the pool: `idx_QxK` (int64 document rows, best first) and `score_QxK`
(float32). Every ranking below is a run, so the metrics, the fusions and the verdict treat dense, BM25 and
hybrid rows alike.

- BM25 is bm25s (Lucene's BM25, k1 1.5, b 0.75). Tokenisation (stated, for both documents and queries):
  lower-cased, scikit-learn's token pattern `(?u)\\b\\w\\w+\\b` (words of >= 2 word characters), bm25s's
  English stop-word list removed, no stemming.
- Fusion of a dense run with BM25's over the union of their top-k: reciprocal-rank fusion
  `w / (60 + rank_dense) + (1 - w) / (60 + rank_bm25)` (Cormack et al. 2009's k = 60; a document a run did not
  return gets nothing from it) and normalised-score fusion `w * minmax(dense) + (1 - w) * minmax(bm25)`
  (min-max over the run's own top-k per query; a document the run did not return scores 0). The weight w is
  chosen by the caller on validation queries (`choose_weight`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxemb.metrics.retrieval import METRICS, dense_search, evaluate

# The evaluator's retrieval maths in one namespace: the dense search and the metrics are shared with training.
__all__ = ["METRICS", "RRF_K", "BM25", "bm25_tokenize", "choose_weight", "dense_search", "evaluate", "fuse"]
RRF_K = 60


# ------------------------------------------------------------------------------------------------- BM25
def bm25_tokenize(texts: Sequence[str], *, return_ids: bool = True):
  import bm25s
  return bm25s.tokenize(list(texts), lower=True, stopwords="en", stemmer=None, return_ids=return_ids,
                        show_progress=False)


class BM25:
  """bm25s over a document pool (tokenisation in the module docstring)."""

  def __init__(self, doc_texts: Sequence[str]):
    import bm25s
    self.n_docs = len(doc_texts)
    self.retriever = bm25s.BM25()
    self.retriever.index(bm25_tokenize(doc_texts), show_progress=False)

  def search(self, query_texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(idx_QxK int64, score_QxK float32), k = min(k, N); a query with no known token scores every document 0."""
    k = min(int(k), self.n_docs)
    tokens = bm25_tokenize(query_texts, return_ids=False)
    idx, score = self.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
    return np.asarray(idx, np.int64), np.asarray(score, np.float32)


# ----------------------------------------------------------------------------------------------- fusion
def _minmax(score_QxK: np.ndarray) -> np.ndarray:
  lo, hi = score_QxK.min(1, keepdims=True), score_QxK.max(1, keepdims=True)
  return np.where(hi > lo, (score_QxK - lo) / np.maximum(hi - lo, 1e-12), 1.0)


def fuse(run_a: tuple[np.ndarray, np.ndarray], run_b: tuple[np.ndarray, np.ndarray], w: float, method: str,
         k: int) -> tuple[np.ndarray, np.ndarray]:
  """w * run_a + (1 - w) * run_b over the union of their top-k, by "rrf" or "minmax" (module docstring).
  Returns the fused top-k run (ties broken by the lower document row)."""
  (ia, sa), (ib, sb) = run_a, run_b
  if method == "rrf":
    ranks = 1.0 / (RRF_K + np.arange(1, ia.shape[1] + 1, dtype=np.float64))
    ga, gb = np.broadcast_to(ranks, ia.shape), np.broadcast_to(ranks[:ib.shape[1]], ib.shape)
  elif method == "minmax":
    ga, gb = _minmax(sa.astype(np.float64)), _minmax(sb.astype(np.float64))
  else:
    raise ValueError(f"unknown fusion {method!r} (rrf or minmax)")
  idx_out = np.empty((len(ia), k), np.int64)
  score_out = np.full((len(ia), k), -np.inf, np.float32)
  for q in range(len(ia)):
    cand = np.concatenate([ia[q], ib[q]])
    s = np.concatenate([w * ga[q], (1.0 - w) * gb[q]])
    docs, inv = np.unique(cand, return_inverse=True)
    total = np.bincount(inv, weights=s, minlength=len(docs))
    order = np.lexsort((docs, -total))[:k]
    idx_out[q, :len(order)], score_out[q, :len(order)] = docs[order], total[order]
  return idx_out, score_out


def choose_weight(score_fn, grid: Sequence[float], default: float) -> tuple[float, dict[float, float]]:
  """The grid weight with the best validation score (score_fn(w) -> mean nDCG@10 on validation queries);
  ties go to the weight nearest `default`. Returns (w, {w: score})."""
  table = {float(w): float(score_fn(float(w))) for w in grid}
  best = max(table.values())
  return min((w for w, s in table.items() if s >= best - 1e-12), key=lambda w: (abs(w - default), w)), table
