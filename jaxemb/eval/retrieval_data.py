"""Retrieval sets: queries, a document pool and graded relevance judgements, from a BEIR folder or one corpus.

(a) A BEIR folder (`corpus.jsonl` with `_id` / `title` / `text`, `queries.jsonl` with `_id` / `text`,
    `qrels/<split>.tsv` with a header and query-id, corpus-id, score columns): test queries are those of
    `qrels/test.tsv`, validation queries those of `qrels/dev.tsv` (BEIR's name) or `qrels/validation.tsv` when
    present. A document's text is its title and text joined by a blank line (BEIR's and MTEB's
    concatenation, with a separator a tokenizer reads as whitespace). Judgements with score <= 0 are kept as
    "not relevant" (they count for nDCG's ideal ordering only through relevant ones); judgements naming a
    query or document the folder does not have are skipped and counted.
(b) One corpus with a query field and a document field (MedQuAD question -> answer, MTSamples description ->
    note): a row's query is relevant (grade 1) to its own document and to every exact duplicate of that
    document (same text after whitespace / case normalisation, the splitter's rule). The splits are the
    training data spec's (`splits.SplitPlanner` over the DOCUMENT texts, so pre-training on the document
    field with the same data block excludes exactly these test documents); queries come from the validation
    and test splits, at most `max_queries` of each (a seeded subset); the pool is every document
    (`pool="all"`: the training documents are distractors too) or only those of the validation and test
    splits (`pool="eval"`).
Malformed files raise EvalError naming file, line and field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from jaxemb.eval.dataset import EvalError

POOLS = ("all", "eval")
_VALIDATION_QRELS = ("dev", "validation")


@dataclasses.dataclass
class RetrievalSet:
  doc_ids: list[str]
  doc_texts: list[str]
  query_ids: list[str]
  query_texts: list[str]
  query_split: np.ndarray            # "validation" / "test" per query
  qrels: dict[str, dict[str, int]]   # query id -> {document id: grade}
  info: dict[str, Any]               # the results.json dataset section
  notes: list[str]

  def split_queries(self, split: str) -> np.ndarray:
    """Indices of the queries of `split` that have at least one relevant document (int64)."""
    return np.flatnonzero(self.query_split == split)

  def digest(self) -> str:
    """sha256 of every text and judgement, in order: what a resumed unit must have been computed on."""
    h = hashlib.sha256()
    for part in (self.doc_ids, self.doc_texts, self.query_ids, self.query_texts, list(self.query_split)):
      h.update(json.dumps(part).encode())
    h.update(json.dumps(self.qrels, sort_keys=True).encode())
    return h.hexdigest()


def _jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
  rows = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except ValueError as e:
        raise EvalError(f"{path}:{line_no}: not JSON ({e})") from None
      for field in required:
        if not isinstance(row.get(field), str) or (field == "_id" and not row[field]):
          raise EvalError(f"{path}:{line_no}: field {field!r} missing or not a string")
      rows.append(row)
  return rows


def _qrels(path: Path, skips: dict[str, int], query_ids: set[str], doc_ids: set[str]) -> dict[str, dict[str, int]]:
  out: dict[str, dict[str, int]] = {}
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      cols = line.rstrip("\n").split("\t")
      if line_no == 1 and not cols[-1].lstrip("-").isdigit():
        continue  # the header (query-id, corpus-id, score)
      if not line.strip():
        continue
      if len(cols) != 3 or not cols[2].strip().lstrip("-").isdigit():
        raise EvalError(f"{path}:{line_no}: expected query-id<TAB>corpus-id<TAB>integer score, got {line.strip()!r}")
      q, d, score = cols[0], cols[1], int(cols[2])
      if q not in query_ids:
        skips["qrels_unknown_query"] = skips.get("qrels_unknown_query", 0) + 1
        continue
      if d not in doc_ids:
        skips["qrels_unknown_document"] = skips.get("qrels_unknown_document", 0) + 1
        continue
      out.setdefault(q, {})[d] = score
  return out


def load_beir(folder: str | Path, *, max_queries: int = 0, seed: int = 0) -> RetrievalSet:
  """A BEIR folder (see the module docstring). max_queries > 0: a seeded subset of each split's queries."""
  folder = Path(folder).expanduser()
  for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
    if not (folder / name).exists():
      raise EvalError(f"{folder} is not a BEIR folder: {name} is missing")
  docs = _jsonl(folder / "corpus.jsonl", ("_id", "text"))
  queries = _jsonl(folder / "queries.jsonl", ("_id", "text"))
  doc_ids = [d["_id"] for d in docs]
  if len(set(doc_ids)) != len(doc_ids):
    raise EvalError(f"{folder / 'corpus.jsonl'}: a document _id appears twice")
  doc_texts = [(d.get("title") or "").strip() + "\n\n" + d["text"] if (d.get("title") or "").strip() else d["text"]
               for d in docs]
  qtext = {q["_id"]: q["text"] for q in queries}
  skips: dict[str, int] = {}
  qrels, split_of = {}, {}
  files = [("test", folder / "qrels/test.tsv")]
  val = [folder / f"qrels/{n}.tsv" for n in _VALIDATION_QRELS if (folder / f"qrels/{n}.tsv").exists()]
  if val:
    files.insert(0, ("validation", val[0]))
  for split, path in files:
    judged = _qrels(path, skips, set(qtext), set(doc_ids))
    rng = np.random.default_rng(seed)
    ids = [q for q in judged if any(g > 0 for g in judged[q].values()) and q not in split_of]
    skips[f"{split}_queries_without_relevant"] = len(judged) - len(ids)
    if 0 < max_queries < len(ids):
      ids = [ids[i] for i in np.sort(rng.choice(len(ids), max_queries, replace=False))]
    for q in ids:
      qrels[q], split_of[q] = judged[q], split
  query_ids = list(split_of)
  notes = [f"BEIR folder {folder}: {len(doc_ids)} documents, "
           + ", ".join(f"{s} {sum(v == s for v in split_of.values())} queries" for s, _ in files)]
  if not val:
    notes.append("no qrels/dev.tsv: no validation queries (hybrid weights fall back to their default)")
  if any(skips.values()):
    notes.append("skipped: " + "; ".join(f"{k} {v}" for k, v in sorted(skips.items()) if v))
  info = {"kind": "beir", "path": str(folder), "n_docs": len(doc_ids), "skips": skips,
          "n_queries": {s: sum(v == s for v in split_of.values()) for s, _ in files}}
  return RetrievalSet(doc_ids=doc_ids, doc_texts=doc_texts, query_ids=query_ids,
                      query_texts=[qtext[q] for q in query_ids],
                      query_split=np.array([split_of[q] for q in query_ids], dtype=object), qrels=qrels,
                      info=info, notes=notes)


