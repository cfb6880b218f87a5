"""Retrieval evaluator: metrics against a hand calculation, blocked search against brute force, fusion against
hand-computed orders, the paired verdict, the one-corpus judgements, and eval.py end to end on a BEIR folder
against an independent scoring of the same embeddings (NumPy) and of bm25s's own scores."""

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import load_module
from jaxemb.eval import retrieval
from jaxemb.metrics.compare import paired_bootstrap_mean


def test_metrics_match_a_hand_calculation():
  # q1: relevant a, c (grade 1), ranked b a c d e -> hits at ranks 2, 3.
  #   nDCG@10 = (1/log2 3 + 1/log2 4) / (1 + 1/log2 3) = 1.13093 / 1.63093; MRR 1/2; R@1 0; AP (1/2 + 2/3) / 2.
  # q2: b grade 2, d grade 1, ranked d e b a c -> d at 1, b at 3.
  #   nDCG@10 = (1/1 + 2/log2 4) / (2/1 + 1/log2 3) = 2 / 2.63093; MRR 1; R@1 1/2; AP (1/1 + 2/3) / 2.
  docs = ["a", "b", "c", "d", "e"]
  qrels = {"q1": {"a": 1, "c": 1, "e": 0}, "q2": {"b": 2, "d": 1}}
  idx = np.array([[1, 0, 2, 3, 4], [3, 4, 1, 0, 2]])
  score = np.array([[5, 4, 3, 2, 1], [5, 4, 3, 2, 1]], np.float32)
  m = retrieval.evaluate(idx, score, ["q1", "q2"], docs, qrels)
  l3 = 1 / math.log2(3)
  np.testing.assert_allclose(m["ndcg@10"], [(l3 + 0.5) / (1 + l3), 2 / (2 + l3)], atol=1e-9)
  np.testing.assert_allclose(m["mrr@10"], [0.5, 1.0])
  np.testing.assert_allclose(m["recall@1"], [0.0, 0.5])
  np.testing.assert_allclose(m["recall@10"], [1.0, 1.0])
  np.testing.assert_allclose(m["map@100"], [(0.5 + 2 / 3) / 2, (1 + 2 / 3) / 2], atol=1e-9)


def test_mrr_counts_only_the_top_ten():
  idx = np.arange(12)[None, ::-1].copy()   # the relevant document 0 comes 12th
  m = retrieval.evaluate(idx, -np.arange(12, dtype=np.float32)[None], ["q"], [f"d{i}" for i in range(12)],
                         {"q": {"d0": 1}})
  assert m["mrr@10"][0] == 0.0 and m["recall@100"][0] == 1.0 and m["map@100"][0] == pytest.approx(1 / 12)


def test_blocked_search_equals_brute_force():
  rng = np.random.default_rng(0)
  q, d = rng.normal(size=(7, 8)), rng.normal(size=(23, 8)) * rng.uniform(0.5, 2, size=(23, 1))
  idx, score = retrieval.dense_search(q, d, 6, query_block=3, doc_block=5)   # ragged query and document blocks
  cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (d / np.linalg.norm(d, axis=1, keepdims=True)).T
  expect = np.argsort(-cos, axis=1)[:, :6]
  np.testing.assert_array_equal(idx, expect)
  np.testing.assert_allclose(score, np.take_along_axis(cos, expect, 1), atol=1e-5)


def test_fusions_follow_the_hand_computed_order():
  a = (np.array([[0, 1, 2]]), np.array([[0.9, 0.5, 0.1]], np.float32))
  b = (np.array([[2, 0, 3]]), np.array([[3.0, 2.0, 1.0]], np.float32))
  # RRF, w 0.5: d0 .5/61 + .5/62 = .016261 > d2 .5/63 + .5/61 = .016133 > d1 .5/62 > d3 .5/63
  idx, s = retrieval.fuse(a, b, 0.5, "rrf", 4)
  assert idx.tolist() == [[0, 2, 1, 3]]
  assert s[0, 0] == pytest.approx(0.5 / 61 + 0.5 / 62)
  # min-max, w 0.5: a -> 1, .5, 0; b -> 1, .5, 0: d0 .5 + .25 = .75, d2 0 + .5, d1 .25, d3 0
  idx, s = retrieval.fuse(a, b, 0.5, "minmax", 4)
  assert idx.tolist() == [[0, 2, 1, 3]]
  np.testing.assert_allclose(s[0], [0.75, 0.5, 0.25, 0.0])
  # w = 0 is the second run alone, w = 1 the first (min-max: a run's last document scores 0, as do those it
  # did not return; the tie goes to the lower row)
  assert retrieval.fuse(a, b, 0.0, "rrf", 3)[0].tolist() == [[2, 0, 3]]
  assert retrieval.fuse(a, b, 1.0, "minmax", 3)[0].tolist() == [[0, 1, 2]]


