"""Bad input: one clear line and exit status 2, or a counted, reported decision; never a bare traceback."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import load_module
from ml_collections import ConfigDict

from jaxemb.eval.dataset import EvalError, load_eval_data

REPO = Path(__file__).resolve().parents[1]


_load = load_module


def _write(path: Path, rows: list[dict]) -> Path:
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def _corpus(tmp_path: Path) -> Path:
  """train: labels a/b (6 each); test: a, b, and c (c has no training example); one row has no label."""
  rows = []
  for i in range(12):
    rows.append({"id": f"tr{i}", "text": f"note {i} about {'heart' if i % 2 else 'skin'}",
                 "label": "a" if i % 2 else "b", "split": "train"})
  for i in range(6):
    rows.append({"id": f"te{i}", "text": f"test note {i}", "label": "abc"[i % 3], "split": "test"})
  rows.append({"id": "nolabel", "text": "a note without a label", "split": "train"})
  return _write(tmp_path / "c.jsonl", rows)


def _data_cfg(path: Path, **kw) -> ConfigDict:
  cfg = _load("configs/eval.py", "jaxemb_eval_config").get_config().data
  cfg.path = str(path)
  cfg.label_field = "label"
  cfg.metadata_field = ""
  cfg.group_field = ""
  cfg.val_fraction = 0.3
  for k, v in kw.items():
    cfg[k] = v
  return cfg


def test_labels_only_in_test_are_dropped_counted_and_reported(tmp_path):
  data = load_eval_data(_data_cfg(_corpus(tmp_path)))
  assert data.class_names == ["a", "b"]
  assert data.info["dropped_unseen_labels"] == {"test": {"c": 2}}
  assert data.info["n_dropped_unseen_labels"] == 2
  assert any("no training example" in n and "'c' x2" in n for n in data.notes)
  assert data.info["split_sizes"]["test"] == 4
  assert data.info["skip_report"]["counts"] == {"missing_label": 1}  # the reader's skip, also reported
  assert set(np.unique(data.y_N)) == {0, 1}


def test_unknown_label_field_is_one_clear_error(tmp_path):
  with pytest.raises(EvalError, match=r"data.label_field='diagnosis' is not a field .*fields seen: .*label"):
    load_eval_data(_data_cfg(_corpus(tmp_path), label_field="diagnosis"))


def test_single_training_class_is_an_error(tmp_path):
  rows = [{"text": f"t{i}", "label": "a", "split": "train"} for i in range(5)]
  rows += [{"text": "x", "label": "a", "split": "test"}]
  with pytest.raises(EvalError, match="needs >= 2"):
    load_eval_data(_data_cfg(_write(tmp_path / "one.jsonl", rows)))


def test_cli_bad_model_and_bad_field_exit_2_with_one_line(tmp_path, capsys):
  cli = _load("eval.py", "jaxemb_eval_cli")
  cfg = _load("configs/eval.py", "jaxemb_eval_config").get_config("smoke")
  cfg.data = _data_cfg(_corpus(tmp_path))
  not_a_model = tmp_path / "not_a_model"
  not_a_model.mkdir()
  cfg.models = str(not_a_model)
  assert cli.run_cli(cfg, tmp_path / "out") == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("eval.py: error: ") and "neither a Hugging Face model folder" in err
  assert len(err.splitlines()) == 1

  cfg.models = str(tmp_path / "missing")
  assert cli.run_cli(cfg, tmp_path / "out") == 2
  assert "does not exist" in capsys.readouterr().err

  cfg.models = "minilm"
  cfg.data.label_field = "diagnosis"
  assert cli.run_cli(cfg, tmp_path / "out") == 2
  assert "label_field='diagnosis'" in capsys.readouterr().err


def test_bad_settings_are_clear_errors(tmp_path):
  cli = _load("eval.py", "jaxemb_eval_cli")
  cfg = _load("configs/eval.py", "jaxemb_eval_config").get_config("smoke")
  for key, value, msg in (("modes", "probe,zeroshot", "unknown mode"), ("shots", "8,many", "neither"),
                          ("seeds", "0,x", "config"), ("embed_dtype", "float16", "embed_dtype")):
    c = ConfigDict(cfg.to_dict())
    c[key] = value
    with pytest.raises(EvalError, match=msg):
      cli.run(c, tmp_path / "out")
