"""Tokenise a corpus once and cache it as a TFDS array_record dataset, read back by random access.

The cache lives in `cache_dir/jaxemb_prepared/<key>/1.0.0/` where `key` hashes the corpus bytes, the tokenizer
and every setting that changes the result, so a changed input never reuses a stale cache. TFDS writes into an
"incomplete" folder and renames it when done, so an interrupted run leaves no half cache behind. No TensorFlow
is needed: only array_record builders and `as_data_source()` are used (tensorflow-datasets reads and writes
array_record without TensorFlow installed).

Stored per document (one TFDS example, in corpus order): token ids WITHOUT special tokens (batch builders add
[CLS]/[SEP] or <s>/</s>), the cleaned text, id, label, metadata, group, the corpus's OWN split value ("" when
none) and source ("file:line"). Small per-document columns (token count, the ASSIGNED split, label and category
index) live in the dataset's metadata.json so batch builders can plan batches without touching the records;
the assigned split is known only once the whole corpus is read (`splits.SplitPlanner`: duplicates, validation
carving), so it is not in the records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxemb.data import corpus as corpus_lib
from jaxemb.data import readers
from jaxemb.data import splits
from jaxemb.data.splits import SplitPlanner
from jaxemb.data import default_cache_dir
from jaxemb.data.corpus import Document, Fields, SkipReport
from jaxemb.data.masking import SpecialTokens
from jaxemb.data.spec import file_sha256
# The one tokenizer loader (a local folder, default all-MiniLM-L6-v2, or a hub name); re-exported here.
from jaxemb.resolve import load_tokenizer  # noqa: F401

# Bump when the stored layout or the meaning of a setting changes: old caches are then never reused.
# 2: splits from `splits.SplitPlanner` (duplicates in one split; validation carved only when the corpus has none).
FORMAT_VERSION = 2
_SPLIT_NAME = "docs"  # The one TFDS split; train/validation/test are per-document columns.
_TOKENIZE_BATCH = 256


def tokenize(tokenizer, texts: Sequence[str]) -> list[list[int]]:
  """Batched token ids without special tokens and without truncation."""
  # verbose=False: documents longer than model_max_length are expected here (they are chunked / spanned later).
  return tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False,
                   return_token_type_ids=False, verbose=False)["input_ids"]


def tokenizer_fingerprint(tokenizer) -> str:
  state = json.loads(tokenizer.backend_tokenizer.to_str())
  # Calling a HF tokenizer rewrites its backend's truncation/padding state; neither changes our token ids.
  state.pop("truncation", None)
  state.pop("padding", None)
  h = hashlib.sha256(json.dumps(state, sort_keys=True).encode("utf-8"))
  h.update(json.dumps(SpecialTokens.from_tokenizer(tokenizer).to_dict(), sort_keys=True).encode())
  return h.hexdigest()


def file_fingerprint(path: str | Path) -> str:
  """sha256 of the file's bytes (the corpus identity recorded in a workdir's data_spec.json)."""
  return file_sha256(path)


@dataclasses.dataclass(frozen=True)
class PrepareSettings:
  """Everything that decides the prepared cache's content besides the corpus and the tokenizer (its key)."""
  fields: Fields
  require: tuple[str, ...]
  strict: bool
  clean: bool
  seed: int                   # split seed
  val_fraction: float
  test_fraction: float

  def to_dict(self) -> dict:
    return {**dataclasses.asdict(self), "require": list(self.require)}


def cache_key(path: str | Path, tokenizer, settings: PrepareSettings, *, corpus_sha256: str | None = None) -> str:
  payload = json.dumps({"format": FORMAT_VERSION, "corpus": corpus_sha256 or file_fingerprint(path),
                        "tokenizer": tokenizer_fingerprint(tokenizer), "settings": settings.to_dict()}, sort_keys=True)
  return hashlib.sha256(payload.encode()).hexdigest()[:24]


# ----------------------------------------------------------------------------------------------- TFDS builder

