"""The interpolation weight chosen on validation retrieval (validation.metric = "retrieval"): the table and the
choice against an independent NumPy scoring of hand-made embeddings, the refusal of a corpus without the query
field, and configs/pairs.py:smoke end to end with the choice in its export record."""

import gzip
import json
import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxemb.models.config import EncoderConfig  # noqa: E402
from jaxemb.train import validation  # noqa: E402
from jaxemb.train.config import base_config  # noqa: E402

CFG = EncoderConfig(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                    max_position_embeddings=64)
ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]


def _write(path: Path, rows) -> Path:
  with gzip.open(path, "wt") as f:
    f.write("\n".join(json.dumps(r) for r in rows))
  return path


def _prepared(tmp_path, rows):
  from jaxemb.data.corpus import Fields
  from jaxemb.data.prepare import prepare
  from jaxemb.resolve import load_tokenizer
  path = _write(tmp_path / "pairs.jsonl.gz", rows)
  return prepare(path, Fields(text="text", split="split", id="id"), load_tokenizer(), cache_dir=tmp_path / "cache")


def _retrieval_cfg():
  cfg = base_config("pairs")
  cfg.pairs.query_field = "question"
  cfg.validation.metric = "retrieval"
  cfg.validation.max_length = 32
  return cfg


# Six validation answers on topics 0..5, an exact duplicate of answer 0 (other case and spacing, its own
# question), and an answer without a question (in the pool, not a query). Training rows are never scored.
TOPICS = ["heart failure", "kidney stones", "asthma attack", "migraine aura", "knee injury", "skin rash"]
ROWS = ([{"id": f"v{t}", "text": f"answer about {TOPICS[t]} and its treatment", "question": f"what is {TOPICS[t]}?",
          "split": "validation"} for t in range(6)]
        + [{"id": "dup", "text": "Answer about HEART failure   and its treatment", "question": "is it my heart?",
            "split": "validation"},
           {"id": "noq", "text": "a note with no question at all", "split": "validation"}]
        + [{"id": f"t{i}", "text": f"training answer {i}", "question": f"training question {i}?", "split": "train"}
           for i in range(8)])
TOPIC = {"v0": 0, "v1": 1, "v2": 2, "v3": 3, "v4": 4, "v5": 5, "dup": 0, "noq": 6}
NEXT = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 4}   # the answer a query finds first when not fixed (never a duplicated one)
QUERY_ORDER = ["v0", "v1", "v2", "v3", "v4", "v5", "dup"]
# How many queries (first in QUERY_ORDER) find their own answer first at each a; the others find another topic's
# answer (NEXT) first and their own second. Best: a = 0.5 and 0.75 (all 7), the tie goes to the smaller a.
FIXED = {0.0: 0, 0.25: 3, 0.5: 7, 0.75: 7, 1.0: 4}


def _hand_embeddings(ids: list[str], a: float, queries: bool) -> np.ndarray:
  """Documents: one-hot on their topic (the duplicate shares answer 0's). Query of a document on topic t:
  w * e_t + e_NEXT[t], w = 2 when the query is fixed at this a (own answer first), else 0.5 (second)."""
  z = np.zeros((len(ids), 8), np.float32)
  for r, i in enumerate(ids):
    t = TOPIC[i]
    if not queries:
      z[r, t] = 1.0
    else:
      z[r, t] = 2.0 if QUERY_ORDER.index(i) < FIXED[a] else 0.5
      z[r, NEXT[t]] = 1.0
  return z


def _ndcg10(scores_N: np.ndarray, relevant: set[int]) -> float:
  """nDCG@10 with binary gains: ranks by score, ties by pool row (any order of tied relevant rows scores the
  same here, since tied rows are duplicates)."""
  order = np.lexsort((np.arange(len(scores_N)), -scores_N))[:10]
  dcg = sum(1.0 / math.log2(r + 2) for r, j in enumerate(order) if j in relevant)
  return dcg / sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), 10)))


