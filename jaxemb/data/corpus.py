"""Documents from a corpus file: fields, cleaning and counted skips; the file formats are `readers.py`, splitting
is `splits.py`.

Every reader streams: memory stays flat however large the corpus is. A row that cannot become a document
is skipped and counted by reason in a `SkipReport` (with the first few `file:line` examples), or, with
`strict=True`, raises `BadRowError`. Nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxemb.cli import UserError
from jaxemb.data.readers import RejectedRow, is_valid_unicode, iter_raw_records

if TYPE_CHECKING:  # splits.py reads Document from here; the reader only calls planner.add
  from jaxemb.data.splits import SplitPlanner

# How many `file:line` examples a report keeps per reason: enough to find the problem, bounded memory.
MAX_EXAMPLES = 5

SPLITS = ("train", "validation", "test")
# Spellings of the validation split seen in the wild, all mapped to "validation".
_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "eval": "validation"}

# Why a row was skipped. The set is closed so reports from different corpora line up.
REASONS = {
  "blank_line": "blank line",
  "malformed_json": "line is not a JSON object",
  "malformed_csv": "CSV record could not be parsed or has the wrong number of fields",
  "invalid_utf8": "invalid UTF-8",
  "missing_text": "text field missing or null",
  "text_not_string": "text field is not a string",
  "empty_text": "text empty or whitespace-only (after cleaning)",
  "missing_label": "required label field missing or empty",
  "invalid_label": "label field is not a scalar",
  "missing_metadata": "required metadata field missing or empty",
  "invalid_metadata": "metadata field is not a scalar",
  # A row meant for test must not be hashed into train because its split / group / id is a list or object.
  "invalid_split": "split field is not a scalar",
  "invalid_group": "group field is not a scalar",
  "invalid_id": "id field is not a scalar",
  "no_tokens": "the tokenizer produced no tokens for the cleaned text",
}


@dataclasses.dataclass(frozen=True)
class Fields:
  """Which record fields hold what. `None` means the corpus has no such field."""
  text: str = "text"
  label: str | None = None
  metadata: str | None = None
  group: str | None = None
  split: str | None = None
  id: str | None = None


@dataclasses.dataclass(frozen=True)
class Document:
  text: str
  id: str
  label: str | None = None
  metadata: str | None = None
  group: str | None = None
  split: str | None = None
  source: str = ""  # "file:line" (line = 1-based line of a JSONL/CSV file, 1-based row of a Parquet file)


@dataclasses.dataclass
class SkipReport:
  """Counts of skipped rows by reason, with the first `MAX_EXAMPLES` `file:line` examples of each."""
  counts: dict[str, int] = dataclasses.field(default_factory=dict)
  examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
  rows_seen: int = 0
  kept: int = 0
  # Kept documents whose OPTIONAL label / metadata is unset, by reason ("missing": absent, null or empty;
  # "not_scalar": a list or object): {"label": {"missing": 2, "not_scalar": 1}}. Not skips: the document
  # is kept (pre-training does not need its label), but "300 rows in, 298 labels out" must say why.
  unset: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

  @property
  def skipped(self) -> int:
    return sum(self.counts.values())

  def add(self, reason: str, source: str) -> None:
    self.counts[reason] = self.counts.get(reason, 0) + 1
    examples = self.examples.setdefault(reason, [])
    if len(examples) < MAX_EXAMPLES:
      examples.append(source)

  def add_unset(self, field: str, reason: str) -> None:
    by_reason = self.unset.setdefault(field, {})
    by_reason[reason] = by_reason.get(reason, 0) + 1

  def summary(self) -> str:
    lines = [f"rows seen {self.rows_seen}, kept {self.kept}, skipped {self.skipped}"]
    for reason, n in sorted(self.counts.items(), key=lambda kv: -kv[1]):
      lines.append(f"  {reason} ({REASONS.get(reason, reason)}): {n}, e.g. {', '.join(self.examples.get(reason, []))}")
    for field, by_reason in sorted(self.unset.items()):
      lines.append(f"  kept without {field}: " + ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())))
    return "\n".join(lines)

  def to_dict(self) -> dict:
    return {"rows_seen": self.rows_seen, "kept": self.kept, "skipped": self.skipped,
            "counts": dict(self.counts), "examples": {k: list(v) for k, v in self.examples.items()},
            "unset": {k: dict(v) for k, v in self.unset.items()}}

  @classmethod
  def from_dict(cls, d: dict) -> SkipReport:
    return cls(counts=dict(d["counts"]), examples={k: list(v) for k, v in d["examples"].items()},
               rows_seen=int(d["rows_seen"]), kept=int(d["kept"]),
               unset={k: dict(v) for k, v in d.get("unset", {}).items()})


class BadRowError(UserError, ValueError):
  """A bad row under `strict=True`; names the file, line and field."""

  def __init__(self, path: str, line: int, field: str | None, reason: str, detail: str = ""):
    self.path, self.line, self.field, self.reason = path, line, field, reason
    where = f"field {field!r}: " if field else ""
    extra = f" ({detail})" if detail else ""
    super().__init__(f"{path}:{line}: {where}{REASONS.get(reason, reason)} [{reason}]{extra}")




# ----------------------------------------------------------------------------------------------- cleaning

# MIMIC de-identification placeholders: [**Name**], [** Last Name (NamePattern1) **], [**2101-1-1**].
_DEID_RE = re.compile(r"\[\*\*.*?\*\*\]", re.DOTALL)
_HSPACE_RE = re.compile(r"[ \t\f\v\u00a0]+")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_MANY_NEWLINES_RE = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
  """Strips MIMIC placeholders and normalises whitespace.

  Newlines are kept (collapsed to at most one blank line): BPE tokenizers such as RoBERTa's encode them, and
  they carry a note's section structure.
  """
  text = _DEID_RE.sub(" ", text)
  text = text.replace("\r\n", "\n").replace("\r", "\n")
  text = _CONTROL_RE.sub(" ", text)
  text = _HSPACE_RE.sub(" ", text)
  text = "\n".join(line.strip() for line in text.split("\n"))
  text = _MANY_NEWLINES_RE.sub("\n\n", text)
  return text.strip()


def _scalar(value: Any) -> str | None | RejectedRow:
  """A field value as a string; None when absent/empty; RejectedRow when it is a list/object."""
  if value is None:
    return None
  if isinstance(value, bytes):
    try:
      value = value.decode("utf-8")
    except UnicodeDecodeError:
      return RejectedRow("invalid_utf8")
  if isinstance(value, (list, dict, tuple)):
    return RejectedRow("invalid", f"got a {type(value).__name__}")
  s = str(value).strip()
  if not is_valid_unicode(s):
    return RejectedRow("invalid_utf8")
  return s or None


def iter_documents(path: str | Path, fields: Fields = Fields(), *, require: Iterable[str] = (), strict: bool = False,
                   clean: bool = True, report: SkipReport | None = None,
                   planner: SplitPlanner | None = None) -> Iterator[Document]:
  """Streams the corpus as `Document`s.

  Args:
    path: .jsonl / .jsonl.gz / .csv / .csv.gz / .parquet file.
    fields: which record fields hold text, label, metadata, group, split and id.
    require: subset of {"label", "metadata"}: rows without them are skipped (counted).
    strict: raise `BadRowError` on the first bad row instead of skipping it.
    clean: strip MIMIC placeholders and normalise whitespace.
    report: filled in as the iterator advances (counts are final once it is exhausted).
    planner: every row with a usable text, split, group and id is added to it BEFORE the label / metadata
      checks, so the split plan depends only on the text, split, group and id fields, the same whether the
      reader requires a label (evaluation) or a category (the metadata objective). A yielded document is
      always the planner's last added one.

  A non-scalar split / group / id (a list or object) skips the row (`invalid_split` ...): treating it as
  absent would hash a row meant for test into train. A non-scalar or missing optional label / metadata
  keeps the document, unlabelled, and is counted in `report.unset`.
  """
  path = Path(path)
  require = tuple(require)
  unknown = set(require) - {"label", "metadata"}
  if unknown:
    raise ValueError(f"require must be a subset of ('label', 'metadata'), got {sorted(unknown)}")
  for r in require:
    if getattr(fields, r) is None:
      raise ValueError(f"require={require!r} but Fields.{r} is None: name the field that holds it")
  report = report if report is not None else SkipReport()
  name = path.name

  def bad(line_no: int, reason: str, field: str | None, detail: str = "") -> None:
    if strict:
      raise BadRowError(str(path), line_no, field, reason, detail)
    report.add(reason, f"{name}:{line_no}")

  def read(record: dict, attrs: Sequence[str], line_no: int) -> dict[str, str | None] | None:
    """Scalar values of `attrs` (None when not configured or empty); None when the row was skipped."""
    values: dict[str, str | None] = {}
    unset: list[tuple[str, str]] = []  # counted only when the row is kept
    for attr in attrs:
      key = getattr(fields, attr)
      if key is None:
        values[attr] = None
        continue
      value = _scalar(record.get(key))
      if isinstance(value, RejectedRow):
        if value.reason == "invalid_utf8":
          bad(line_no, "invalid_utf8", key)
          return None
        if attr in ("split", "group", "id") or attr in require:
          bad(line_no, f"invalid_{attr}", key, value.detail)
          return None
        unset.append((attr, "not_scalar"))
        value = None
      elif value is None:
        if attr in require:
          bad(line_no, f"missing_{attr}", key)
          return None
        if attr in ("label", "metadata"):
          unset.append((attr, "missing"))
      values[attr] = value
    for attr, reason in unset:
      report.add_unset(attr, reason)
    return values

  for line_no, record in iter_raw_records(path, fields):
    report.rows_seen += 1
    if isinstance(record, RejectedRow):
      bad(line_no, record.reason, None, record.detail)
      continue
    text = record.get(fields.text)
    if isinstance(text, bytes):
      try:
        text = text.decode("utf-8")
      except UnicodeDecodeError:
        bad(line_no, "invalid_utf8", fields.text)
        continue
    if text is None:
      bad(line_no, "missing_text", fields.text)
      continue
    if not isinstance(text, str):
      bad(line_no, "text_not_string", fields.text, f"got {type(text).__name__}")
      continue
    if not is_valid_unicode(text):
      bad(line_no, "invalid_utf8", fields.text)
      continue
    if clean:
      text = clean_text(text)
    if not text.strip():
      bad(line_no, "empty_text", fields.text)
      continue
    keys = read(record, ("split", "group", "id"), line_no)
    if keys is None:
      continue
    split = keys["split"]
    if split is not None:
      split = split.lower()
      split = _SPLIT_ALIASES.get(split, split)
    doc_id = keys["id"] or f"{name}:{line_no}"
    if planner is not None:
      planner.add(text=text, id=doc_id, group=keys["group"], split=split)
    values = read(record, ("label", "metadata"), line_no)
    if values is None:
      continue
    report.kept += 1
    yield Document(text=text, id=doc_id, label=values["label"], metadata=values["metadata"], group=keys["group"],
                   split=split, source=f"{name}:{line_no}")


def load_documents(path: str | Path, fields: Fields = Fields(), *, require: Iterable[str] = (), strict: bool = False,
                   clean: bool = True, planner: SplitPlanner | None = None) -> tuple[list[Document], SkipReport]:
  """All documents in memory (small corpora, evaluation sets) plus the skip report."""
  report = SkipReport()
  docs = list(iter_documents(path, fields, require=require, strict=strict, clean=clean, report=report,
                             planner=planner))
  return docs, report
