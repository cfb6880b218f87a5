"""Corpus file formats: JSONL (.jsonl / .jsonl.gz / .ndjson), CSV (.csv / .csv.gz) and Parquet, read as a stream
of (line number, record) pairs. A row the format itself rejects (bad JSON, bad encoding) comes as a `RejectedRow`
with its reason, for `corpus.iter_documents` to count or raise; a configured field missing from a CSV header or
Parquet schema is a `FieldNotFoundError`.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from jaxemb.cli import UserError

if TYPE_CHECKING:
  from jaxemb.data.corpus import Fields


class FieldNotFoundError(UserError, ValueError):
  """A configured field is not a column of the file (CSV header / Parquet schema)."""


class TruncatedFileError(UserError, ValueError):
  """A compressed corpus file that ends early or is corrupt: names the file, the last complete line and how
  many rows were read (gzip alone says only "Compressed file ended before the end-of-stream marker")."""

  def __init__(self, path: Path, last_line: int, rows_read: int, cause: BaseException):
    self.path, self.last_line, self.rows_read = path, last_line, rows_read
    super().__init__(f"{path}: the file is truncated or corrupt after line {last_line} ({rows_read} rows read; "
                     f"{type(cause).__name__}: {cause}); re-download or re-create it")


# The exceptions a cut-off or damaged .gz raises while it is read (BadGzipFile is an OSError subclass).
_TRUNCATION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


class RejectedRow:
  """A row the format reader already rejected (parse error, bad encoding)."""
  __slots__ = ("reason", "detail")

  def __init__(self, reason: str, detail: str = ""):
    self.reason, self.detail = reason, detail


def corpus_format(path: str | Path) -> str:
  name = Path(path).name.lower()
  if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
    return "jsonl"
  if name.endswith((".csv", ".csv.gz")):
    return "csv"
  if name.endswith(".parquet"):
    return "parquet"
  raise ValueError(f"{path}: unknown corpus format (expected .jsonl, .jsonl.gz, .csv, .csv.gz or .parquet)")


def _open_binary(path: Path):
  return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict | RejectedRow]]:
  with _open_binary(path) as f:
    line_no = 0
    while True:
      try:
        raw = f.readline()
      except _TRUNCATION_ERRORS as e:
        raise TruncatedFileError(path, line_no, line_no, e) from None
      if not raw:
        return
      line_no += 1
      if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # A UTF-8 byte-order mark (Windows tools write one) is not part of the first record.
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        yield line_no, RejectedRow("invalid_utf8", str(e))
        continue
      if not line.strip():
        yield line_no, RejectedRow("blank_line")
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        yield line_no, RejectedRow("malformed_json", str(e))
        continue
      if not isinstance(record, dict):
        yield line_no, RejectedRow("malformed_json", f"a JSON {type(record).__name__}, not an object")
        continue
      yield line_no, record


def is_valid_unicode(s: str) -> bool:
  # Lone surrogates (from surrogateescape'd bad bytes or "\udcxx" JSON escapes) cannot reach the tokenizer.
  try:
    s.encode("utf-8")
  except UnicodeEncodeError:
    return False
  return True


def _iter_csv(path: Path, needed: Sequence[str]) -> Iterator[tuple[int, dict | RejectedRow]]:
  # utf-8-sig: Excel's "CSV UTF-8" export starts with a byte-order mark, which would otherwise become part of
  # the first column's name ("\ufeffNote Text"). surrogateescape: a bad byte poisons only its own record
  # (detected per field), not the whole file. Clinical notes can exceed csv's default 128 KiB field limit.
  csv.field_size_limit(max(csv.field_size_limit(), 1 << 27))
  with _open_binary(path) as fb:
    f = io.TextIOWrapper(fb, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(f, strict=True)
    rows_read = 0
    try:
      header = next(reader)
    except StopIteration:
      return
    except _TRUNCATION_ERRORS as e:
      raise TruncatedFileError(path, 0, 0, e) from None
    missing = [c for c in needed if c not in header]
    if missing:
      raise FieldNotFoundError(f"{path}: no column {missing[0]!r} (columns: {', '.join(header)})")
    prev_end = reader.line_num
    while True:
      start = prev_end + 1
      try:
        row = next(reader)
      except StopIteration:
        return
      except csv.Error as e:
        prev_end = reader.line_num
        yield start, RejectedRow("malformed_csv", str(e))
        continue
      except _TRUNCATION_ERRORS as e:
        raise TruncatedFileError(path, prev_end, rows_read, e) from None
      prev_end = reader.line_num
      rows_read += 1
      if not row:
        yield start, RejectedRow("blank_line")
        continue
      if len(row) != len(header):
        yield start, RejectedRow("malformed_csv", f"{len(row)} fields, header has {len(header)}")
        continue
      if not all(is_valid_unicode(v) for v in row):
        yield start, RejectedRow("invalid_utf8")
        continue
      yield start, dict(zip(header, row))


def _iter_parquet(path: Path, needed: Sequence[str], batch_rows: int = 1024) -> Iterator[tuple[int, dict | RejectedRow]]:
  import pyarrow.parquet as pq  # Lazy: only Parquet users pay for pyarrow's import.
  pf = pq.ParquetFile(path)
  names = pf.schema_arrow.names
  missing = [c for c in needed if c not in names]
  if missing:
    raise FieldNotFoundError(f"{path}: no column {missing[0]!r} (columns: {', '.join(names)})")
  row_no = 0
  # Read only the configured columns, one record batch at a time: memory is bounded by batch_rows.
  for batch in pf.iter_batches(batch_size=batch_rows, columns=list(dict.fromkeys(needed)) or None):
    for record in batch.to_pylist():
      row_no += 1
      yield row_no, record


def iter_raw_records(path: str | Path, fields: Fields | None = None) -> Iterator[tuple[int, dict | RejectedRow]]:
  """(line, record) pairs straight from the file; rejected rows come as `RejectedRow`.

  CSV / Parquet: the columns named in `fields` must exist (FieldNotFoundError otherwise) and are the only ones
  read; with fields=None every column is read.
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file")
  fmt = corpus_format(path)
  if fmt == "jsonl":
    return _iter_jsonl(path)
  needed = [f for f in dataclasses.astuple(fields) if f is not None] if fields is not None else []
  if fmt == "csv":
    return _iter_csv(path, needed)
  return _iter_parquet(path, needed)


def peek_fields(path: str | Path, n_rows: int = 50) -> set[str]:
  """Field names present in the first `n_rows` parseable records (to report an unknown field early)."""
  seen: set[str] = set()
  n = 0
  for _, record in iter_raw_records(path):
    if isinstance(record, dict):
      seen.update(record)
      n += 1
      if n >= n_rows:
        break
  return seen
