"""One data spec: shared by the training and evaluation configs, recorded in the workdir, checked by eval."""

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxemb.data import spec as spec_lib  # noqa: E402
from jaxemb.objectives.declutr import DeclutrBatches  # noqa: E402
from jaxemb.objectives.metadata import MetadataBatches  # noqa: E402
from jaxemb.data.corpus import Fields  # noqa: E402
from jaxemb.data.prepare import load_tokenizer, prepare  # noqa: E402
from jaxemb.data.synthetic import write_corpus  # noqa: E402
from jaxemb.eval.dataset import load_eval_data  # noqa: E402
from jaxemb.train.config import base_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer():
  return load_tokenizer()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
  return write_corpus(tmp_path_factory.mktemp("spec") / "notes.jsonl.gz", n_notes=160, seed=1)


def _eval_config():
  import importlib.util
  s = importlib.util.spec_from_file_location("eval_config", REPO / "configs" / "eval.py")
  module = importlib.util.module_from_spec(s)
  s.loader.exec_module(module)
  return module.get_config()


def test_training_and_evaluation_configs_share_one_data_block():
  shared = spec_lib.data_config().to_dict()
  train, ev = base_config("mlm").data.to_dict(), _eval_config().data.to_dict()
  for name, value in shared.items():
    assert train[name] == value and ev[name] == value, name
  # Every field name users already type keeps working.
  for name in ("path", "text_field", "split_field", "id_field", "group_field", "exclude_splits", "test_fraction",
               "val_fraction", "split_seed", "label_field", "metadata_field", "max_docs"):
    assert name in train and name in ev


def _prepared(corpus, tokenizer, tmp_path, data_cfg):
  fields = Fields(text=data_cfg.text_field, metadata=data_cfg.metadata_field or None,
                  group=data_cfg.group_field or None, split=data_cfg.split_field or None, id=data_cfg.id_field or None)
  return prepare(corpus, fields, tokenizer, cache_dir=tmp_path / "cache", **spec_lib.split_kwargs(data_cfg))


def _data_cfg(corpus, **overrides):
  d = spec_lib.data_config()
  d.path = str(corpus)
  d.max_classes = 0
  for k, v in overrides.items():
    d[k] = v
  return d


def test_training_uses_the_configured_fractions(corpus, tokenizer, tmp_path):
  # Without a corpus split field the fractions decide the split; 0.5 test cannot look like the old fixed 0.2.
  pc = _prepared(corpus, tokenizer, tmp_path, _data_cfg(corpus, split_field="", test_fraction=0.5))
  assert pc.settings["test_fraction"] == 0.5
  assert 0.35 < np.mean(pc.splits == "test") < 0.65


def test_workdir_records_the_split_and_eval_checks_it(corpus, tokenizer, tmp_path):
  cfg = _data_cfg(corpus, split_field="")
  pc = _prepared(corpus, tokenizer, tmp_path, cfg)
  batches = DeclutrBatches(pc, batch_size=4, max_span=32, anchors=1, positives=1, short_docs="shrink", seed=0,
                           min_span=8, mask_prob=0.15, split_positives=False)
  rec = spec_lib.write_data_spec(tmp_path, pc, cfg, batches)
  on_disk = json.loads((tmp_path / spec_lib.SPEC_FILE).read_text())
  assert on_disk == rec == spec_lib.read_data_spec(tmp_path)
  assert rec["exclude_splits"] == ["test"] and rec["split_field"] == "" and rec["split_seed"] == 0
  assert rec["split_plan"]["n_test"] == rec["split_sizes"]["test"]
  assert rec["drops"] == {"declutr/short_skipped": batches.n_short_skipped, "declutr/shrunk": batches.n_shrunk}
  assert spec_lib.drop_counts(pc, batches) == {**{f"skipped/{k}": v for k, v in pc.report.counts.items()},
                                               **batches.drop_counts()}

  # The same settings: the evaluation's test split is the one pre-training excluded.
  assert spec_lib.check_compatible(rec, load_eval_data(cfg)) is None
  # Another seed moves documents pre-training trained on into the test split: an error naming the field.
  with pytest.raises(spec_lib.DataSpecMismatchError, match=r"data\.split_seed=1 \(pre-training: 0\)"):
    spec_lib.check_compatible(rec, load_eval_data(_data_cfg(corpus, split_field="", split_seed=1)), model="w")
  with pytest.raises(spec_lib.DataSpecMismatchError, match=r"data\.split_field='split' \(pre-training: ''\)"):
    spec_lib.check_compatible(rec, load_eval_data(_data_cfg(corpus)))
  # A pre-training that did not leave the test split out saw every test document.
  with pytest.raises(spec_lib.DataSpecMismatchError, match="exclude_splits"):
    spec_lib.check_compatible({**rec, "exclude_splits": []}, load_eval_data(cfg))
  # Nothing to compare: a base HF folder (no record), another corpus file.
  assert "not checked" in spec_lib.check_compatible(None, load_eval_data(cfg))
  other = {**rec, "corpus": {"path": "x.jsonl", "sha256": "0" * 64}}
  assert "another corpus file" in spec_lib.check_compatible(other, load_eval_data(cfg))
  # A resume with other split settings is refused: its checkpoints were trained on the recorded split.
  pc1 = _prepared(corpus, tokenizer, tmp_path, _data_cfg(corpus, split_field="", split_seed=1))
  with pytest.raises(spec_lib.DataSpecMismatchError, match="split_seed"):
    spec_lib.write_data_spec(tmp_path, pc1, _data_cfg(corpus, split_field="", split_seed=1))


