"""`python -m jaxemb.data FILE --json`: the dataset report's keys and values; clean one-line errors."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from jaxemb.data.__main__ import main  # noqa: E402
from jaxemb.data.synthetic import write_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
  """60 synthetic notes plus two bad rows appended."""
  path = write_corpus(tmp_path_factory.mktemp("cli") / "notes.jsonl.gz", n_notes=60, seed=2)
  with gzip.open(path, "ab") as f:
    f.write(b'{"text": ""}\n{broken\n')
  return path


def test_json_report_as_a_subprocess(corpus):
  env = {**os.environ, "PYTHONPATH": str(REPO), "TRANSFORMERS_VERBOSITY": "error"}
  out = subprocess.run([sys.executable, "-m", "jaxemb.data", str(corpus), "--label-field", "specialty",
                        "--metadata-field", "note_type", "--max-span", "16", "--anchors", "2", "--json"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
  assert out.returncode == 0, out.stderr
  report = json.loads(out.stdout.strip().splitlines()[-1])
  assert {"rows", "kept", "skipped", "labels", "metadata", "tokens", "declutr_eligible"} <= set(report)
  assert (report["rows"], report["kept"]) == (62, 60)
  assert report["skipped"] == {"empty_text": 1, "malformed_json": 1}
  assert report["skip_examples"] == {"empty_text": ["notes.jsonl.gz:61"], "malformed_json": ["notes.jsonl.gz:62"]}
  assert sum(report["labels"].values()) == sum(report["metadata"].values()) == 60
  t = report["tokens"]
  assert set(t) >= {"p50", "p90", "p99", "max"} and 0 < t["p50"] <= t["p90"] <= t["p99"] <= t["max"]
  assert 0 < report["declutr_eligible"] <= report["declutr_eligible_shrink"] <= 60


def test_text_report_and_declutr_threshold(corpus, capsys):
  assert main([str(corpus), "--metadata-field", "note_type", "--max-span", "10000"]) == 0
  text = capsys.readouterr().out
  assert "60 documents kept" in text and "empty_text" in text and "0 of 60 documents eligible" in text


@pytest.mark.parametrize("args, message", [
  (["{missing}"], "no such file"),
  (["{corpus}", "--label-field", "nope"], "'nope' is not a field"),
  (["{notgzip}"], "notgzip.jsonl.gz"),
  (["{txt}"], "unknown corpus format"),
])
def test_bad_file_or_field_is_one_line_error(corpus, tmp_path, capsys, args, message):
  (tmp_path / "notgzip.jsonl.gz").write_text("plain text, not gzip\n")
  (tmp_path / "notes.txt").write_text("x\n")
  paths = {"missing": tmp_path / "missing.jsonl", "corpus": corpus, "notgzip": tmp_path / "notgzip.jsonl.gz",
           "txt": tmp_path / "notes.txt"}
  assert main([a.format(**paths) for a in args]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and err.startswith("python -m jaxemb.data: error: ") and message in err and "Traceback" not in err


def test_report_counts_what_prepare_skips_and_duplicates(tmp_path, capsys):
  # A text of zero-width spaces survives cleaning but tokenises to nothing: prepare skips it as no_tokens,
  # and so does the report. Two texts equal up to case and spacing are one duplicate.
  rows = [{"text": "\u200b\u200b", "label": "a"}, {"text": "Chest pain.", "label": "a"},
          {"text": "chest   PAIN.", "label": None}, {"text": "Knee pain.", "label": ["b"]}]
  path = tmp_path / "small.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  assert main([str(path), "--label-field", "label", "--json"]) == 0
  r = json.loads(capsys.readouterr().out)
  assert r["kept"] == 3 and r["skipped"] == {"no_tokens": 1} and r["skip_examples"] == {"no_tokens": ["small.jsonl:1"]}
  assert r["unset"] == {"label": {"missing": 1, "not_scalar": 1}} and r["labels"] == {"a": 1}
  assert r["duplicates"]["documents"] == 1 and r["duplicates"]["texts"] == 1
  assert sum(r["split_sizes"].values()) == 3
