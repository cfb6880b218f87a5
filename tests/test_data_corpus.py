"""Corpus readers: counted bad-row skips, strict mode, cleaning, streaming, group-aware splits."""

import gzip
import json
import tracemalloc
from pathlib import Path

import pytest

from jaxemb.data.corpus import (BadRowError, Document, Fields, SkipReport, clean_text, iter_documents,
                                load_documents)
from jaxemb.data.readers import FieldNotFoundError, TruncatedFileError
from jaxemb.data.splits import assign_split, plan_splits, split_documents

FIELDS = Fields(text="text", label="label", metadata="meta", group="group", id="id")

# One line per bad-row reason (plus two good rows); line numbers are 1-based.
BAD_JSONL_LINES = [
  b'{"text": "first good note", "label": "a", "meta": "x", "group": "g1", "id": "n1"}',  # 1 kept
  b'{"text": "unterminated"',                                                           # 2 malformed_json
  b'{"text": "caf\xff au lait", "label": "a", "meta": "x"}',                             # 3 invalid_utf8
  b'{"label": "a", "meta": "x"}',                                                       # 4 missing_text
  b'{"text": null, "label": "a", "meta": "x"}',                                         # 5 missing_text
  b'{"text": 42, "label": "a", "meta": "x"}',                                           # 6 text_not_string
  b'{"text": "  \\t \\n ", "label": "a", "meta": "x"}',                                 # 7 empty_text
  b'',                                                                                  # 8 blank_line
  b'{"text": "no label here", "meta": "x"}',                                            # 9 missing_label
  b'{"text": "no metadata here", "label": "b"}',                                        # 10 missing_metadata
  b'{"text": "list label", "label": ["a", "b"], "meta": "x"}',                          # 11 invalid_label
  b'[1, 2, 3]',                                                                         # 12 malformed_json
  b'{"text": "[** Name **] [**2101-1-1**]", "label": "a", "meta": "x"}',                # 13 empty_text (cleaned)
  b'{"text": "second good note", "label": 7, "meta": "y"}',                             # 14 kept, int label
  b'{"text": "lone surrogate \\udcff escape", "label": "a", "meta": "x"}',              # 15 invalid_utf8
]
EXPECTED_COUNTS = {"malformed_json": 2, "invalid_utf8": 2, "missing_text": 2, "text_not_string": 1, "empty_text": 2,
                   "blank_line": 1, "missing_label": 1, "missing_metadata": 1, "invalid_label": 1}
EXPECTED_EXAMPLES = {"malformed_json": [2, 12], "invalid_utf8": [3, 15], "missing_text": [4, 5], "text_not_string": [6],
                     "empty_text": [7, 13], "blank_line": [8], "missing_label": [9], "missing_metadata": [10],
                     "invalid_label": [11]}


def _write_bad_jsonl(path: Path) -> Path:
  data = b"\n".join(BAD_JSONL_LINES) + b"\n"
  if path.name.endswith(".gz"):
    with gzip.open(path, "wb") as f:
      f.write(data)
  else:
    path.write_bytes(data)
  return path


@pytest.mark.parametrize("name", ["bad.jsonl", "bad.jsonl.gz"])
def test_every_bad_row_reason_is_counted_with_file_line_examples(tmp_path, name):
  path = _write_bad_jsonl(tmp_path / name)
  docs, report = load_documents(path, FIELDS, require=("label", "metadata"))
  assert [d.text for d in docs] == ["first good note", "second good note"]
  assert report.counts == EXPECTED_COUNTS
  assert report.examples == {r: [f"{name}:{line}" for line in lines] for r, lines in EXPECTED_EXAMPLES.items()}
  assert (report.rows_seen, report.kept, report.skipped) == (15, 2, 13)
  # Nothing dropped silently: every row is either kept or counted.
  assert report.rows_seen == report.kept + sum(report.counts.values())
  assert docs[0].id == "n1" and docs[0].group == "g1" and docs[0].source == f"{name}:1"
  assert docs[1].id == f"{name}:14" and docs[1].label == "7"  # No id field -> basename:line; scalars -> str.
  assert "missing_label" in report.summary() and json.loads(json.dumps(report.to_dict()))["kept"] == 2
  assert SkipReport.from_dict(report.to_dict()) == report