def test_required_fields_do_not_change_the_split(corpus, tokenizer, tmp_path):
  """The plan covers every row with a usable text: requiring a label (eval) or a category (metadata
  objective) does not move other documents between splits."""
  cfg = _data_cfg(corpus, split_field="")
  pc = prepare(corpus, Fields(metadata="note_type", id="id", group="group"), tokenizer, cache_dir=tmp_path / "c",
               require=("metadata",))
  rec = spec_lib.write_data_spec(tmp_path, pc, cfg)
  assert spec_lib.check_compatible(rec, load_eval_data(_data_cfg(corpus, split_field="", label_field="note_type"))) \
      is None


def test_metadata_drop_counts(corpus, tokenizer, tmp_path):
  pc = prepare(corpus, Fields(metadata="note_type", split="split", id="id"), tokenizer, cache_dir=tmp_path / "c")
  it = MetadataBatches(pc, batch_size=4, sampler="balanced", per_category=40, max_length=512, seed=0, mask_prob=0.15)
  small = {c: int((pc.category_index[it.doc_indices] == i).sum()) for i, c in enumerate(pc.categories)}
  expected = {c for c, n in small.items() if 0 < n < 40}
  assert set(it.too_small_categories) == expected
  assert it.drop_counts() == {"metadata/without_category": 0, "metadata/too_small_categories": len(expected),
                              "metadata/in_too_small_categories": sum(small[c] for c in expected)}
  assert MetadataBatches(pc, batch_size=4, max_length=512, seed=0, sampler='random',
                         mask_prob=0.15).drop_counts() == {"metadata/without_category": 0}


def test_corpus_path_is_the_one_quickstart_fallback(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXEMB_CACHE_DIR", str(tmp_path))
  monkeypatch.setattr("jaxemb.data.synthetic.quickstart_corpus_path",
                      lambda: tmp_path / "synthetic" / "q.jsonl.gz")
  assert spec_lib.corpus_path("") == tmp_path / "synthetic" / "q.jsonl.gz"
  assert spec_lib.corpus_path("~/x.jsonl") == Path.home() / "x.jsonl"


def test_file_sha256_is_the_prepared_corpus_identity(corpus, tokenizer, tmp_path):
  import hashlib
  pc = prepare(corpus, Fields(), tokenizer, cache_dir=tmp_path / "c")
  assert pc.corpus_sha256 == spec_lib.file_sha256(corpus) == hashlib.sha256(corpus.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_trained_workdir_is_checked_by_the_evaluator(tiny_model_dir, corpus, tmp_path):
  """train() writes data_spec.json; eval.py's check stops a test split pre-training may have trained on."""
  import importlib.util
  from jaxemb.train.loop import train
  cfg = base_config("mlm")
  from jaxemb.train.config import smoke
  cfg = smoke(cfg)
  cfg.model.init = str(tiny_model_dir)
  cfg.total_steps, cfg.checkpoint.every = 2, 2
  cfg.data.path, cfg.data.cache_dir, cfg.data.split_field = str(corpus), str(tmp_path / "cache"), ""
  train(cfg, tmp_path / "w")
  rec = spec_lib.read_data_spec(tmp_path / "w")
  assert rec["corpus"]["sha256"] == spec_lib.file_sha256(corpus) and rec["exclude_splits"] == ["test"]
  assert rec["drops"] == {} and rec["split_field"] == ""

  s = importlib.util.spec_from_file_location("jaxemb_eval_cli_spec", REPO / "eval.py")
  ev = importlib.util.module_from_spec(s)
  s.loader.exec_module(ev)
  data = load_eval_data(_data_cfg(corpus, split_field=""))
  # Same split: passes; minilm is not checked. The run trained on the validation documents (it excluded test
  # only), on which the evaluation chooses: it is named, and the report says so first.
  assert ev.check_data_specs(["minilm", str(tmp_path / "w")], data) == [str(tmp_path / "w")]
  from jaxemb.eval import report
  md = report.write_outputs(tmp_path / "out", {"dataset": {"validation_trained_on": [str(tmp_path / "w")]},
                                               "runs": [], "geometry": [], "config": {}})["md"].read_text()
  assert "**Validation seen in pre-training:** `w`" in md.replace(f"`{report.model_slug(str(tmp_path / 'w'))}`",
                                                                  "`w`")
  cfg.data.exclude_splits = "test,validation"  # a run that did not: nothing to say
  train(cfg, tmp_path / "w2")
  assert ev.check_data_specs([str(tmp_path / "w2")], data) == []
  with pytest.raises(spec_lib.DataSpecMismatchError, match=r"'.*w@?\d*'?: .*data\.test_fraction=0\.3"):
    ev.check_data_specs([str(tmp_path / "w")], load_eval_data(_data_cfg(corpus, split_field="", test_fraction=0.3)))
