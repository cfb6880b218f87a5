"""Prepared corpora: tokenise once into a TFDS array_record cache, keyed by content + tokenizer + settings."""

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxemb.data.corpus import BadRowError, Fields, load_documents  # noqa: E402
from jaxemb.data.splits import assign_split  # noqa: E402
from jaxemb.data.prepare import (JaxembPrepared, PreparedCorpus, load_tokenizer, prepare, tokenize,  # noqa: E402
                                 tokenizer_fingerprint)

FIELDS = Fields(label="label", metadata="kind", group="patient", id="id")
ROWS = [
  {"id": "a", "text": "Chest pain radiating to the left arm.", "label": "cardio", "kind": "consult", "patient": "p1"},
  {"id": "b", "text": "Seen by [** Name **]. Knee   effusion,\n\n\n\nmeniscus tear.", "label": "ortho", "kind": "op",
   "patient": "p2"},
  "not json",
  {"id": "c", "text": "   ", "label": "ortho"},
  {"id": "d", "text": "Headache and photophobia.", "kind": "consult", "patient": "p1"},
  {"id": "e", "text": "Wheezing; start albuterol.", "label": "pulm", "kind": "progress"},
]


@pytest.fixture(scope="module")
def tokenizer():
  return load_tokenizer()


def _write(path: Path, rows=ROWS) -> Path:
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
  return path


def test_prepare_round_trip(tmp_path, tokenizer):
  path = _write(tmp_path / "notes.jsonl")
  pc = prepare(path, FIELDS, tokenizer, cache_dir=tmp_path / "cache")
  docs, report = load_documents(path, FIELDS)
  assert len(pc) == len(docs) == 4
  assert pc.report == report and pc.report.counts == {"malformed_json": 1, "empty_text": 1}
  expected_ids = tokenize(tokenizer, [d.text for d in docs])
  for i, (doc, ids) in enumerate(zip(docs, expected_ids)):
    np.testing.assert_array_equal(pc.tokens(i), ids)  # no special tokens stored
    assert pc.lengths[i] == len(ids)
    assert pc.document(i) == doc.__class__(**{**doc.__dict__, "split": assign_split(doc)})
    assert pc.splits[i] == assign_split(doc)
  assert tokenizer.cls_token_id not in pc.tokens(0) and pc.tokens(0).dtype == np.int32
  assert pc.labels == ["cardio", "ortho", "pulm"] and pc.categories == ["consult", "op", "progress"]
  np.testing.assert_array_equal(pc.label_index, [0, 1, -1, 2])
  np.testing.assert_array_equal(pc.category_index, [0, 1, 0, 2])
  assert pc.special.cls == tokenizer.cls_token_id and pc.special.mask == tokenizer.mask_token_id
  batch = pc.tokens_many([3, 0])
  np.testing.assert_array_equal(batch[0], expected_ids[3])
  # Reopening from the folder alone (a new process) needs no tokenizer and no corpus.
  again = PreparedCorpus(pc.data_dir)
  np.testing.assert_array_equal(again.tokens(1), pc.tokens(1))
  assert again.key == pc.key and "dataset_info.json" in os.listdir(pc.data_dir)


def test_cache_is_reused_and_keyed_by_content_and_settings(tmp_path, tokenizer, monkeypatch):
  path = _write(tmp_path / "notes.jsonl")
  cache = tmp_path / "cache"
  first = prepare(path, FIELDS, tokenizer, cache_dir=cache)
  # A hit must not regenerate anything.
  monkeypatch.setattr(JaxembPrepared, "_generate_examples", lambda self: (_ for _ in ()).throw(AssertionError))
  assert prepare(path, FIELDS, tokenizer, cache_dir=cache).data_dir == first.data_dir
  monkeypatch.undo()
  other_settings = prepare(path, FIELDS, tokenizer, cache_dir=cache, clean=False)
  _write(path, ROWS + [{"text": "one more note"}])
  other_content = prepare(path, FIELDS, tokenizer, cache_dir=cache)
  assert len({first.key, other_settings.key, other_content.key}) == 3
  assert len(other_content) == 5
  assert "Name" in other_settings.document(1).text and "Name" not in first.document(1).text


def test_tokenizer_fingerprint_ignores_call_time_truncation_state(tokenizer):
  before = tokenizer_fingerprint(tokenizer)
  tokenizer(["some text"], truncation=True, max_length=8, padding="max_length")
  assert tokenizer_fingerprint(tokenizer) == before


def test_strict_prepare_fails_without_leaving_a_cache(tmp_path, tokenizer):
  path = _write(tmp_path / "notes.jsonl")
  with pytest.raises(BadRowError, match=r"notes.jsonl:3"):
    prepare(path, FIELDS, tokenizer, cache_dir=tmp_path / "cache", strict=True)
  assert not list((tmp_path / "cache").rglob("dataset_info.json"))


def test_prepare_reads_csv_with_custom_columns(tmp_path, tokenizer):
  path = tmp_path / "notes.csv"
  path.write_text('body,cat\n"Knee pain, effusion.",ortho\n"",ortho\nCough and wheeze.,pulm\n')
  pc = prepare(path, Fields(text="body", metadata="cat"), tokenizer, cache_dir=tmp_path / "cache")
  assert len(pc) == 2 and pc.categories == ["ortho", "pulm"] and pc.report.counts == {"empty_text": 1}
  assert pc.document(1).source == "notes.csv:4"