def test_without_require_missing_label_and_metadata_are_kept_as_none(tmp_path):
  path = _write_bad_jsonl(tmp_path / "bad.jsonl")
  docs, report = load_documents(path, FIELDS)
  assert "missing_label" not in report.counts and "invalid_label" not in report.counts
  by_line = {d.source: d for d in docs}
  assert by_line["bad.jsonl:9"].label is None and by_line["bad.jsonl:10"].metadata is None
  assert by_line["bad.jsonl:11"].label is None  # A non-scalar optional field counts as absent.


@pytest.mark.parametrize("line, field, reason", [(2, None, "malformed_json"), (3, None, "invalid_utf8"),
                                                 (4, "text", "missing_text"), (9, "label", "missing_label")])
def test_strict_mode_raises_naming_file_line_and_field(tmp_path, line, field, reason):
  lines = [BAD_JSONL_LINES[0], BAD_JSONL_LINES[line - 1]]
  path = tmp_path / "strict.jsonl"
  path.write_bytes(b"\n".join(lines) + b"\n")
  with pytest.raises(BadRowError) as info:
    list(iter_documents(path, FIELDS, require=("label",), strict=True))
  err = info.value
  assert isinstance(err, ValueError)
  assert (err.path, err.line, err.field, err.reason) == (str(path), 2, field, reason)
  assert f"{path}:2" in str(err) and (field is None or repr(field) in str(err))


def test_require_needs_a_configured_field(tmp_path):
  path = _write_bad_jsonl(tmp_path / "bad.jsonl")
  with pytest.raises(ValueError, match="Fields.label"):
    list(iter_documents(path, Fields(), require=("label",)))


def test_csv_reader_counts_bad_records_with_their_start_line(tmp_path):
  path = tmp_path / "notes.csv"
  path.write_bytes(
    b'text,label\n'
    b'"a note\nspanning two lines",a\n'   # lines 2-3, kept
    b'too,many,fields\n'                  # line 4, malformed_csv
    b'caf\xff,a\n'                        # line 5, invalid_utf8
    b'"   ",b\n'                          # line 6, empty_text
    b'plain note,b\n')                    # line 7, kept
  docs, report = load_documents(path, Fields(label="label"))
  assert [d.text for d in docs] == ["a note\nspanning two lines", "plain note"]
  assert [d.source for d in docs] == ["notes.csv:2", "notes.csv:7"]
  assert report.counts == {"malformed_csv": 1, "invalid_utf8": 1, "empty_text": 1}
  assert report.examples["malformed_csv"] == ["notes.csv:4"]
  with pytest.raises(FieldNotFoundError, match="nope"):
    list(iter_documents(path, Fields(label="nope")))


def test_parquet_reader_streams_row_groups(tmp_path):
  pa = pytest.importorskip("pyarrow")
  pq = pytest.importorskip("pyarrow.parquet")
  table = pa.table({"body": ["one", None, "three", "  ", "five"], "cat": ["x", "y", None, "x", "y"]})
  path = tmp_path / "notes.parquet"
  pq.write_table(table, path, row_group_size=2)
  docs, report = load_documents(path, Fields(text="body", metadata="cat"), require=("metadata",))
  assert [(d.text, d.metadata, d.source) for d in docs] == [("one", "x", "notes.parquet:1"),
                                                            ("five", "y", "notes.parquet:5")]
  assert report.counts == {"missing_text": 1, "missing_metadata": 1, "empty_text": 1}


def test_reading_is_lazy_and_memory_flat(tmp_path):
  path = tmp_path / "big.jsonl.gz"
  with gzip.open(path, "wt") as f:
    for i in range(4_000):
      f.write(json.dumps({"text": f"note number {i} " + "word " * 40}) + "\n")
    f.write("{broken\n")
  # Strict mode only fails when the stream reaches the broken last line: nothing is read ahead.
  it = iter_documents(path, strict=True)
  assert next(it).text.startswith("note number 0")
  tracemalloc.start()
  n = sum(1 for _ in iter_documents(path))
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert n == 4_000
  # Holding the documents would take > 4000 * 200 bytes of text alone.
  assert peak < 400_000, f"peak {peak} bytes while streaming 4000 documents"