def test_the_weight_with_the_best_validation_ndcg_is_chosen_smaller_on_ties(tmp_path, monkeypatch):
  """Reference: nDCG@10 per a computed here in NumPy from the same hand-made embeddings (cosine, rank, binary
  gains, the query's own answer and its exact duplicate relevant). By hand: a query that finds its own answer
  second scores 1/log2(3) = 0.631 (the two queries of the duplicated answer, which find both answers at ranks 2
  and 3, (1/log2 3 + 1/2) / (1 + 1/log2 3) = 0.693), a fixed query 1.0; so a = 0.5 and 0.75 reach 1.0 and the
  choice is 0.5."""
  prepared = _prepared(tmp_path, ROWS)
  val = validation.Validator(_retrieval_cfg(), prepared, CFG, {"w": np.float32(0.0)})
  vq = val.queries
  pool_ids = [r["id"] for r in prepared.records(val.vs.docs_N)]
  query_ids = [pool_ids[int(q[1:])] for q in vq.query_ids]
  assert sorted(pool_ids) == sorted(TOPIC) and sorted(query_ids) == sorted(QUERY_ORDER)
  assert vq.n_without_query == 1 and vq.field == "question"

  def fake_embed(params, vs, config):   # the encoder {"w": a}: interpolate(theta0 = 0, theta = 1, a)
    a = float(params["w"])
    return _hand_embeddings(query_ids if vs is vq.rows else pool_ids, a, vs is vq.rows)
  monkeypatch.setattr(validation, "embed", fake_embed)

  choice = val.choose_alpha({"w": np.float32(1.0)}, ALPHAS)
  table = {r["alpha"]: r for r in choice["table"]}
  assert list(table) == ALPHAS and all(r["candidate"] for r in table.values())
  expect = {}
  for a in ALPHAS:
    d, q = _hand_embeddings(pool_ids, a, False), _hand_embeddings(query_ids, a, True)
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ d.T
    per = [_ndcg10(cos[k], {j for j, p in enumerate(pool_ids) if TOPIC[p] == TOPIC[qid]})
           for k, qid in enumerate(query_ids)]
    expect[a] = np.array(per)
    assert table[a]["val_ndcg@10"] == pytest.approx(float(np.mean(per)), abs=1e-9), a
  l3 = 1 / math.log2(3)
  assert table[0.0]["val_ndcg@10"] == pytest.approx((5 * l3 + 2 * (l3 + 0.5) / (1 + l3)) / 7, abs=1e-9)
  assert table[0.5]["val_ndcg@10"] == table[0.75]["val_ndcg@10"] == 1.0
  assert choice["chosen_alpha"] == 0.5 and choice["criterion"] == "val_ndcg@10"
  # the paired bootstrap against the base over the validation queries: the base against itself is 0, and every
  # query gains at a = 0.5, so its interval lies above 0
  assert table[0.0]["val_diff"] == 0.0 and table[0.0]["val_verdict"] == "no different"
  assert table[0.5]["val_diff"] == pytest.approx(float(np.mean(1.0 - expect[0.0])))
  assert table[0.5]["val_ci_low"] > 0 and table[0.5]["val_verdict"] == "better"
  assert choice["retrieval"] == {"query_field": "question", "n_queries": 7, "n_docs": 8, "docs_without_query": 1,
                                 "n_queries_with_duplicates": 2}
  assert choice["cv"] is None
  # keep_best and the validation curve read the same score
  assert val.key == validation.score_key(_retrieval_cfg()) == "val_ndcg@10"
  assert val.score({"w": np.float32(0.5)})["val_ndcg@10"] == 1.0


def test_retrieval_validation_refuses_a_corpus_without_the_query_field(tmp_path):
  rows = [{k: v for k, v in r.items() if k != "question"} for r in ROWS]
  prepared = _prepared(tmp_path, rows)
  with pytest.raises(ValueError, match=r"field 'question'.*pairs\.jsonl\.gz.*validation\.query_field"):
    validation.Validator(_retrieval_cfg(), prepared, CFG, {"w": np.float32(0.0)})
  cfg = _retrieval_cfg()
  cfg.validation.metric = "retrievl"
  with pytest.raises(ValueError, match="validation.metric must be one of"):
    validation.Validator(cfg, prepared, CFG, {"w": np.float32(0.0)})


