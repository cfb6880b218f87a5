"""Retrieval metrics below training and evaluation alike: exact dense search in blocks, the IR metrics of a
run, and the judgements of one corpus whose rows pair a query with its document.

A run is the top-k of every query over the pool: `idx_QxK` (int64 document rows, best first) and `score_QxK`
(float32).

- Dense search is exact (cosine: inner product of l2-normalised embeddings), on the default jax device, in
  blocks: `query_block` queries against `doc_block` documents at a time, each block's top-k merged into the
  running top-k. Memory is O(query_block x doc_block) whatever the pool, so a pool of 1M x 384 is a loop of
  small matmuls, not a Q x 1M score matrix.
- Metrics by pytrec_eval (trec_eval's definitions, as BEIR computes them): nDCG@10 (`ndcg_cut.10`, linear
  gain = the judged grade), MRR@10 (`recip_rank` of the top 10), Recall@1/10/100 and MAP@100
  (`map_cut.100`). Per query, so a paired verdict (`compare.paired_bootstrap_mean`) can pair them.
- One-corpus judgements (`self_judgements`): a row's query is relevant (grade 1) to its own document and to
  every exact duplicate of it in the pool (the same duplicate key, the split planner's text key), so a
  duplicated answer retrieved first is not counted as a miss.
"""

from __future__ import annotations

from functools import partial
from typing import Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "map@100")
_TREC = {"ndcg@10": "ndcg_cut_10", "recall@1": "recall_1", "recall@10": "recall_10", "recall@100": "recall_100",
         "map@100": "map_cut_100"}


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


def self_judgements(query_ids: Sequence[str], query_doc: Sequence[int], doc_ids: Sequence[str],
                    doc_keys: Sequence[Hashable]) -> dict[str, dict[str, int]]:
  """qrels {query id: {document id: 1}}: query q (its own document is pool row query_doc[q]) is relevant to
  every pool row whose duplicate key equals its document's (the document itself included)."""
  rows_of: dict[Hashable, list[str]] = {}
  for did, key in zip(doc_ids, doc_keys):
    rows_of.setdefault(key, []).append(did)
  return {qid: {did: 1 for did in rows_of[doc_keys[int(j)]]} for qid, j in zip(query_ids, query_doc)}