def load_pairs(data_cfg: Any, *, query_field: str, pool: str = "all", max_queries: int = 0) -> RetrievalSet:
  """One corpus (`data_cfg`: the shared data block; its text_field is the DOCUMENT field) with a query field."""
  from jaxemb.data import corpus as corpus_lib
  from jaxemb.data import spec as spec_lib
  from jaxemb.data.corpus import Fields
  from jaxemb.data.readers import peek_fields
  from jaxemb.data.splits import SplitPlanner, text_key
  from jaxemb.metrics.retrieval import self_judgements

  if pool not in POOLS:
    raise EvalError(f"config.retrieval.pool must be one of {POOLS}; got {pool!r}")
  path = spec_lib.corpus_path(data_cfg.path)
  if not path.exists():
    raise EvalError(f"data.path {path} does not exist")
  present = peek_fields(path)
  for role, name in (("data.text_field", data_cfg.text_field), ("retrieval.query_field", query_field)):
    if not name or name not in present:
      raise EvalError(f"config.{role}={name!r} is not a field of {path} (fields seen: {', '.join(sorted(present))})")
  optional = {r: (data_cfg.get(r) or None) for r in ("split_field", "group_field", "id_field")}
  optional = {r: (n if n in present else None) for r, n in optional.items()}
  fields = Fields(text=data_cfg.text_field, label=query_field, split=optional["split_field"],
                  group=optional["group_field"], id=optional["id_field"])
  split_kw = spec_lib.split_kwargs(data_cfg)
  clean = bool(data_cfg.get("clean", True))
  planner = SplitPlanner(**split_kw)
  skips = corpus_lib.SkipReport()
  try:
    # Every row with a document text is in the pool; a row without a query is a document, not a query.
    indexed = [(d, len(planner) - 1) for d in corpus_lib.iter_documents(
        path, fields, strict=bool(data_cfg.get("strict", False)), clean=clean, report=skips, planner=planner)]
    plan = planner.plan()
  except (OSError, ValueError) as e:
    raise EvalError(f"cannot load {path}: {e}") from None
  if not indexed:
    raise EvalError(f"{path}: no usable documents in field {data_cfg.text_field!r}")
  split_N = [plan.splits[k] for _, k in indexed]
  in_pool = [pool == "all" or s in ("validation", "test") for s in split_N]
  docs = [d for (d, _), keep in zip(indexed, in_pool) if keep]
  doc_ids = [f"d{i}" for i, keep in enumerate(in_pool) if keep]   # row ids: a corpus id may repeat
  pool_row = {i: r for r, i in enumerate(i for i, keep in enumerate(in_pool) if keep)}

  rng = np.random.default_rng(split_kw["seed"])
  query_ids, query_texts, query_split, query_doc = [], [], [], []
  counts: dict[str, int] = {}
  for split in ("validation", "test"):
    rows = [i for i, (s, keep) in enumerate(zip(split_N, in_pool)) if s == split and keep]
    with_query = [i for i in rows if isinstance(indexed[i][0].label, str) and indexed[i][0].label.strip()]
    counts[f"{split}_rows_without_query"] = len(rows) - len(with_query)
    if 0 < max_queries < len(with_query):
      with_query = [with_query[j] for j in np.sort(rng.choice(len(with_query), max_queries, replace=False))]
    for i in with_query:
      doc = indexed[i][0]
      qid = f"q{i}"
      query_ids.append(qid)
      query_texts.append(doc.label.strip())
      query_split.append(split)
      query_doc.append(pool_row[i])
  qrels = self_judgements(query_ids, query_doc, doc_ids, [text_key(d.text) for d in docs])
  if not any(s == "test" for s in query_split):
    raise EvalError(f"{path}: no test-split rows with a query in field {query_field!r}")
  n_dup = sum(len(v) > 1 for v in qrels.values())
  notes = [f"retrieval pairs {query_field!r} -> {data_cfg.text_field!r} in {path}: pool {len(docs)} documents "
           f"({pool}), {query_split.count('validation')} validation and {query_split.count('test')} test queries; "
           f"{n_dup} queries have more than one relevant document (exact duplicates of their own)"]
  if skips.skipped:
    notes.append(f"corpus reader skipped {skips.skipped} of {skips.rows_seen} rows: "
                 + "; ".join(f"{k} {v}" for k, v in sorted(skips.counts.items())))
  if any(counts.values()):
    notes.append("not queries: " + "; ".join(f"{k} {v}" for k, v in counts.items() if v))
  info = {"kind": "pairs", "path": str(path), "query_field": query_field, "document_field": data_cfg.text_field,
          "pool": pool, "n_docs": len(docs), "skip_report": skips.to_dict(), "not_queries": counts,
          "n_queries": {s: query_split.count(s) for s in ("validation", "test")},
          "n_queries_with_duplicates": n_dup}
  info["data_spec"] = spec_lib.split_record(
      path=path, sha256=spec_lib.file_sha256(path), fields=dataclasses.asdict(Fields(
          text=fields.text, split=fields.split, group=fields.group, id=fields.id)), clean=clean,
      seed=split_kw["seed"], val_fraction=split_kw["val_fraction"], test_fraction=split_kw["test_fraction"],
      split_plan=plan.to_dict())
  return RetrievalSet(doc_ids=doc_ids, doc_texts=[d.text for d in docs], query_ids=query_ids,
                      query_texts=query_texts, query_split=np.array(query_split, dtype=object), qrels=qrels,
                      info=info, notes=notes)


def load(cfg: Any) -> RetrievalSet:
  """The retrieval set the config names: a BEIR folder when data.path is a directory, else query/document
  fields of one corpus."""
  r = cfg.retrieval
  path = Path(str(cfg.data.path)).expanduser() if cfg.data.path else None
  if path is not None and path.is_dir():
    return load_beir(path, max_queries=int(r.max_queries), seed=int(cfg.data.split_seed))
  if not r.query_field:
    raise EvalError("config.retrieval.query_field must name the query field of data.path (or give a BEIR folder)")
  return load_pairs(cfg.data, query_field=r.query_field, pool=r.pool, max_queries=int(r.max_queries))
