"""An independent computation of a BEIR evaluation's dense and BM25 nDCG@10 (issue 22, done-when 2).

  python scripts/check_beir.py EVAL_WORKDIR [--model minilm] [--out check.json]

EVAL_WORKDIR is an `eval.py --config configs/retrieval.py` run on a BEIR folder. This reads the same query
subset (jaxemb.eval.retrieval_data.load_beir with the run's max_queries and split seed: the SET is shared, the
scoring is not), takes `--model`'s embeddings from the run's cache (the same vectors; a cache miss is an error,
nothing is re-embedded), and then, without jaxemb's search, fusion or pytrec_eval:
- dense: cosine = inner product of l2-normalised vectors in numpy, the 10 best documents per query;
- BM25: bm25s's own pipeline as its README shows it (bm25s.tokenize with English stop words, BM25().index,
  retrieve(k=10));
- nDCG@10 by its definition: DCG = sum_i grade_i / log2(i + 1) over ranks i = 1..10, divided by the DCG of the
  query's judgements sorted by grade (linear gain, as trec_eval's ndcg_cut).
It prints and writes the test queries' mean nDCG@10 next to results.json's, with the differences.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def ndcg_at_10(ranked: list[str], judged: dict[str, int]) -> float:
  """nDCG@10 of one query: `ranked` document ids best first, `judged` id -> grade (grades <= 0 gain nothing)."""
  dcg = sum(max(judged.get(d, 0), 0) / np.log2(i + 2) for i, d in enumerate(ranked[:10]))
  ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
  idcg = sum(g / np.log2(i + 2) for i, g in enumerate(ideal))
  return dcg / idcg if idcg > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("workdir")
  p.add_argument("--model", default="minilm")
  p.add_argument("--out", default="")
  a = p.parse_args(argv)
  from jaxemb.eval.cache import cached_embeddings
  from jaxemb.eval.retrieval_data import load_beir

  wd = Path(a.workdir)
  results = json.loads((wd / "results.json").read_text())
  cfg = results["config"]
  rs = load_beir(cfg["data"]["path"], max_queries=int(cfg["retrieval"]["max_queries"]),
                 seed=int(cfg["data"]["split_seed"]))
  test = [i for i, s in enumerate(rs.query_split) if s == "test"]

  def miss():
    raise SystemExit(f"check_beir: {a.model}'s embeddings are not in {wd / 'cache'}: run the evaluation first")

  # config.embed.cache_dir (results.json files written before it moved there name config.cache_dir)
  cache_dir = (cfg.get("embed") or {}).get("cache_dir") or cfg.get("cache_dir")
  cache = Path(cache_dir).expanduser() if cache_dir else wd / "cache"
  emb = {what: cached_embeddings(a.model, texts, max_length=int(cfg["max_length"]), cache_dir=cache,
                                 dtype=cfg["embed_dtype"], embed_fn=miss, log=lambda s: None)[0]
         for what, texts in (("docs", rs.doc_texts), ("queries", rs.query_texts))}  # the run embeds all its queries
  d = emb["docs"] / np.linalg.norm(emb["docs"], axis=1, keepdims=True)
  q = emb["queries"][test] / np.linalg.norm(emb["queries"][test], axis=1, keepdims=True)
  top = np.argsort(-(q @ d.T), axis=1, kind="stable")[:, :10]
  dense = [ndcg_at_10([rs.doc_ids[j] for j in row], rs.qrels[rs.query_ids[i]]) for i, row in zip(test, top)]

  import bm25s
  retriever = bm25s.BM25()
  retriever.index(bm25s.tokenize(rs.doc_texts, stopwords="en", show_progress=False), show_progress=False)
  hits, _ = retriever.retrieve(bm25s.tokenize([rs.query_texts[i] for i in test], stopwords="en",
                                              show_progress=False), k=10, show_progress=False)
  bm25 = [ndcg_at_10([rs.doc_ids[j] for j in row], rs.qrels[rs.query_ids[i]]) for i, row in zip(test, hits)]

  def reported(model: str) -> float:
    rows = [r for r in results["runs"] if r["model"] == model and r["mode"] == "retrieval" and r["split"] == "test"]
    if len(rows) != 1:
      raise SystemExit(f"check_beir: results.json has {len(rows)} test retrieval rows of {model!r}")
    return rows[0]["ndcg@10"]

  out = {"n_test_queries": len(test), "n_docs": len(rs.doc_ids)}
  for name, model, mine, tol in (("dense", a.model, dense, 0.005), ("bm25", "bm25", bm25, 0.01)):
    rep = reported(model)
    out[name] = {"model": model, "independent_ndcg@10": float(np.mean(mine)), "evaluator_ndcg@10": rep,
                 "difference": float(np.mean(mine)) - rep, "tolerance": tol,
                 "within": bool(abs(float(np.mean(mine)) - rep) <= tol)}
  print(json.dumps(out, indent=2))
  if a.out:
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
  return 0 if out["dense"]["within"] and out["bm25"]["within"] else 1


if __name__ == "__main__":
  sys.exit(main())
