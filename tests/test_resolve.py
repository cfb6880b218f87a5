"""jaxemb/resolve.py: one resolver for model specs ("minilm", HF folder, workdir, DIR@STEP); one error shape."""

import json
from pathlib import Path

import pytest

from jaxemb.cli import UserError
from jaxemb.resolve import (ModelNotFoundError, ModelSpecError, load_tokenizer, packaged_minilm_dir, resolve,
                            split_spec)


def _fake_workdir(root: Path, steps=(5, 10)) -> Path:
  """A workdir as the trainer leaves it, minus the weights: model/config.json, config.json, step folders."""
  wd = root / "wd"
  (wd / "model").mkdir(parents=True)
  (wd / "model" / "config.json").write_text("{}")
  (wd / "data_spec.json").write_text(json.dumps({"path": "notes.jsonl", "split_seed": 3}))
  (wd / "checkpoints").mkdir()
  for s in steps:
    (wd / "checkpoints" / str(s)).mkdir()
  (wd / "checkpoints" / "15.orbax-checkpoint-tmp-123").mkdir()  # an interrupted save is not a step
  return wd


def test_minilm_aliases():
  for spec in (None, "minilm", "MiniLM", "sentence-transformers/all-MiniLM-L6-v2"):
    r = resolve(spec)
    assert (r.kind, r.folder, r.name, r.step, r.data_spec) == ("minilm", packaged_minilm_dir(), "minilm", None, None)


def test_workdir_latest_and_step(tmp_path):
  wd = _fake_workdir(tmp_path)
  r = resolve(str(wd))
  assert (r.kind, r.workdir, r.folder, r.step, r.requested_step) == ("workdir", wd, wd / "model", 10, None)
  assert r.name == f"{wd}@10"
  assert r.data_spec == {"path": "notes.jsonl", "split_seed": 3}
  (wd / "data_spec.json").unlink()  # a workdir from before data specs
  assert resolve(str(wd)).data_spec is None
  assert resolve(f"{wd}@5").step == 5 and resolve(f"{wd}@5").requested_step == 5


def test_a_bad_step_is_one_clear_error(tmp_path):
  wd = _fake_workdir(tmp_path)
  with pytest.raises(ModelSpecError) as e:
    resolve(f"{wd}@7")
  assert str(e.value) == f"{wd}@7: no checkpoint at step 7; available: 5, 10"
  with pytest.raises(ModelSpecError, match=r"@latest: expected DIR@STEP with an integer step"):
    resolve(f"{wd}@latest")
  # The same message through every reader of model specs.
  from jaxemb import Encoder
  from jaxemb.eval.cache import model_fingerprint
  for load in (Encoder.from_pretrained, model_fingerprint):
    with pytest.raises(ModelSpecError, match=r"no checkpoint at step 7; available: 5, 10"):
      load(f"{wd}@7")


def test_workdir_without_checkpoints(tmp_path):
  wd = _fake_workdir(tmp_path, steps=())
  with pytest.raises(ModelSpecError, match="has no complete checkpoint yet"):
    resolve(str(wd))


def test_bad_paths(tmp_path, tiny_model_dir):
  with pytest.raises(ModelNotFoundError, match="does not exist"):
    resolve(str(tmp_path / "nope"))
  with pytest.raises(ModelSpecError, match="neither a Hugging Face model folder"):
    resolve(str(tmp_path))
  with pytest.raises(ModelSpecError, match="@STEP is only meaningful for a jaxemb training workdir"):
    resolve(f"{tiny_model_dir}@3")
  r = resolve(str(tiny_model_dir))
  assert (r.kind, r.folder, r.name) == ("hf", tiny_model_dir, str(tiny_model_dir))
  # Errors are user errors (one line, exit 2) and keep their built-in types for library callers.
  assert issubclass(ModelSpecError, (UserError, ValueError)) and issubclass(ModelNotFoundError, FileNotFoundError)


def test_a_path_with_an_at_sign_is_a_path(tmp_path, tiny_model_dir):
  import shutil
  odd = tmp_path / "model@2"
  shutil.copytree(tiny_model_dir, odd)
  assert split_spec(str(odd)) == (str(odd), None)
  assert resolve(str(odd)).kind == "hf"


def test_one_tokenizer_loader(tiny_model_dir):
  from jaxemb.data import prepare
  from jaxemb.models import api
  assert prepare.load_tokenizer is load_tokenizer is api.load_tokenizer
  assert load_tokenizer().vocab_size == load_tokenizer(tiny_model_dir).vocab_size == 30522
  with pytest.raises(ModelSpecError, match="could not load a tokenizer"):
    load_tokenizer(tiny_model_dir.parent)


def test_models_do_not_import_train():
  for path in (Path(__file__).resolve().parents[1] / "jaxemb" / "models").glob("*.py"):
    assert "jaxemb.train" not in path.read_text(), path


def test_the_data_spec_file_is_the_one_training_writes():
  from jaxemb.data import spec
  from jaxemb.resolve import DATA_SPEC_FILE
  assert DATA_SPEC_FILE == spec.SPEC_FILE