def test_clean_text_strips_mimic_placeholders_and_normalises_whitespace():
  raw = "Seen by [** Name **] on [**2101-1-1**].\r\n\n\n\nNext   line\t\tx \x00 y  "
  assert clean_text(raw) == "Seen by on .\n\nNext line x y"
  docs, _ = load_documents(_write_text(raw), clean=False)
  assert docs[0].text == raw


def _write_text(text: str) -> Path:
  import tempfile
  path = Path(tempfile.mkdtemp()) / "one.jsonl"
  path.write_text(json.dumps({"text": text}) + "\n")
  return path


def _docs(n_groups: int, per_group: int, with_split: bool = False) -> list[Document]:
  docs = []
  for g in range(n_groups):
    for k in range(per_group):
      split = ("test" if g % 5 == 0 else "train") if with_split else None
      # Distinct texts: identical ones would be joined into one split (the duplicate rule, tested below).
      docs.append(Document(text=f"note {g}-{k}", id=f"d{g}-{k}", group=f"p{g}", split=split))
  return docs


def test_hash_splits_are_group_aware_deterministic_and_seeded():
  docs = _docs(600, 3) + [Document(text=f"solo {i}", id=f"solo{i}") for i in range(300)]
  a = split_documents(docs, seed=0)
  assert a == split_documents(docs, seed=0)
  assert a != split_documents(docs, seed=1)
  groups = {s: {d.group for d in v if d.group} for s, v in a.items()}
  assert not (groups["train"] & groups["test"] or groups["train"] & groups["validation"]
              or groups["validation"] & groups["test"])
  n = len(docs)
  assert sum(len(v) for v in a.values()) == n
  assert abs(len(a["test"]) / n - 0.2) < 0.05 and abs(len(a["validation"]) / n - 0.1) < 0.04


def test_corpus_split_field_is_kept_and_validation_is_carved_from_train_by_group():
  docs = _docs(500, 2, with_split=True)
  out = split_documents(docs, seed=3, val_fraction=0.1)
  assert {d.id for d in out["test"]} == {d.id for d in docs if d.split == "test"}
  assert all(d.split == "train" for d in out["validation"])
  assert not {d.group for d in out["validation"]} & {d.group for d in out["train"]}
  assert 0.05 < len(out["validation"]) / (len(out["validation"]) + len(out["train"])) < 0.15
  assert assign_split(Document(text="t", id="x", split="validation")) == "validation"


# ------------------------------------------------------------------ issue 14: one split plan, bad inputs

def test_exact_duplicates_after_whitespace_and_case_land_in_one_split():
  # 200 pairs of distinct ids whose texts differ only by case and spacing: by id hash alone about
  # 1 - (0.7^2 + 0.1^2 + 0.2^2) = 46% of pairs would cross splits.
  docs = []
  for i in range(200):
    docs.append(Document(text=f"Chest pain, case {i}.", id=f"a{i}"))
    docs.append(Document(text=f"  chest   PAIN, case {i}. ", id=f"b{i}"))
  plan = plan_splits(docs, seed=0)
  for i in range(200):
    assert plan.splits[2 * i] == plan.splits[2 * i + 1]
  assert plan.duplicates["documents"] == 200 and plan.duplicates["texts"] == 200
  assert 60 < plan.duplicates["crossing_texts"] < 120 and plan.duplicates["moved"] >= plan.duplicates["crossing_texts"]
  # A duplicate of a corpus test document goes to test with it (pre-training excludes test).
  docs = [Document(text="same text", id="x", split="train"), Document(text="Same  text", id="y", split="test"),
          Document(text="other", id="z", split="train")]
  assert plan_splits(docs, seed=0).splits[:2] == ["test", "test"]


