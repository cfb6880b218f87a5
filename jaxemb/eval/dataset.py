"""The labelled evaluation set: load, optionally subset, split, encode labels; every decision counted.

Decisions that remove documents are never silent: each is counted in `EvalData.info` (written to the
`dataset` section of results.json) and described in `EvalData.notes` (printed by the CLI):
- rows the corpus reader skipped (no text, no label, bad JSON, ...): the reader's SkipReport;
- `max_classes`: documents of the less frequent labels;
- `max_docs`: a seeded random subset;
- validation/test documents whose label has no training example: a classifier cannot predict a class it
  never saw, so they are dropped and counted per split and label (this covers "labels present only in
  test" and "a class with no training examples").
Splits come from the same plan as pre-training's (`splits.SplitPlanner`, over every row with a usable text,
labelled or not): exact duplicates land in one split (counted in the notes), the corpus's own validation
split is used as is. `EvalData.info["data_spec"]` is what `jaxemb.data.spec.check_compatible` compares with
a training workdir's data_spec.json.
Unrecoverable problems (missing file, unknown text/label field, fewer than two training classes, an empty
split) raise `EvalError` with a one-line message.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import numpy as np

from jaxemb.cli import UserError


class EvalError(UserError):
  """An expected, user-facing evaluation error: the CLI prints its message on one line and exits 2."""


@dataclasses.dataclass
class EvalData:
  texts: list[str]            # train, then validation, then test documents
  ids: list[str]
  y_N: np.ndarray             # int class index per document
  metadata: list[str | None]  # metadata category per document (None when the corpus has none)
  class_names: list[str]      # index -> label
  split_idx: dict[str, np.ndarray]  # "train" / "validation" / "test" -> row indices into the lists above
  info: dict[str, Any]        # the results.json dataset section
  notes: list[str]            # human-readable decisions, for the log


def _opt(name: str | None) -> str | None:
  return name if name else None


def load_eval_data(data_cfg: Any) -> EvalData:
  """data_cfg: the `config.data` ConfigDict (path, text_field, label_field, metadata_field, split_field,
  group_field, id_field, max_docs, max_classes, split_seed, val_fraction, test_fraction)."""
  from jaxemb.data import corpus as corpus_lib
  from jaxemb.data.splits import SplitPlanner
  from jaxemb.data import spec as spec_lib
  from jaxemb.data.corpus import Fields
  from jaxemb.data.readers import peek_fields

  notes: list[str] = []
  path = spec_lib.corpus_path(data_cfg.path)
  if not data_cfg.path:
    notes.append(f"data.path empty: using the synthetic quick-start corpus {path}")
  if not path.exists():
    raise EvalError(f"data.path {path} does not exist")

  try:
    present = peek_fields(path)
  except (OSError, ValueError) as e:
    raise EvalError(f"cannot read {path}: {e}") from None
  if not present:
    raise EvalError(f"{path}: no parseable records")
  shown = ", ".join(sorted(present))
  for role in ("text_field", "label_field"):
    name = data_cfg[role]
    if not name:
      raise EvalError(f"data.{role} must be set")
    if name not in present:
      raise EvalError(f"data.{role}={name!r} is not a field of {path} (fields seen: {shown})")
  optional = {}
  for role in ("metadata_field", "split_field", "group_field", "id_field"):
    name = _opt(data_cfg.get(role))
    if name is not None and name not in present:
      notes.append(f"data.{role}={name!r} is not a field of {path}: not used")
      name = None
    optional[role] = name

  fields = Fields(text=data_cfg.text_field, label=data_cfg.label_field, metadata=optional["metadata_field"],
                  group=optional["group_field"], split=optional["split_field"], id=optional["id_field"])
  split_kw = spec_lib.split_kwargs(data_cfg)
  clean = bool(data_cfg.get("clean", True))
  try:
    planner = SplitPlanner(**split_kw)
    skips = corpus_lib.SkipReport()
    # Each document with its plan index (a yielded document is the planner's last added one).
    indexed = [(d, len(planner) - 1) for d in corpus_lib.iter_documents(
        path, fields, require=("label",), strict=bool(data_cfg.get("strict", False)), clean=clean, report=skips,
        planner=planner)]
    plan = planner.plan()
  except (OSError, ValueError) as e:
    raise EvalError(f"cannot load {path}: {e}") from None
  docs = [d for d, _ in indexed]
  split_of = {id(d): plan.splits[k] for d, k in indexed}
  if skips.skipped:
    notes.append(f"corpus reader skipped {skips.skipped} of {skips.rows_seen} rows: "
                 + "; ".join(f"{k} {v}" for k, v in sorted(skips.counts.items())))
  if not docs:
    raise EvalError(f"{path}: no usable documents with text field {fields.text!r} and label field "
                    f"{fields.label!r} ({skips.summary().splitlines()[0]})")
  dup = plan.duplicates
  if dup["documents"]:
    notes.append(f"duplicates (same text after whitespace/case normalisation): {dup['documents']} documents repeat "
                 f"one of {dup['texts']} texts; {dup['crossing_texts']} texts would have crossed splits, "
                 f"{dup['moved']} documents moved so that each text is in one split")

  info: dict[str, Any] = {"path": str(path), "fields": dataclasses.asdict(fields),
                          "skip_report": skips.to_dict(), "n_loaded": len(docs), "duplicates": dict(dup)}
  info["data_spec"] = spec_lib.split_record(
      path=path, sha256=spec_lib.file_sha256(path), fields=dataclasses.asdict(fields), clean=clean,
      seed=split_kw["seed"], val_fraction=split_kw["val_fraction"], test_fraction=split_kw["test_fraction"],
      split_plan=plan.to_dict())

  max_classes = int(data_cfg.get("max_classes", 0) or 0)
  if max_classes > 0:
    freq = collections.Counter(d.label for d in docs)
    keep = {lab for lab, _ in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:max_classes]}
    n0 = len(docs)
    docs = [d for d in docs if d.label in keep]
    info["max_classes"] = {"kept_labels": sorted(keep), "dropped_docs": n0 - len(docs)}
    notes.append(f"data.max_classes={max_classes}: kept the {len(keep)} most frequent labels, "
                 f"dropped {n0 - len(docs)} documents of other labels")

  max_docs = int(data_cfg.get("max_docs", 0) or 0)
  if 0 < max_docs < len(docs):
    rng = np.random.default_rng(split_kw["seed"])
    chosen = np.sort(rng.choice(len(docs), max_docs, replace=False))
    info["max_docs"] = {"kept": max_docs, "of": len(docs)}
    notes.append(f"data.max_docs={max_docs}: seeded random subset of {max_docs} of {len(docs)} documents")
    docs = [docs[i] for i in chosen]

  splits: dict[str, list] = {s: [] for s in corpus_lib.SPLITS}
  for d in docs:
    if split_of[id(d)] in splits:
      splits[split_of[id(d)]].append(d)
  n_other = len(docs) - sum(len(v) for v in splits.values())
  if n_other:
    info["dropped_other_split"] = n_other
    notes.append(f"{n_other} documents have a corpus split other than train/validation/test: not used")
  has_split = any(d.split is not None for d in docs)
  carved = " (validation carved group-aware out of train)" if plan.carved_validation else " (its own validation)"
  info["split_source"] = (f"corpus field {fields.split!r}{carved}" if has_split else "seeded group-aware split")
  info["split_settings"] = dict(split_kw)

  classes = sorted({d.label for d in splits["train"]})
  if len(classes) < 2:
    raise EvalError(f"the training split has {len(classes)} class(es) ({classes}); a classifier needs >= 2")
  known = set(classes)
  dropped: dict[str, dict[str, int]] = {}
  for name in ("validation", "test"):
    unseen = collections.Counter(d.label for d in splits[name] if d.label not in known)
    if unseen:
      dropped[name] = dict(sorted(unseen.items()))
      splits[name] = [d for d in splits[name] if d.label in known]
      notes.append(f"dropped {sum(unseen.values())} {name} documents whose label has no training example: "
                   + ", ".join(f"{k!r} x{v}" for k, v in sorted(unseen.items())))
  info["dropped_unseen_labels"] = dropped
  info["n_dropped_unseen_labels"] = int(sum(sum(v.values()) for v in dropped.values()))
  for name in ("train", "validation", "test"):
    if not splits[name]:
      raise EvalError(f"the {name} split is empty ({len(docs)} documents; check data.split_field, "
                      "data.val_fraction, data.test_fraction, data.max_docs)")

  order = splits["train"] + splits["validation"] + splits["test"]
  index = {c: i for i, c in enumerate(classes)}
  bounds = np.cumsum([0, len(splits["train"]), len(splits["validation"]), len(splits["test"])])
  split_idx = {name: np.arange(bounds[k], bounds[k + 1]) for k, name in
               enumerate(("train", "validation", "test"))}
  y_N = np.array([index[d.label] for d in order], np.int32)
  info["classes"] = classes
  info["split_sizes"] = {k: int(len(v)) for k, v in split_idx.items()}
  info["class_counts"] = {k: {c: int((y_N[v] == i).sum()) for i, c in enumerate(classes)}
                          for k, v in split_idx.items()}
  absent = [c for i, c in enumerate(classes) if not (y_N[split_idx["test"]] == i).any()]
  info["classes_absent_from_test"] = absent
  if absent:
    notes.append(f"{len(absent)} training classes have no test example (excluded from test AUROC): {absent}")
  return EvalData(texts=[d.text for d in order], ids=[d.id for d in order], y_N=y_N,
                  metadata=[d.metadata for d in order], class_names=classes, split_idx=split_idx, info=info,
                  notes=notes)