@dataclasses.dataclass
class _Job:
  path: Path
  tokenizer: object
  settings: PrepareSettings
  corpus_sha256: str


def skip_no_tokens(report: SkipReport, doc: Document, *, strict: bool, path: str | Path, field: str) -> None:
  """Counts a kept document whose cleaned text tokenises to nothing (e.g. only zero-width characters) as the
  skip `no_tokens`, or raises BadRowError under strict. One rule for `prepare` and the data report."""
  if strict:
    line = int(doc.source.rsplit(":", 1)[1])
    raise corpus_lib.BadRowError(str(path), line, field, "no_tokens")
  report.kept -= 1
  report.add("no_tokens", doc.source)


class JaxembPrepared(tfds.core.GeneratorBasedBuilder):
  """One prepared corpus; the builder config name is the cache key. Constructed with `job` to write, without to read."""

  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, job: _Job | None = None, **kwargs):
    self._job = job
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
      builder=self,
      description="jaxemb prepared corpus: token ids without special tokens plus per-document fields.",
      features=tfds.features.FeaturesDict({
        # Raw bytes rather than a proto int64 list: ~3x faster to decode per document.
        "token_ids": tfds.features.Tensor(shape=(None,), dtype=np.int32, encoding=tfds.features.Encoding.BYTES),
        "text": text, "id": text, "label": text, "metadata": text, "group": text, "split": text, "source": text,
      }),
      metadata=tfds.core.MetadataDict(),
      # Corpus order is the index order: reproducible, and matches the SkipReport's file:line order.
      disable_shuffling=True,
    )

  # TFDS prints these to stdout; a library must keep stdout for its callers (e.g. --json outputs).
  def _log_download_bytes(self) -> None:
    logging.info("preparing %s into %s", self._job.path if self._job else "?", self.data_dir)

  def _log_download_done(self) -> None:
    logging.info("prepared %s", self.data_dir)

  def _split_generators(self, dl_manager):
    del dl_manager
    if self._job is None:
      raise RuntimeError("JaxembPrepared was opened for reading; construct it with job=... to prepare")
    return {_SPLIT_NAME: self._generate_examples()}

  def _generate_examples(self) -> Iterator[tuple[int, dict]]:
    job = self._job
    s = job.settings
    report = SkipReport()
    planner = SplitPlanner(seed=s.seed, val_fraction=s.val_fraction, test_fraction=s.test_fraction)
    docs = corpus_lib.iter_documents(job.path, s.fields, require=s.require, strict=s.strict, clean=s.clean,
                                     report=report, planner=planner)
    # A yielded document is the planner's last added one: its plan index, taken as it is yielded.
    indexed = ((doc, len(planner) - 1) for doc in docs)
    lengths: list[int] = []
    plan_index: list[int] = []
    label_codes, label_vocab = [], {}
    meta_codes, meta_vocab = [], {}
    index = 0
    for chunk in _chunks(indexed, _TOKENIZE_BATCH):
      for (doc, k), ids in zip(chunk, tokenize(job.tokenizer, [d.text for d, _ in chunk])):
        if not ids:
          # Still in the split plan (added by the reader): the plan must not depend on the tokenizer.
          skip_no_tokens(report, doc, strict=s.strict, path=job.path, field=s.fields.text)
          continue
        lengths.append(len(ids))
        plan_index.append(k)
        label_codes.append(label_vocab.setdefault(doc.label, len(label_vocab)) if doc.label is not None else -1)
        meta_codes.append(meta_vocab.setdefault(doc.metadata, len(meta_vocab)) if doc.metadata is not None else -1)
        yield index, {"token_ids": np.asarray(ids, np.int32), "text": doc.text, "id": doc.id,
                      "label": doc.label or "", "metadata": doc.metadata or "", "group": doc.group or "",
                      "split": doc.split or "", "source": doc.source}
        index += 1

    plan = planner.plan()
    labels, label_remap = _sorted_vocab(label_vocab)
    categories, meta_remap = _sorted_vocab(meta_vocab)
    # Written into metadata.json together with dataset_info.json, i.e. atomically with the records.
    self.info.metadata.update({
      "format": FORMAT_VERSION,
      "corpus": str(job.path),
      "corpus_sha256": job.corpus_sha256,
      "tokenizer": str(getattr(job.tokenizer, "name_or_path", "")),
      "special_tokens": SpecialTokens.from_tokenizer(job.tokenizer).to_dict(),
      "settings": s.to_dict(),
      "report": report.to_dict(),
      "split_plan": plan.to_dict(),
      "labels": labels,
      "categories": categories,
      "lengths": lengths,
      "splits": [plan.splits[k] for k in plan_index],
      "label_index": [label_remap[c] if c >= 0 else -1 for c in label_codes],
      "category_index": [meta_remap[c] if c >= 0 else -1 for c in meta_codes],
    })