def test_documents_without_duplicates_keep_their_split():
  docs = _docs(300, 2) + [Document(text="dup", id="u1"), Document(text="DUP", id="u2")]
  plan = plan_splits(docs, seed=0)
  assert plan.splits[:600] == [assign_split(d, seed=0) for d in docs[:600]]


def test_the_corpus_validation_split_is_used_as_is():
  # A corpus with its own train/validation/test (e.g. medical abstracts 2020/280/588): nothing is carved.
  docs = ([Document(text=f"t{i}", id=f"t{i}", split="train") for i in range(200)]
          + [Document(text=f"v{i}", id=f"v{i}", split="validation") for i in range(30)]
          + [Document(text=f"s{i}", id=f"s{i}", split="test") for i in range(50)])
  out = split_documents(docs, seed=0)
  assert (len(out["train"]), len(out["validation"]), len(out["test"])) == (200, 30, 50)
  assert not plan_splits(docs).carved_validation
  # Without validation rows, validation is carved out of train (10% of the groups, about 20 of 200).
  out = split_documents(docs[:200] + docs[230:], seed=0)
  assert 5 < len(out["validation"]) < 40 and len(out["test"]) == 50
  assert assign_split(docs[0], carve_validation=False) == "train"


def test_excel_utf8_bom_csv_is_read(tmp_path):
  path = tmp_path / "excel.csv"
  path.write_bytes(b"\xef\xbb\xbfNote Text,Specialty\r\nChest pain,cardio\r\nKnee pain,ortho\r\n")
  docs, report = load_documents(path, Fields(text="Note Text", label="Specialty"), require=("label",))
  assert [(d.text, d.label) for d in docs] == [("Chest pain", "cardio"), ("Knee pain", "ortho")]
  jsonl = tmp_path / "bom.jsonl"
  jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "a"}).encode() + b"\n")
  assert [d.text for d in load_documents(jsonl)[0]] == ["a"]


def test_null_and_list_labels_are_counted_by_reason(tmp_path):
  rows = [{"text": f"note {i}", "label": "x"} for i in range(297)]
  rows += [{"text": "n1", "label": None}, {"text": "n2", "label": ["a", "b"]}, {"text": "n3"}]
  path = tmp_path / "labels.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  docs, report = load_documents(path, Fields(label="label"))
  assert len(docs) == 300 and sum(d.label is not None for d in docs) == 297
  assert report.unset == {"label": {"missing": 2, "not_scalar": 1}}
  assert "kept without label: missing 2, not_scalar 1" in report.summary()


@pytest.mark.parametrize("field", ["split", "group", "id"])
def test_non_scalar_split_group_id_is_a_counted_skip_or_a_strict_error(tmp_path, field):
  path = tmp_path / "rows.jsonl"
  path.write_text(json.dumps({"text": "a", field: "x"}) + "\n" + json.dumps({"text": "b", field: ["test"]}) + "\n")
  fields = Fields(**{field: field})
  docs, report = load_documents(path, fields)
  assert [d.text for d in docs] == ["a"]
  assert report.counts == {f"invalid_{field}": 1} and report.examples == {f"invalid_{field}": ["rows.jsonl:2"]}
  with pytest.raises(BadRowError, match=rf"rows.jsonl:2: field '{field}': {field} field is not a scalar"):
    load_documents(path, fields, strict=True)


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".csv.gz"])
def test_truncated_gzip_names_the_file_and_the_rows_read(tmp_path, suffix):
  import gzip
  path = tmp_path / f"cut{suffix}"
  if suffix == ".csv.gz":
    payload = "text\n" + "".join(f"note number {i} " * 20 + "\n" for i in range(2000))
  else:
    payload = "".join(json.dumps({"text": f"note number {i} " * 20}) + "\n" for i in range(2000))
  full = gzip.compress(payload.encode())
  path.write_bytes(full[:len(full) // 2])
  with pytest.raises(TruncatedFileError) as e:
    load_documents(path)
  msg = str(e.value)
  assert str(path) in msg and "truncated" in msg and f"{e.value.rows_read} rows read" in msg
  assert 0 < e.value.rows_read < 2000
