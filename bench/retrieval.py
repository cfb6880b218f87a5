"""Exact dense search in blocks (jaxemb/eval/retrieval.py) against a NumPy reference, side by side.

  python bench/retrieval.py [--docs 200000] [--queries 1000] [--dim 384] [--k 100] [--json]

The reference scores all queries x documents with one NumPy matmul and takes the top k with argpartition (its
memory is queries x documents float32: 0.8 GB at the defaults, where the blocked search holds query_block x
doc_block = 64 MB). Reports seconds of each, their ratio, the peak size of the score matrix each holds, and
whether the two top-k sets agree (fraction of equal indices; ties of random data are rare). Random unit
vectors; with --json the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--docs", type=int, default=200_000)
  ap.add_argument("--queries", type=int, default=1000)
  ap.add_argument("--dim", type=int, default=384)
  ap.add_argument("--k", type=int, default=100)
  ap.add_argument("--query-block", type=int, default=1024)
  ap.add_argument("--doc-block", type=int, default=16384)
  ap.add_argument("--json", action="store_true")
  a = ap.parse_args()
  from jaxemb.eval.retrieval import dense_search
  rng = np.random.default_rng(0)
  d = rng.normal(size=(a.docs, a.dim)).astype(np.float32)
  q = rng.normal(size=(a.queries, a.dim)).astype(np.float32)
  d /= np.linalg.norm(d, axis=1, keepdims=True)
  q /= np.linalg.norm(q, axis=1, keepdims=True)

  dense_search(q[:8], d[:a.doc_block], a.k, query_block=a.query_block, doc_block=a.doc_block)   # compile
  t0 = time.perf_counter()
  idx, _ = dense_search(q, d, a.k, query_block=a.query_block, doc_block=a.doc_block)
  t_blocked = time.perf_counter() - t0

  t0 = time.perf_counter()
  s = q @ d.T
  part = np.argpartition(-s, a.k, axis=1)[:, :a.k]
  ref = np.take_along_axis(part, np.argsort(-np.take_along_axis(s, part, 1), axis=1), 1)
  t_ref = time.perf_counter() - t0

  res = {"docs": a.docs, "queries": a.queries, "dim": a.dim, "k": a.k, "blocked_s": round(t_blocked, 3),
         "numpy_s": round(t_ref, 3), "blocked_over_numpy": round(t_blocked / t_ref, 3),
         "blocked_scores_mb": round(min(a.query_block, a.queries) * min(a.doc_block, a.docs) * 4 / 2**20, 1),
         "numpy_scores_mb": round(a.queries * a.docs * 4 / 2**20, 1),
         "topk_agreement": float(np.mean([len(set(x) & set(y)) / a.k for x, y in zip(idx, ref)]))}
  for k, v in res.items():
    print(f"{k:>20}: {v}")
  if a.json:
    print(json.dumps(res))


if __name__ == "__main__":
  main()