def test_paired_bootstrap_mean():
  rng = np.random.default_rng(1)
  base = rng.uniform(size=200)
  res = paired_bootstrap_mean(base + 0.1, base, n_boot=200)
  assert res["diff"] == pytest.approx(0.1) and res["ci_low"] == pytest.approx(0.1) and res["verdict"] == "better"
  noisy = base + rng.normal(0, 0.3, size=200)
  res = paired_bootstrap_mean(noisy, base, n_boot=500, seed=3)
  # the interval is the percentile interval of the mean difference over resampled queries (a plain loop)
  d = noisy - base
  draws = np.random.default_rng(3).integers(0, 200, size=(500, 200))
  lo, hi = np.quantile(d[draws].mean(1), [0.025, 0.975])
  assert res["ci_low"] == pytest.approx(lo) and res["ci_high"] == pytest.approx(hi)


def _write_jsonl_gz(path: Path, rows):
  with gzip.open(path, "wt") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")


def test_pairs_judge_exact_duplicates_relevant_and_take_queries_from_held_out_splits(tmp_path):
  from jaxemb.data.spec import data_config
  from jaxemb.eval.retrieval_data import load_pairs
  rows = [{"id": f"r{i}", "text": f"answer number {i} about topic {i}", "question": f"question {i}?",
           "split": "test" if i < 6 else "train"} for i in range(20)]
  rows.append({"id": "dup", "text": "ANSWER number 0   about topic 0", "question": "another question?",
               "split": "test"})
  rows.append({"id": "noq", "text": "an answer without a question", "split": "test"})
  path = tmp_path / "pairs.jsonl.gz"
  _write_jsonl_gz(path, rows)
  cfg = data_config()
  cfg.path, cfg.group_field, cfg.label_field = str(path), "", ""
  rs = load_pairs(cfg, query_field="question", pool="all")
  assert len(rs.doc_ids) == 22
  test = rs.split_queries("test")
  assert sorted(rs.query_texts[i] for i in test) == sorted([f"question {i}?" for i in range(6)]
                                                          + ["another question?"])
  q0 = rs.query_ids[rs.query_texts.index("question 0?")]
  dup_docs = [rs.doc_ids[j] for j, t in enumerate(rs.doc_texts) if "number 0 " in t.lower().replace("  ", " ")]
  assert len(dup_docs) == 2 and set(rs.qrels[q0]) == set(dup_docs)
  assert rs.info["not_queries"]["test_rows_without_query"] == 1
  rs_eval = load_pairs(cfg, query_field="question", pool="eval")
  assert len(rs_eval.doc_ids) == 8   # train documents are not in the pool
  with pytest.raises(Exception, match="retrieval.query_field"):
    load_pairs(cfg, query_field="nope")


def _ndcg10(order, rel):
  """Independent nDCG@10: linear gain, log2(rank + 1) discount."""
  dcg = sum(rel.get(int(d), 0) / math.log2(r + 2) for r, d in enumerate(order[:10]))
  ideal = sorted(rel.values(), reverse=True)[:10]
  return dcg / sum(g / math.log2(r + 2) for r, g in enumerate(ideal))


