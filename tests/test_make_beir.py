"""scripts/make_beir.py: one corpus with a query field and a document field -> a BEIR folder that
jaxemb/eval/retrieval_data.py reads. The expected files below are worked out by hand from the six-line corpus."""

import importlib.util
import json

import pytest

from conftest import REPO

_spec = importlib.util.spec_from_file_location("make_beir", REPO / "scripts" / "make_beir.py")
make_beir = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_beir)

ROWS = [
    {"id": "a", "q": "Battery fails", "d": "Pump X", "split": "train"},
    {"id": "b", "q": "battery   FAILS ", "d": "Pump Y", "split": "test"},   # the same query as a (normalised)
    {"id": "c", "q": "Label wrong", "d": "pump  x", "split": "train"},     # the same document as a
    {"id": "d", "q": "Cracked housing", "d": " ", "split": "train"},       # blank document: skipped, counted
    {"id": "e", "q": "Sterility", "d": "Catheter Z", "split": "other"},    # in neither split: a distractor
]


def _write(path, rows, extra_lines=()):
  lines = [json.dumps(r) for r in rows] + list(extra_lines)
  path.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")   # a blank line is skipped
  return path


def _read(path):
  return [json.loads(x) for x in path.read_text().splitlines()]


def test_writes_the_hand_worked_folder(tmp_path):
  src = _write(tmp_path / "c.jsonl", ROWS)
  out = tmp_path / "beir"
  rec = make_beir.build(src, out, query_field="q", doc_field="d", id_field="id")
  # Documents: one per distinct normalised text, id from the first row that has it; "pump  x" is "Pump X".
  assert _read(out / "corpus.jsonl") == [{"_id": "da", "title": "", "text": "Pump X"},
                                         {"_id": "db", "title": "", "text": "Pump Y"},
                                         {"_id": "de", "title": "", "text": "Catheter Z"}]
  # Queries: a's text stands for a and b; e (split "other") is not a query; d was skipped.
  assert _read(out / "queries.jsonl") == [{"_id": "qa", "text": "Battery fails"},
                                          {"_id": "qc", "text": "Label wrong"}]
  # qa has a test row (b), so it is a test query, relevant to both its rows' documents (a's is train).
  assert (out / "qrels/test.tsv").read_text() == "query-id\tcorpus-id\tscore\nqa\tda\t1\nqa\tdb\t1\n"
  assert (out / "qrels/dev.tsv").read_text() == "query-id\tcorpus-id\tscore\nqc\tda\t1\n"
  assert rec["counts"] == {"rows": 5, "skipped_empty_query": 0, "skipped_empty_document": 1, "documents": 3,
                           "queries": {"test": 1, "dev": 1}, "judgements": {"test": 2, "dev": 1},
                           "queries_in_no_split": 1}
  assert json.loads((out / "make_beir.json").read_text())["counts"] == rec["counts"]


def test_the_evaluator_reads_it(tmp_path):
  from jaxemb.eval.retrieval_data import load_beir
  out = tmp_path / "beir"
  make_beir.build(_write(tmp_path / "c.jsonl", ROWS), out, query_field="q", doc_field="d", id_field="id")
  rs = load_beir(out)
  assert rs.doc_ids == ["da", "db", "de"]
  assert dict(zip(rs.query_ids, rs.query_split)) == {"qc": "validation", "qa": "test"}
  assert rs.qrels == {"qa": {"da": 1, "db": 1}, "qc": {"da": 1}}


def test_line_numbers_are_the_ids_without_an_id_field(tmp_path):
  out = tmp_path / "beir"
  make_beir.build(_write(tmp_path / "c.jsonl", ROWS), out, query_field="q", doc_field="d")
  # Lines 1, 2, 3, (4 blank), 5, 6: row e is on line 6.
  assert [d["_id"] for d in _read(out / "corpus.jsonl")] == ["d1", "d2", "d6"]


@pytest.mark.parametrize("bad_line, message", [
    ('{"id": "f", "q": "x", "d": 5, "split": "test"}', "c.jsonl:7: field 'd' is int, expected a string"),
    ('{"id": "f", "q": "x", "d": "y"', "c.jsonl:7: malformed_json (Expecting"),
    ('["f", "x"]', "c.jsonl:7: malformed_json (a JSON list, not an object)"),
    ('{"id": "a", "q": "x", "d": "y", "split": "test"}', "c.jsonl:7: field 'id' value 'a' appears twice"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, bad_line, message):
  src = _write(tmp_path / "c.jsonl", ROWS, [bad_line])
  with pytest.raises(make_beir.BeirInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
    make_beir.build(src, tmp_path / "beir", query_field="q", doc_field="d", id_field="id")


def test_no_test_rows_is_an_error(tmp_path):
  src = _write(tmp_path / "c.jsonl", [dict(r, split="train") for r in ROWS])
  with pytest.raises(make_beir.BeirInputError, match="no test queries"):
    make_beir.build(src, tmp_path / "beir", query_field="q", doc_field="d", id_field="id")


def test_cli_writes_gzip_input(tmp_path, capsys):
  import gzip
  src = tmp_path / "c.jsonl.gz"
  with gzip.open(src, "wt") as f:
    f.writelines(json.dumps(r) + "\n" for r in ROWS)
  assert make_beir.main([str(src), str(tmp_path / "beir"), "--query-field", "q", "--doc-field", "d",
                         "--id-field", "id"]) == 0
  assert (tmp_path / "beir/qrels/test.tsv").read_text().splitlines()[1:] == ["qa\tda\t1", "qa\tdb\t1"]
  assert make_beir.main([str(src), str(tmp_path / "b2"), "--query-field", "nope", "--doc-field", "d"]) == 2
  assert "field 'nope' (--query-field) is missing or blank in every row" in capsys.readouterr().err
