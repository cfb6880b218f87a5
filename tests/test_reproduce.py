"""The reproduction sweep (scripts/reproduce.py) end to end at smoke size, so the experiment cannot rot."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, shared_corpus

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_reproduce_smoke_pipeline(tiny_model_dir, tmp_path):
  """All seven models (the base + six pre-training runs, MLM-then-DeCLUTR staged on the MLM run) on a
  240-document MTSamples subset, then one eval.py over all of them. Tiny model so it runs in CPU-minutes."""
  shared_corpus("mtsamples_notes.jsonl.gz")
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXEMB_CACHE_DIR": str(tmp_path / "cache")}
  r = subprocess.run([sys.executable, "scripts/reproduce.py", "--out", str(tmp_path / "repro"), "--smoke",
                      "--model", str(tiny_model_dir)], cwd=REPO, env=env, capture_output=True, text=True)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  out = tmp_path / "repro" / "mtsamples"
  for run in ("mlm", "declutr", "declutr_only", "meta_supcon", "meta_classify", "mlm_declutr"):
    assert (out / run / "model" / "model.safetensors").exists(), run
  # Staging: the DeCLUTR run after MLM started from the MLM workdir.
  staged = json.loads((out / "mlm_declutr" / "config.json").read_text())
  assert staged["model"]["init"] == str(out / "mlm")
  results = json.loads((out / "eval" / "results.json").read_text())
  models = {r["model"] for r in results["runs"] if r["mode"] != "tfidf"}
  assert len(models) == 7
  assert {r["mode"] for r in results["runs"]} >= {"probe", "tfidf"}
  assert results["geometry"]
  # Retrieval stage: the pairs model and the base against BM25, on the subset's description -> note pairs.
  ret = json.loads((out / "retrieval" / "results.json").read_text())
  assert {(r["model"], r["mode"]) for r in ret["runs"]} >= {("bm25", "retrieval"), (str(out / "pairs"), "retrieval")}
  assert json.loads((out / "pairs" / "config.json").read_text())["objective"] == "pairs"
  # Pre-training never saw the evaluation's test split, nor the validation split it chooses on.
  for run in ("mlm", "declutr", "meta_supcon", "pairs"):
    assert json.loads((out / run / "config.json").read_text())["data"]["exclude_splits"] == "test,validation"
  assert ret["dataset"]["validation_trained_on"] == []
  # Rerunning resumes: everything is done, nothing is retrained or re-evaluated.
  r2 = subprocess.run([sys.executable, "scripts/reproduce.py", "--out", str(tmp_path / "repro"), "--smoke",
                       "--model", str(tiny_model_dir)], cwd=REPO, env=env, capture_output=True, text=True)
  assert r2.returncode == 0 and "$ python" not in r2.stdout, r2.stdout[-2000:]
  # The exact eval command is kept next to results.json, and the report renders from the sweep's outputs.
  assert json.loads((out / "eval" / "command.json").read_text())[:3] == ["eval.py", "--config", "configs/eval.py:smoke"]
  sys.path.insert(0, str(REPO / "scripts"))
  import reproduce
  from results_md import write_results_md
  md = tmp_path / "docs" / "RESULTS.md"
  write_results_md(tmp_path / "repro", md, {"mtsamples": reproduce.CORPORA["mtsamples"]}, reproduce.SMOKE_BUDGET,
                   reproduce.train_runs, reproduce.eval_argv)
  text = md.read_text()
  assert "## mtsamples" in text and "| 2 MLM |" in text and "| TF-IDF + logistic regression |" in text
  # each pre-trained model's verdict against the base, per mode and shot count
  assert "Verdict against the base" in text and "| 2 MLM | probe | " in text
  # smoke: 6 models x (probe and probe_logreg at shots 4 and all, finetune at 4)
  assert len(results["verdict"]) == 6 * 5
  assert "python eval.py --config configs/eval.py:smoke --workdir runs/repro/mtsamples/eval" in text
  assert (md.parent / "results" / "mtsamples" / "results.json").exists()
