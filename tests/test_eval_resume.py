"""eval.py keeps what it finished: results.json after every unit, a rerun resumes, a fine-tune NaN is a row."""

import json
from pathlib import Path

import pytest

from conftest import load_module

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


_load = load_module


@pytest.fixture(scope="module")
def two_models(tiny_model_dir, tmp_path_factory):
  """The tiny random BERT and a second one with other random weights (seed 1)."""
  from jaxemb.models.api import Encoder
  other = tmp_path_factory.mktemp("tiny2") / "tiny_bert_seed1"
  base = Encoder.from_pretrained(tiny_model_dir)
  Encoder.from_config(base.config, seed=1, name="tiny2").save_pretrained(other)
  return str(tiny_model_dir), str(other)


def _cfg(models, cache_dir):
  cfg = _load("configs/eval.py", "jaxemb_eval_config").get_config("smoke")
  cfg.models = ",".join(models)
  cfg.modes = "probe"
  cfg.probe.heads = "logreg"
  cfg.data.max_docs = 120
  cfg.geometry.maps = False
  cfg.verdict.n_boot = 200
  cfg.embed.cache_dir = str(cache_dir)   # both runs embed once
  return cfg


def _comparable(doc: dict) -> dict:
  """results.json less what measures time (timings, total_seconds, seconds per unit)."""
  doc = {k: v for k, v in doc.items() if k not in ("timings_s", "total_seconds")}
  doc["resume"] = {**doc["resume"], "units": [{k: v for k, v in u.items() if k != "seconds"}
                                              for u in doc["resume"]["units"]]}
  return doc


def test_interrupted_run_resumes_to_the_same_results(two_models, tmp_path, monkeypatch):
  cli = _load("eval.py", "jaxemb_eval_cli")
  from jaxemb.eval.evaluators import probe as probe_evaluator
  cfg = _cfg(two_models, tmp_path / "cache")
  cli.run(cfg, tmp_path / "whole")
  whole = json.loads((tmp_path / "whole" / "results.json").read_text())
  assert whole["complete"] is True

  # Interrupted: the probe of the second model raises (as a kill or a crash would stop it there).
  real_run = probe_evaluator.ProbeEvaluator.run
  calls = []

  def crash_on_second(self, unit, model, ctx):
    calls.append((model.spec, unit))
    if model.spec == two_models[1]:
      raise RuntimeError("injected crash")
    return real_run(self, unit, model, ctx)

  monkeypatch.setattr(probe_evaluator.ProbeEvaluator, "run", crash_on_second)
  with pytest.raises(RuntimeError, match="injected crash"):
    cli.run(_cfg(two_models, tmp_path / "cache"), tmp_path / "cut")
  partial = json.loads((tmp_path / "cut" / "results.json").read_text())
  assert partial["complete"] is False
  assert {(u["model"], u["unit"]) for u in partial["resume"]["units"]} == {
      (two_models[0], "probe_logreg"), (two_models[0], "geometry")}
  assert {r["model"] for r in partial["runs"]} == {two_models[0]}

  # The same command again: the first model's units are read back, not run again.
  calls.clear()
  monkeypatch.setattr(probe_evaluator.ProbeEvaluator, "run",
                      lambda self, unit, model, ctx: calls.append((model.spec, unit)) or real_run(self, unit, model,
                                                                                                     ctx))
  out = cli.run(_cfg(two_models, tmp_path / "cache"), tmp_path / "cut")
  assert calls == [(two_models[1], "probe_logreg")]
  resumed = json.loads((tmp_path / "cut" / "results.json").read_text())
  assert _comparable(resumed) == _comparable(whole)
  assert out["runs"] == whole["runs"]

  # The verdict: the second model against the first, per (mode, shots), with its interval, in the report too.
  verdict = resumed["verdict"]
  assert [(v["model"], v["mode"], v["shots"]) for v in verdict] == [
      (two_models[1], "probe_logreg", 4), (two_models[1], "probe_logreg", "all")]
  for v in verdict:
    assert v["base"] == two_models[0] and v["n_seeds"] == 2 and v["n_boot"] == 200
    assert v["ci_low"] <= v["diff"] <= v["ci_high"]
    assert v["verdict"] in ("better", "no different", "worse")
  report = (tmp_path / "cut" / "report.md").read_text()
  assert report.index("## Verdict") < report.index("## Classification")
  assert sum(line.startswith("| tiny_bert_seed1") for line in report.split("## Classification")[0].splitlines()) == 2


