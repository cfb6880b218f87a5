"""A BEIR folder from one JSONL(.gz) corpus with a query field and a document field.

  python scripts/make_beir.py CORPUS.jsonl.gz OUT_DIR --query-field text --doc-field device_name \
    [--split-field split --test-splits test --dev-splits train --id-field id]

What it writes (the layout jaxemb/eval/retrieval_data.py `load_beir` reads):
- corpus.jsonl: one document per distinct document text (same text after whitespace / case normalisation,
  jaxemb.data.splits.text_key: the splitter's rule for exact duplicates); its `_id` is "d" + the id of the
  first row that has it (the row's --id-field value, or its 1-based line number when no id field is named),
  its `text` that row's document text (stripped), `title` "".
- queries.jsonl: one query per distinct query text (same normalisation), `_id` "q" + the first row's id.
- qrels/test.tsv, qrels/dev.tsv (header query-id, corpus-id, score): a query is relevant (grade 1) to the
  document of EVERY row that has the same query text, whatever that row's split. A query is a test query when
  any of its rows has a split in --test-splits, else a dev query when any has one in --dev-splits, else it is
  not written (its rows' documents stay in the pool as distractors). Test and dev queries are therefore
  disjoint texts; the evaluator chooses hybrid weights on dev and reports test.
- make_beir.json: the source file and its sha256, the arguments and the counts (rows read, rows skipped for an
  empty query or document, documents, queries per split).

Rows are read by jaxemb's corpus reader (JSONL, CSV or Parquet, gzip or not). Rows whose query or document field
is missing or blank are skipped and counted; a row the reader rejects (not a JSON object, bad UTF-8), or whose
field is present but not a string, stops the script with file:line and field named.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxemb.data.readers import RejectedRow, iter_raw_records  # noqa: E402
from jaxemb.data.spec import file_sha256  # noqa: E402
from jaxemb.data.splits import text_key  # noqa: E402  (the exact-duplicate rule the rest of jaxemb uses)


class BeirInputError(ValueError):
  pass


def _field(row: dict, name: str, where: str) -> str | None:
  """The stripped string value of `name`, None when missing or blank; an error when it is not a string."""
  value = row.get(name)
  if value is None:
    return None
  if not isinstance(value, str):
    raise BeirInputError(f"{where}: field {name!r} is {type(value).__name__}, expected a string")
  return value.strip() or None


def build(corpus: str | Path, out: str | Path, *, query_field: str, doc_field: str, split_field: str = "split",
          test_splits: tuple[str, ...] = ("test",), dev_splits: tuple[str, ...] = ("train",),
          id_field: str = "") -> dict[str, Any]:
  """Write the BEIR folder `out` from `corpus` (see the module docstring); returns the make_beir.json record."""
  corpus, out = Path(corpus), Path(out)
  if set(test_splits) & set(dev_splits):
    raise BeirInputError(f"--test-splits and --dev-splits share {sorted(set(test_splits) & set(dev_splits))}")
  doc_of_key: dict[int, str] = {}          # document text key -> document id
  docs: list[dict[str, str]] = []
  queries: dict[int, dict[str, Any]] = {}  # query text key -> {_id, text, splits, docs}
  seen_ids: set[str] = set()
  counts = {"rows": 0, "skipped_empty_query": 0, "skipped_empty_document": 0}
  for line_no, row in iter_raw_records(corpus):
    where = f"{corpus}:{line_no}"
    if isinstance(row, RejectedRow):
      if row.reason == "blank_line":
        continue
      raise BeirInputError(f"{where}: {row.reason} ({row.detail})")
    counts["rows"] += 1
    q_text, d_text = _field(row, query_field, where), _field(row, doc_field, where)
    if q_text is None:
      counts["skipped_empty_query"] += 1
      continue
    if d_text is None:
      counts["skipped_empty_document"] += 1
      continue
    if id_field:
      rid = row.get(id_field)
      if not isinstance(rid, (str, int)) or isinstance(rid, bool) or str(rid).strip() == "":
        raise BeirInputError(f"{where}: field {id_field!r} (--id-field) missing or not a string / integer")
      rid = str(rid).strip()
      if rid in seen_ids:
        raise BeirInputError(f"{where}: field {id_field!r} value {rid!r} appears twice (ids must be unique)")
      seen_ids.add(rid)
    else:
      rid = str(line_no)
    split = row.get(split_field) if split_field else None
    dk = text_key(d_text)
    if dk not in doc_of_key:
      doc_of_key[dk] = f"d{rid}"
      docs.append({"_id": f"d{rid}", "title": "", "text": d_text})
    qk = text_key(q_text)
    q = queries.setdefault(qk, {"_id": f"q{rid}", "text": q_text, "splits": set(), "docs": []})
    q["splits"].add(split if isinstance(split, str) else None)
    if doc_of_key[dk] not in q["docs"]:
      q["docs"].append(doc_of_key[dk])

  qrels: dict[str, list[tuple[str, str]]] = {"test": [], "dev": []}
  written = []
  for q in queries.values():
    which = "test" if q["splits"] & set(test_splits) else "dev" if q["splits"] & set(dev_splits) else None
    if which is None:
      continue
    written.append({"_id": q["_id"], "text": q["text"]})
    qrels[which].extend((q["_id"], d) for d in q["docs"])

  for role, name, key in (("--query-field", query_field, "skipped_empty_query"),
                          ("--doc-field", doc_field, "skipped_empty_document")):
    if counts["rows"] and counts[key] == counts["rows"]:
      raise BeirInputError(f"{corpus}: field {name!r} ({role}) is missing or blank in every row")
  if not qrels["test"]:
    raise BeirInputError(f"{corpus}: no row with a query and a document has {split_field!r} in {list(test_splits)}: "
                         "no test queries")
  (out / "qrels").mkdir(parents=True, exist_ok=True)
  with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
  with open(out / "queries.jsonl", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in written)
  for name, pairs in qrels.items():
    with open(out / "qrels" / f"{name}.tsv", "w", encoding="utf-8") as f:
      f.write("query-id\tcorpus-id\tscore\n")
      f.writelines(f"{q}\t{d}\t1\n" for q, d in pairs)
  record = {
      "source": str(corpus), "sha256": file_sha256(corpus),
      "query_field": query_field, "doc_field": doc_field, "split_field": split_field,
      "test_splits": list(test_splits), "dev_splits": list(dev_splits), "id_field": id_field,
      "counts": {**counts, "documents": len(docs),
                 "queries": {k: len({q for q, _ in v}) for k, v in qrels.items()},
                 "judgements": {k: len(v) for k, v in qrels.items()},
                 "queries_in_no_split": len(queries) - len(written)},
  }
  (out / "make_beir.json").write_text(json.dumps(record, indent=2) + "\n")
  return record


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("corpus", help="JSONL or JSONL.gz, one row per line")
  p.add_argument("out", help="the BEIR folder to write (created)")
  p.add_argument("--query-field", required=True)
  p.add_argument("--doc-field", required=True)
  p.add_argument("--split-field", default="split", help="the field holding each row's split")
  p.add_argument("--test-splits", default="test", help="comma-separated split values whose queries are test")
  p.add_argument("--dev-splits", default="train", help="comma-separated split values whose queries are dev")
  p.add_argument("--id-field", default="", help="a unique row id for the _ids; default: the line number")
  a = p.parse_args(argv)
  split_list = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())
  try:
    rec = build(a.corpus, a.out, query_field=a.query_field, doc_field=a.doc_field, split_field=a.split_field,
                test_splits=split_list(a.test_splits), dev_splits=split_list(a.dev_splits), id_field=a.id_field)
  except BeirInputError as e:
    print(f"make_beir: {e}", file=sys.stderr)
    return 2
  print(json.dumps(rec["counts"]))
  return 0


if __name__ == "__main__":
  sys.exit(main())
