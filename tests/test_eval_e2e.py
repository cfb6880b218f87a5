"""End to end: `eval.py --config configs/eval.py:smoke` on the tiny random model, in-process."""

import csv
import json
from pathlib import Path

import pytest

from conftest import load_module

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


_load = load_module


def test_smoke_run_writes_every_output(tiny_model_dir, tmp_path):
  cfg = _load("configs/eval.py", "jaxemb_eval_config").get_config("smoke")
  cfg.models = str(tiny_model_dir)
  cfg.data.max_docs = 200  # smaller than the CLI smoke run: the whole test file stays well under a minute
  out_dir = tmp_path / "out"
  out = _load("eval.py", "jaxemb_eval_cli").run(cfg, out_dir)

  doc = json.loads((out_dir / "results.json").read_text())
  assert {"dataset", "runs", "geometry"} <= set(doc)
  ds = doc["dataset"]
  for key in ("path", "fields", "split_sizes", "class_counts", "skip_report", "n_dropped_unseen_labels"):
    assert key in ds
  assert sum(ds["split_sizes"].values()) <= 200

  run_keys = {"model", "mode", "shots", "seed", "split", "accuracy", "macro_f1", "weighted_f1",
              "macro_precision", "macro_recall", "auroc"}
  for r in doc["runs"]:
    assert run_keys <= set(r)
    assert r["shots"] == "all" or isinstance(r["shots"], int)
    assert 0.0 <= r["macro_f1"] <= 1.0
  got = {(r["mode"], r["shots"], r["seed"], r["split"]) for r in doc["runs"]}
  for mode, shot_list in (("probe", (4, "all")), ("probe_logreg", (4, "all")), ("tfidf", (4, "all")),
                          ("finetune", (4,))):
    for shots in shot_list:
      for seed in (0, 1):
        for split in ("validation", "test"):
          assert (mode, shots, seed, split) in got, (mode, shots, seed, split)

  geo_keys = {"model", "field", "alignment", "uniformity", "silhouette", "knn_accuracy", "kmeans_nmi",
              "kmeans_ari"}
  assert {g["field"] for g in doc["geometry"]} == {"specialty", "note_type"}
  for g in doc["geometry"]:
    assert geo_keys <= set(g)

  with open(out_dir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == len(doc["runs"])
  report = (out_dir / "report.md").read_text()
  assert "macro-F1" in report and "fewshot_macro_f1.png" in report
  pngs = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.png"))
  assert "fewshot_macro_f1.png" in pngs and len(pngs) == 3  # curves + a map by label + a map by metadata
  for p in pngs:
    assert (out_dir / p).read_bytes()[:4] == b"\x89PNG"
    assert p in report
  assert len(list((out_dir / "cache").glob("emb-*.npy"))) == 1
  assert out["paths"]["json"] == out_dir / "results.json"