@pytest.mark.slow
def test_eval_on_a_beir_folder_matches_an_independent_scoring(tiny_model_dir, tmp_path):
  import bm25s
  from jaxemb import Encoder
  rng = np.random.default_rng(0)
  vocab = [f"w{i}" for i in range(60)] + ["cardiac", "renal", "hepatic", "fever", "cough", "rash", "pain"]
  docs = [" ".join(rng.choice(vocab, 12)) for _ in range(40)]
  folder = tmp_path / "beir"
  (folder / "qrels").mkdir(parents=True)
  (folder / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": f"D{i}", "title": "", "text": t})
                                                 for i, t in enumerate(docs)))
  queries, qrels = {}, {"test": [], "dev": []}
  for k in range(20):
    target = int(rng.integers(40))
    queries[f"Q{k}"] = " ".join(docs[target].split()[:4])
    split = "test" if k < 14 else "dev"
    qrels[split].append((f"Q{k}", f"D{target}", 2))
    qrels[split].append((f"Q{k}", f"D{(target + 1) % 40}", 1))
  (folder / "queries.jsonl").write_text("\n".join(json.dumps({"_id": q, "text": t}) for q, t in queries.items()))
  for split, rows in qrels.items():
    (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                                   + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows))
  cfg = load_module("configs/retrieval.py", "jaxemb_retrieval_config").get_config("smoke")
  cfg.models, cfg.data.path = str(tiny_model_dir), str(folder)
  out = load_module("eval.py", "jaxemb_eval_cli").run(cfg, tmp_path / "out")
  rows = {(r["model"], r["mode"]): r for r in out["runs"] if r["split"] == "test"}
  assert set(rows) == {(str(tiny_model_dir), "retrieval"), (str(tiny_model_dir), "retrieval_rrf"),
                       (str(tiny_model_dir), "retrieval_minmax"), ("bm25", "retrieval")}

  test_q = [f"Q{k}" for k in range(14)]
  rel = {q: {int(d[1:]): s for qq, d, s in qrels["test"] if qq == q} for q in test_q}
  enc = Encoder.from_pretrained(str(tiny_model_dir))
  z_d = enc.embed(docs, max_length=cfg.max_length)
  z_q = enc.embed([queries[q] for q in test_q], max_length=cfg.max_length)
  cos = (z_q / np.linalg.norm(z_q, axis=1, keepdims=True)) @ (z_d / np.linalg.norm(z_d, axis=1, keepdims=True)).T
  dense = np.mean([_ndcg10(np.argsort(-cos[i], kind="stable"), rel[q]) for i, q in enumerate(test_q)])
  assert rows[(str(tiny_model_dir), "retrieval")]["ndcg@10"] == pytest.approx(dense, abs=0.005)

  bm = bm25s.BM25()
  bm.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)
  own = np.mean([_ndcg10(np.argsort(-bm.get_scores(bm25s.tokenize([queries[q]], stopwords="en", return_ids=False,
                                                                   show_progress=False)[0]), kind="stable"), rel[q])
                 for q in test_q])
  assert rows[("bm25", "retrieval")]["ndcg@10"] == pytest.approx(own, abs=0.01)

  verdict = {(v["model"], v["mode"], v["base"]) for v in out["verdict"]}
  assert ("bm25", "retrieval", str(tiny_model_dir)) in verdict
  assert (str(tiny_model_dir), "retrieval_rrf", "bm25") in verdict
  report = (tmp_path / "out" / "report.md").read_text()
  assert report.startswith("# jaxemb evaluation report\n\n## Verdict (retrieval)")
  # a rerun reads every unit back
  again = load_module("eval.py", "jaxemb_eval_cli2").run(cfg, tmp_path / "out")
  assert again["verdict"] == out["verdict"]


@pytest.mark.parametrize("field,value,message", [("fusions", "rrf,borda", "retrieval.fusions"),
                                                 ("k", 10, "k must be >= 100"),
                                                 ("weight_grid", "0,1.5", "must lie in"),
                                                 ("verdict_metric", "p@5", "verdict_metric")])
def test_bad_retrieval_settings_are_one_line_errors(field, value, message):
  from jaxemb.eval import evaluators
  from jaxemb.eval.dataset import EvalError
  cfg = load_module("configs/retrieval.py", "jaxemb_retrieval_config").get_config()
  cfg.retrieval[field] = value
  with pytest.raises(EvalError, match=message):
    evaluators.build(cfg, evaluators.Plan.from_config(cfg))


def test_retrieval_config_selects_the_dense_and_bm25_evaluators_and_no_labelled_ones():
  from jaxemb.eval import evaluators
  cfg = load_module("configs/retrieval.py", "jaxemb_retrieval_config").get_config()
  assert evaluators.selected(cfg) == ["retrieval", "bm25"]
  assert not any(e.needs_labels for e in evaluators.build(cfg, evaluators.Plan.from_config(cfg)))
