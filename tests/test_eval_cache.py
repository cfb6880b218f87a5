"""Embedding cache (.npy + JSON, no pickle) and the `python -m jaxemb.eval.embed` entry point."""

import json
import os
from pathlib import Path

import numpy as np

from jaxemb.eval.cache import cached_embeddings, model_fingerprint


def _fake_model(tmp_path: Path) -> Path:
  d = tmp_path / "m"
  d.mkdir()
  (d / "config.json").write_text("{}")
  (d / "model.safetensors").write_bytes(b"weights-v1")
  return d


def test_cache_hit_and_what_invalidates_it(tmp_path):
  model = _fake_model(tmp_path)
  calls = []

  def embed(n=3):
    calls.append(1)
    return np.arange(n * 4, dtype=np.float32).reshape(n, 4)

  kw = dict(max_length=64, cache_dir=tmp_path / "cache", log=lambda m: None)
  z1, info1 = cached_embeddings(str(model), ["a", "b", "c"], embed_fn=embed, **kw)
  z2, info2 = cached_embeddings(str(model), ["a", "b", "c"], embed_fn=embed, **kw)
  assert len(calls) == 1 and info2["cache_hit"] and not info1["cache_hit"]
  np.testing.assert_array_equal(z1, z2)
  np.load(info2["cache_file"], allow_pickle=False)  # plain .npy
  meta = json.loads(Path(info2["cache_file"]).with_suffix(".json").read_text())
  assert meta["n"] == 3 and meta["dim"] == 4

  cached_embeddings(str(model), ["a", "b", "x"], embed_fn=embed, **kw)                 # other texts
  cached_embeddings(str(model), ["a", "b", "c"], embed_fn=embed, **{**kw, "max_length": 32})  # settings
  cached_embeddings(str(model), ["a", "b", "c"], embed_fn=embed, dtype="bfloat16", **kw)    # compute dtype
  cached_embeddings(str(model), ["a", "b", "c"], embed_fn=embed, dtype="float32", **kw)     # = the default: hit
  (model / "model.safetensors").write_bytes(b"weights-v2!")                            # new weights
  cached_embeddings(str(model), ["a", "b", "c"], embed_fn=embed, **kw)
  assert len(calls) == 5


def test_workdir_fingerprint_follows_the_chosen_step(tmp_path):
  wd = tmp_path / "wd"
  (wd / "model").mkdir(parents=True)
  (wd / "model" / "config.json").write_text("{}")
  for step in (10, 20):
    (wd / "checkpoints" / str(step)).mkdir(parents=True)
    (wd / "checkpoints" / str(step) / "params").write_text(f"p{step}")
  latest, at10 = model_fingerprint(str(wd)), model_fingerprint(f"{wd}@10")
  assert latest["resolved_step"] == 20 and at10["resolved_step"] == 10
  (wd / "checkpoints" / "30").mkdir()
  (wd / "checkpoints" / "30" / "params").write_text("p30")
  assert model_fingerprint(f"{wd}@10")["files"] == at10["files"]  # a new step leaves DIR@10 alone
  assert model_fingerprint(str(wd))["resolved_step"] == 30          # "latest" moves


def test_embed_entry_point(tiny_model_dir, tmp_path, capsys):
  from jaxemb.eval.embed import main
  data = tmp_path / "d.jsonl"
  data.write_text("".join(json.dumps({"id": f"n{i}", "body": f"patient note number {i}"}) + "\n"
                          for i in range(5)) + json.dumps({"id": "empty", "body": ""}) + "\n")
  prefix = tmp_path / "emb" / "notes"
  assert main(["--model", str(tiny_model_dir), "--data", str(data), "--text-field", "body",
               "--out", str(prefix), "--max-length", "32"]) == 0
  z = np.load(f"{prefix}.npy", allow_pickle=False)
  ids = json.loads(Path(f"{prefix}.ids.json").read_text())
  assert z.shape == (5, 32) and z.dtype == np.float32
  assert ids == [f"n{i}" for i in range(5)]
  assert json.loads(Path(f"{prefix}.json").read_text())["skip_report"]["counts"] == {"empty_text": 1}
  assert "1 rows skipped" in capsys.readouterr().out
  assert main(["--model", str(tiny_model_dir), "--data", str(data), "--text-field", "nope",
               "--out", str(prefix)]) == 2
  assert capsys.readouterr().err.startswith("python -m jaxemb.eval.embed: error: --text-field 'nope' is not a field")
  assert os.path.exists(f"{prefix}.npy")
