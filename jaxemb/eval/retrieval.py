"""Retrieval maths: exact dense search in blocks, BM25, hybrid fusion and the IR metrics.

A run is the top-k of every query over the pool: `idx_QxK` (int64 document rows, best first) and `score_QxK`
(float32). Every ranking below is a run, so the metrics, the fusions and the verdict treat dense, BM25 and
hybrid rows alike.

- Dense search is exact (cosine: inner product of l2-normalised embeddings), on the default jax device, in
  blocks: `query_block` queries against `doc_block` documents at a time, each block's top-k merged into the
  running top-k. Memory is O(query_block x doc_block) whatever the pool, so a pool of 1M x 384 is a loop of
  small matmuls, not a Q x 1M score matrix.
- BM25 is bm25s (Lucene's BM25, k1 1.5, b 0.75). Tokenisation (stated, for both documents and queries):
  lower-cased, scikit-learn's token pattern `(?u)\\b\\w\\w+\\b` (words of >= 2 word characters), bm25s's
  English stop-word list removed, no stemming.
- Fusion of a dense run with BM25's over the union of their top-k: reciprocal-rank fusion
  `w / (60 + rank_dense) + (1 - w) / (60 + rank_bm25)` (Cormack et al. 2009's k = 60; a document a run did not
  return gets nothing from it) and normalised-score fusion `w * minmax(dense) + (1 - w) * minmax(bm25)`
  (min-max over the run's own top-k per query; a document the run did not return scores 0). The weight w is
  chosen by the caller on validation queries (`choose_weight`).
- Metrics by pytrec_eval (trec_eval's definitions, as BEIR computes them): nDCG@10 (`ndcg_cut.10`, linear
  gain = the judged grade), MRR@10 (`recip_rank` of the top 10), Recall@1/10/100 and MAP@100
  (`map_cut.100`). Per query, so the verdict can pair them.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "map@100")
_TREC = {"ndcg@10": "ndcg_cut_10", "recall@1": "recall_1", "recall@10": "recall_10", "recall@100": "recall_100",
         "map@100": "map_cut_100"}
RRF_K = 60


# ------------------------------------------------------------------------------------------- dense search
def _l2(x_NxD: np.ndarray) -> np.ndarray:
  x_NxD = np.asarray(x_NxD, np.float32)
  return x_NxD / np.maximum(np.linalg.norm(x_NxD, axis=1, keepdims=True), 1e-12)


@partial(jax.jit, static_argnames=("k",))
def _block_topk(q_QxD, d_BxD, valid_B, best_s_QxK, best_i_QxK, offset, *, k: int):
  """Merges one document block into the running top-k of each query (scores of padded rows are -inf)."""
  s_QxB = jnp.matmul(q_QxD, d_BxD.T, precision=jax.lax.Precision.HIGHEST)
  s_QxB = jnp.where(valid_B[None, :], s_QxB, -jnp.inf)
  kb = min(k, s_QxB.shape[1])
  bs_QxKb, bi_QxKb = jax.lax.top_k(s_QxB, kb)
  s_Qx2K = jnp.concatenate([best_s_QxK, bs_QxKb], axis=1)
  i_Qx2K = jnp.concatenate([best_i_QxK, bi_QxKb + offset], axis=1)
  top_s, pos = jax.lax.top_k(s_Qx2K, k)
  return top_s, jnp.take_along_axis(i_Qx2K, pos, axis=1)


def dense_search(q_QxD: np.ndarray, d_NxD: np.ndarray, k: int, *, query_block: int = 1024,
                 doc_block: int = 16384) -> tuple[np.ndarray, np.ndarray]:
  """Exact cosine top-k: (idx_QxK int64, score_QxK float32), k = min(k, N). Blocks of query_block queries x
  doc_block documents (fixed shapes: the last block is padded, so the merge compiles once per shape)."""
  q_QxD, d_NxD = _l2(q_QxD), _l2(d_NxD)
  n_docs = len(d_NxD)
  k = min(int(k), n_docs)
  doc_block = min(doc_block, n_docs)
  n_blocks = -(-n_docs // doc_block)
  d_pad = np.zeros((n_blocks * doc_block, d_NxD.shape[1]), np.float32)
  d_pad[:n_docs] = d_NxD
  valid = np.arange(len(d_pad)) < n_docs
  idx_out, score_out = [], []
  for q0 in range(0, len(q_QxD), query_block):
    q = jnp.asarray(q_QxD[q0:q0 + query_block])
    best_s = jnp.full((q.shape[0], k), -jnp.inf, jnp.float32)
    best_i = jnp.full((q.shape[0], k), -1, jnp.int32)
    for b in range(n_blocks):
      sl = slice(b * doc_block, (b + 1) * doc_block)
      best_s, best_i = _block_topk(q, jnp.asarray(d_pad[sl]), jnp.asarray(valid[sl]), best_s, best_i,
                                   b * doc_block, k=k)
    idx_out.append(np.asarray(best_i, np.int64))
    score_out.append(np.asarray(best_s, np.float32))
  return np.concatenate(idx_out), np.concatenate(score_out)


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


# ---------------------------------------------------------------------------------------------- metrics
def evaluate(idx_QxK: np.ndarray, score_QxK: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str],
             qrels: dict[str, dict[str, int]]) -> dict[str, np.ndarray]:
  """Per-query metrics (float64 [Q] each, METRICS) of a run, by pytrec_eval. Padded entries (score -inf or
  row < 0) are not retrieved."""
  import pytrec_eval
  runs, runs10 = {}, {}
  for q, qid in enumerate(query_ids):
    keep = [j for j in range(idx_QxK.shape[1]) if idx_QxK[q, j] >= 0 and np.isfinite(score_QxK[q, j])]
    # trec_eval orders by score, ties by document id: distinct scores by rank keep the run's own order.
    ranked = {doc_ids[idx_QxK[q, j]]: float(len(keep) - r) for r, j in enumerate(keep)}
    runs[qid] = ranked
    runs10[qid] = dict(list(ranked.items())[:10])
  judged = {qid: qrels[qid] for qid in query_ids}
  per = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10", "recall.1,10,100", "map_cut.100"}).evaluate(runs)
  rr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(runs10)
  out = {m: np.array([per.get(q, {}).get(t, 0.0) for q in query_ids]) for m, t in _TREC.items()}
  out["mrr@10"] = np.array([rr.get(q, {}).get("recip_rank", 0.0) for q in query_ids])
  return {m: out[m] for m in METRICS}


def choose_weight(score_fn, grid: Sequence[float], default: float) -> tuple[float, dict[float, float]]:
  """The grid weight with the best validation score (score_fn(w) -> mean nDCG@10 on validation queries);
  ties go to the weight nearest `default`. Returns (w, {w: score})."""
  table = {float(w): float(score_fn(float(w))) for w in grid}
  best = max(table.values())
  return min((w for w, s in table.items() if s >= best - 1e-12), key=lambda w: (abs(w - default), w)), table