def _chunks(it: Iterable, n: int) -> Iterator[list]:
  chunk = []
  for x in it:
    chunk.append(x)
    if len(chunk) == n:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def _sorted_vocab(vocab: dict[str, int]) -> tuple[list[str], dict[int, int]]:
  names = sorted(vocab)
  position = {name: i for i, name in enumerate(names)}
  return names, {code: position[name] for name, code in vocab.items()}


# ----------------------------------------------------------------------------------------------- reading

class PreparedCorpus:
  """Random access to a prepared corpus.

  Index i is the i-th kept document in corpus order. Per-document columns (numpy, length N):
  `lengths` (token count, no special tokens), `splits` (train/validation/test, or the corpus's own value),
  `label_index` / `category_index` (into `labels` / `categories`, sorted vocabularies; -1 = none).
  `split_plan`: how the corpus was split (`splits.SplitPlan.to_dict()`: duplicates, validation carving, the
  test ids' digest over every row with a usable text); `corpus_sha256`: the corpus file's digest.
  """

  def __init__(self, data_dir: str | Path):
    self.data_dir = Path(data_dir)
    builder = tfds.builder_from_directory(str(self.data_dir))
    meta = builder.info.metadata
    if not meta or meta.get("format") != FORMAT_VERSION:
      raise ValueError(f"{self.data_dir}: not a jaxemb prepared corpus of format {FORMAT_VERSION}")
    self.builder = builder
    self.key = self.data_dir.parent.name
    self.data_source = builder.as_data_source()[_SPLIT_NAME]  # also usable by grain
    self.report = SkipReport.from_dict(meta["report"])
    self.special = SpecialTokens.from_dict(meta["special_tokens"])
    self.settings = dict(meta["settings"])
    self.corpus_path = meta["corpus"]
    self.corpus_sha256: str = meta["corpus_sha256"]
    self.split_plan: dict = dict(meta["split_plan"])
    self.tokenizer_name = meta["tokenizer"]
    self.labels: list[str] = list(meta["labels"])
    self.categories: list[str] = list(meta["categories"])
    self.lengths = np.asarray(meta["lengths"], np.int32)
    self.splits = np.asarray(meta["splits"], dtype=object)
    self.label_index = np.asarray(meta["label_index"], np.int32)
    self.category_index = np.asarray(meta["category_index"], np.int32)
    if len(self.data_source) != len(self.lengths):
      raise ValueError(f"{self.data_dir}: {len(self.data_source)} records but {len(self.lengths)} index rows")

  def __len__(self) -> int:
    return len(self.lengths)

  def indices(self, splits: Sequence[str] | None = None, exclude_splits: Sequence[str] = ()) -> np.ndarray:
    """Document indices (int64, increasing) in `splits` (all when None) and not in `exclude_splits`."""
    keep = np.ones(len(self), bool)
    if splits is not None:
      keep &= np.isin(self.splits, list(splits))
    if exclude_splits:
      keep &= ~np.isin(self.splits, list(exclude_splits))
    return np.flatnonzero(keep)

  def record(self, i: int) -> dict:
    """Decoded record: token_ids (int32 array) and strings (absent fields as None)."""
    return _decode(self.data_source[int(i)])

  def records(self, indices: Sequence[int]) -> list[dict]:
    indices = [int(i) for i in indices]
    if not indices:
      return []
    return [_decode(r) for r in self.data_source.__getitems__(indices)]

  def tokens(self, i: int) -> np.ndarray:
    return np.asarray(self.data_source[int(i)]["token_ids"], np.int32)

  def tokens_many(self, indices: Sequence[int]) -> list[np.ndarray]:
    indices = [int(i) for i in indices]
    if not indices:
      return []
    return [np.asarray(r["token_ids"], np.int32) for r in self.data_source.__getitems__(indices)]

  def document(self, i: int) -> Document:
    """The document with its ASSIGNED split (the record holds the corpus's own one)."""
    r = self.record(i)
    return Document(text=r["text"], id=r["id"], label=r["label"], metadata=r["metadata"], group=r["group"],
                    split=str(self.splits[int(i)]), source=r["source"])

  def __repr__(self) -> str:
    return (f"PreparedCorpus({self.corpus_path!r}, docs={len(self)}, tokens={int(self.lengths.sum())}, "
            f"labels={len(self.labels)}, categories={len(self.categories)}, key={self.key})")