def test_changed_config_starts_over(two_models, tmp_path):
  cli = _load("eval.py", "jaxemb_eval_cli")
  cfg = _cfg(two_models[:1], tmp_path / "cache")
  cfg.tfidf = False
  cfg.geometry.enabled = False
  cli.run(cfg, tmp_path / "out")
  cfg.probe.max_steps = 50   # what a unit computes changed: its old rows must not be reused
  lines = []
  cli.log, real_log = lines.append, cli.log
  try:
    out = cli.run(cfg, tmp_path / "out")
  finally:
    cli.log = real_log
  assert any("another config or corpus" in line and "starting over" in line for line in lines)
  assert all(r["steps"] <= 50 for r in out["runs"])


def test_finetune_nan_is_a_failed_row_and_the_run_goes_on(two_models, tmp_path, capsys, monkeypatch):
  cli = _load("eval.py", "jaxemb_eval_cli")
  from jaxemb.eval.evaluators import geometry as geometry_evaluator
  cfg = _cfg(two_models[:1], tmp_path / "cache")
  cfg.modes = "finetune"
  cfg.finetune.lr = cfg.finetune.head_lr = 1e30   # the first update overflows the weights: loss NaN

  def nan_embeddings(self, unit, model, ctx):     # as cache.cached_embeddings reports NaN embeddings
    raise FloatingPointError(f"embeddings of {model.spec} contain NaN/Inf")

  monkeypatch.setattr(geometry_evaluator.GeometryEvaluator, "run", nan_embeddings)
  assert cli.run_cli(cfg, tmp_path / "out") == 0
  doc = json.loads((tmp_path / "out" / "results.json").read_text())
  assert doc["complete"] is True
  assert [(f["mode"], f["shots"], f["seed"]) for f in doc["failed"]] == [
      ("geometry", None, None), ("finetune", 4, 0), ("finetune", 4, 1)]
  assert doc["failed"][0]["reason"] == f"FloatingPointError: embeddings of {two_models[0]} contain NaN/Inf"
  assert all(f["reason"].startswith("FloatingPointError: fine-tuning loss is nan") for f in doc["failed"][1:])
  assert {r["mode"] for r in doc["runs"]} == {"tfidf"}   # the evaluation went on to the TF-IDF rows
  assert "## Failed runs" in (tmp_path / "out" / "report.md").read_text()
  assert "Traceback" not in capsys.readouterr().err


def test_balanced_class_weight_rows_are_their_own_modes(two_models, tmp_path):
  cli = _load("eval.py", "jaxemb_eval_cli")
  cfg = _cfg(two_models[:1], tmp_path / "cache")
  cfg.geometry.enabled = False
  cfg.probe.class_weight = "none,balanced"
  cfg.tfidf_class_weight = "balanced"
  out = cli.run(cfg, tmp_path / "out")
  assert list(dict.fromkeys(r["mode"] for r in out["runs"])) == ["probe_logreg", "probe_logreg_balanced",
                                                                 "tfidf_balanced"]
  assert all(isinstance(r["converged"], bool) and r["n_iter"] > 0 for r in out["runs"] if r["mode"] == "tfidf_balanced")
  for key, value in (("probe.class_weight", "equal"), ("tfidf_class_weight", "")):
    bad = _cfg(two_models[:1], tmp_path / "cache")
    section, _, field = key.rpartition(".")
    (bad[section] if section else bad)[field] = value
    with pytest.raises(cli.EvalError, match=key.replace(".", r"\.")):
      cli.run(bad, tmp_path / "bad")