def test_a_present_query_field_without_validation_queries_is_refused(tmp_path):
  rows = [dict(r, question="") if r["split"] == "validation" else r for r in ROWS]
  prepared = _prepared(tmp_path, rows)
  with pytest.raises(ValueError, match=r"none of the 8 validation documents of .*pairs\.jsonl\.gz has a query in "
                                       r"field 'question'"):
    validation.Validator(_retrieval_cfg(), prepared, CFG, {"w": np.float32(0.0)})


@pytest.mark.slow
def test_pairs_smoke_exports_the_weight_chosen_on_validation_retrieval(tiny_model_dir, tmp_path):
  """configs/pairs.py:smoke (tiny model, 4 steps) on a corpus with a question field, scored every 2 steps with
  keep_best: the validation curve in metrics.jsonl is val_ndcg@10, the kept step is the one with the best of it,
  export.json's interpolation record holds every a's validation nDCG@10 and the exported weights are the kept
  step's interpolated with the base by the best a (ties: the smaller)."""
  from conftest import load_module
  from jaxemb import Encoder
  import jax
  from jaxemb.train.loop import train
  rows = []
  for i in range(72):
    t = TOPICS[i % 6]
    split = "validation" if i < 16 else "test" if i < 24 else "train"
    rows.append({"id": f"r{i}", "text": f"{t} answer {i}: treatment and symptoms of {t}, case {i}",
                 "question": f"what helps with {t} in case {i}?", "split": split})
  path = _write(tmp_path / "qa.jsonl.gz", rows)
  cfg = load_module("configs/pairs.py", "jaxemb_pairs_config").get_config("smoke")
  assert cfg.validation.metric == "retrieval" and cfg.interpolate.alphas == "0,0.25,0.5,0.75,1"
  cfg.model.init = str(tiny_model_dir)
  cfg.data.path, cfg.data.split_field, cfg.data.id_field, cfg.data.group_field = str(path), "split", "id", ""
  cfg.data.cache_dir = str(tmp_path / "cache")
  cfg.total_steps, cfg.checkpoint.every, cfg.optim.lr = 4, 2, 1e-3
  cfg.validation.every, cfg.validation.keep_best = 2, True
  cfg.freeze.layers = 1   # the tiny model has 2 layers
  w = tmp_path / "w"
  train(cfg, w)
  export = json.loads((w / "export.json").read_text())
  curve = [json.loads(line) for line in (w / "metrics.jsonl").read_text().splitlines()]
  curve = {r["step"]: r["val_ndcg@10"] for r in curve if "val_ndcg@10" in r}
  assert list(curve) == [2, 4] and not any("val_probe_f1" in r for r in export)
  kept = max(curve, key=lambda s: (curve[s], -s))   # strictly better replaces: the first best step
  assert export["best_metric"] == "val_ndcg@10" and export["best_step"] == kept
  assert export["best_val_ndcg@10"] == curve[kept]
  interp = export["interpolation"]
  assert interp["criterion"] == "val_ndcg@10" and interp["cv"] is None
  assert interp["retrieval"]["query_field"] == "question"
  assert interp["retrieval"]["n_queries"] == interp["retrieval"]["n_docs"] == interp["n_validation_docs"] == 16
  table = interp["table"]
  assert [r["alpha"] for r in table] == ALPHAS and all(r["candidate"] for r in table)
  assert all(0.0 <= r["val_ndcg@10"] <= 1.0 and r["val_verdict"] in ("better", "no different", "worse") for r in table)
  best = max(r["val_ndcg@10"] for r in table)
  assert interp["chosen_alpha"] == min(r["alpha"] for r in table if r["val_ndcg@10"] == best)
  assert export["excluded_splits"] == ["test", "validation"]
  # the exported weights are (1 - a) * theta0 + a * theta for the chosen a
  a = interp["chosen_alpha"]
  base = Encoder.from_pretrained(str(tiny_model_dir)).params["encoder"]
  trained = Encoder.from_pretrained(f"{w}@{kept}").params["encoder"]
  exported = Encoder.from_pretrained(w / "model").params["encoder"]
  for e, b, t in zip(jax.tree.leaves(exported), jax.tree.leaves(base), jax.tree.leaves(trained)):
    np.testing.assert_allclose(e, (1 - a) * b + a * t, rtol=0, atol=1e-6)
  card = (w / "model" / "README.md").read_text()
  assert f"a = {a} (val_ndcg@10" in card and "(best validation val_ndcg@10)" in card