def _decode(r: dict) -> dict:
  out = {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in r.items()}
  for k in ("label", "metadata", "group", "split"):
    out[k] = out[k] or None
  out["token_ids"] = np.asarray(out["token_ids"], np.int32)
  return out


def prepare(path: str | Path, fields: Fields = Fields(), tokenizer=None, *, cache_dir: str | Path | None = None,
            require: Iterable[str] = (), strict: bool = False, clean: bool = True,
            seed: int = splits.SPLIT_SEED, val_fraction: float = splits.VAL_FRACTION,
            test_fraction: float = splits.TEST_FRACTION, verbose: bool = False) -> PreparedCorpus:
  """Tokenises `path` once (cached by content + tokenizer + settings) and opens it for random access.

  Args:
    tokenizer: a HF fast tokenizer, a folder / hub name, or None for all-MiniLM-L6-v2.
    cache_dir: root of the cache (default `default_cache_dir() / "prepared"`).
    require, strict, clean: as in `corpus.iter_documents`.
    seed, val_fraction, test_fraction: the group-aware split (`splits.assign_split`).
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file")
  if tokenizer is None or isinstance(tokenizer, (str, Path)):
    tokenizer = load_tokenizer(str(tokenizer) if tokenizer is not None else None)
  settings = PrepareSettings(fields=fields, require=tuple(sorted(require)), strict=strict, clean=clean, seed=seed,
                             val_fraction=val_fraction, test_fraction=test_fraction)
  if fields.split is None and "split" in readers.peek_fields(path):
    # Hash splits would ignore the corpus's own test split, and pre-training could then see evaluation documents.
    logging.warning("%s has a 'split' field but Fields.split is None: splits are hashed, not read from it", path)
  sha256 = file_fingerprint(path)
  key = cache_key(path, tokenizer, settings, corpus_sha256=sha256)
  cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "prepared"
  config = tfds.core.BuilderConfig(name=key, description=f"{path.name} tokenised by {tokenizer.name_or_path}")
  builder = JaxembPrepared(job=_Job(path, tokenizer, settings, sha256), config=config, data_dir=str(cache_dir),
                           file_format="array_record")
  if not Path(builder.data_dir).joinpath("dataset_info.json").exists():
    from tensorflow_datasets.core.utils import tqdm_utils
    was_active = tqdm_utils._active
    tfds.display_progress_bar(verbose)
    try:
      builder.download_and_prepare(download_dir=str(cache_dir / "downloads"))
    finally:
      tfds.display_progress_bar(was_active)
  return PreparedCorpus(builder.data_dir)
