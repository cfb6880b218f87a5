"""One data spec for pre-training and evaluation, the record a training workdir keeps of it, and the check
that pre-training never saw an evaluation test document.

`data_config()` declares the `config.data` fields both sides read (the corpus, its fields, how it is split,
what pre-training leaves out); `jaxemb/train/config.py` and `configs/eval.py` both start from it and add only
their own fields. A training run writes `WORKDIR/data_spec.json` (`write_data_spec`): the corpus file's
sha256, the fields, the split settings, the excluded splits, the split plan (duplicates, validation carving
and the sha256 of the sorted test document ids over every row with a usable text), the reader's skips and the
batch builder's drops. The evaluator computes the same plan for its corpus and calls `check_compatible` for
each workdir model: on the same corpus file, a different test split (or a pre-training that did not exclude
"test") is an error naming the field that differs. A plain HF folder has no record and is not checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import ml_collections
import numpy as np

from jaxemb import atomic
from jaxemb.cli import UserError
from jaxemb.data import splits

SPEC_FILE = "data_spec.json"
SPEC_VERSION = 1

# The config fields that decide which documents are test documents (with the corpus file itself). A field
# named here but absent from the corpus acts like "" (no such field).
SPLIT_FIELDS = ("text_field", "group_field", "split_field", "id_field", "clean", "split_seed", "test_fraction")


class DataSpecMismatchError(UserError, ValueError):
  """Pre-training may have seen documents of the evaluation's test split, or a workdir resumed with another
  split; the message names the field that differs."""


def data_config() -> ml_collections.ConfigDict:
  """The `config.data` block shared by training (jaxemb/train/config.py) and evaluation (configs/eval.py)."""
  d = ml_collections.ConfigDict()
  d.path = ""                  # "" = the generated quick-start corpus (synthetic; only for trying the tool)
  d.text_field = "text"
  d.label_field = "specialty"  # the evaluation label; pre-training does not read it
  d.metadata_field = "note_type"  # the metadata objective's category; evaluation's geometry by metadata
  d.split_field = "split"      # the corpus's own train/validation/test when present, else a seeded split
  d.group_field = "group"      # keeps a group's (patient's) documents in one split; "" = none
  d.id_field = "id"
  d.split_seed = splits.SPLIT_SEED
  d.val_fraction = splits.VAL_FRACTION    # carved out of train only when the corpus has no validation rows
  d.test_fraction = splits.TEST_FRACTION  # used only for rows without a corpus split
  d.exclude_splits = "test"    # pre-training never sees these splits (evaluation does not read it)
  d.max_docs = 0               # evaluation: > 0 = a seeded random subset (pre-training reads every document)
  d.strict = False             # bad rows are errors naming file, line and field instead of counted skips
  d.clean = True               # strip MIMIC placeholders, normalise whitespace
  return d


def corpus_path(path: str | os.PathLike | None) -> Path:
  """The configured corpus; "" (or None) = the synthetic quick-start corpus, generated on first use."""
  if path:
    return Path(path).expanduser()
  from jaxemb.data.synthetic import quickstart_corpus_path
  return quickstart_corpus_path()


def exclude_splits(data_cfg: Any) -> tuple[str, ...]:
  return tuple(s.strip() for s in str(data_cfg.get("exclude_splits", "test")).split(",") if s.strip())


def split_kwargs(data_cfg: Any) -> dict[str, Any]:
  """seed / val_fraction / test_fraction for `prepare`, `splits.SplitPlanner`, `splits.split_documents`."""
  return {"seed": int(data_cfg.get("split_seed", splits.SPLIT_SEED)),
          "val_fraction": float(data_cfg.get("val_fraction", splits.VAL_FRACTION)),
          "test_fraction": float(data_cfg.get("test_fraction", splits.TEST_FRACTION))}


def file_sha256(path: str | os.PathLike) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def split_record(*, path: str | os.PathLike, sha256: str, fields: dict[str, str | None], clean: bool,
                 seed: int, val_fraction: float, test_fraction: float, split_plan: dict) -> dict[str, Any]:
  """The part of a data spec both sides compute: corpus, fields (as config names, "" = none), split
  settings and the split plan (`splits.SplitPlan.to_dict()`)."""
  return {"version": SPEC_VERSION, "corpus": {"path": str(path), "sha256": sha256},
          "text_field": fields.get("text") or "", "group_field": fields.get("group") or "",
          "split_field": fields.get("split") or "", "id_field": fields.get("id") or "",
          "metadata_field": fields.get("metadata") or "", "clean": bool(clean), "split_seed": int(seed),
          "val_fraction": float(val_fraction), "test_fraction": float(test_fraction),
          "split_plan": dict(split_plan)}


def training_record(prepared, data_cfg: Any, batches=None, exclude: Sequence[str] | None = None) -> dict[str, Any]:
  """The workdir's data spec: how `prepared` was split, what pre-training excluded (`exclude`, default
  `data.exclude_splits`; training adds "validation" when it selects on it) and dropped."""
  s = prepared.settings
  rec = split_record(path=prepared.corpus_path, sha256=prepared.corpus_sha256, fields=s["fields"],
                     clean=s["clean"], seed=s["seed"], val_fraction=s["val_fraction"],
                     test_fraction=s["test_fraction"], split_plan=prepared.split_plan)
  splits, counts = np.unique(prepared.splits.astype(str), return_counts=True)
  rec.update({
    "exclude_splits": list(exclude_splits(data_cfg) if exclude is None else exclude),
    "require": list(s.get("require", [])),
    "split_sizes": {str(k): int(v) for k, v in zip(splits, counts)},
    "skips": prepared.report.to_dict(),
    "drops": dict(batches.drop_counts()) if batches is not None and hasattr(batches, "drop_counts") else {},
  })
  return rec


def drop_counts(prepared, batches=None) -> dict[str, int]:
  """Every document pre-training does not use, by reason, flat (for metrics.jsonl's first row and the log):
  `skipped/<reason>` (the corpus reader and tokenizer) and the batch builder's own `drop_counts()`."""
  out = {f"skipped/{k}": int(v) for k, v in sorted(prepared.report.counts.items())}
  if batches is not None and hasattr(batches, "drop_counts"):
    out.update({k: int(v) for k, v in batches.drop_counts().items()})
  return out


def read_data_spec(workdir: str | os.PathLike) -> dict[str, Any] | None:
  """A training workdir's recorded data spec; None when it has none (an HF folder, an older workdir)."""
  path = Path(workdir).expanduser() / SPEC_FILE
  if not path.is_file():
    return None
  return json.loads(path.read_text())


def write_data_spec(workdir: str | os.PathLike, prepared, data_cfg: Any, batches=None,
                    exclude: Sequence[str] | None = None) -> dict[str, Any]:
  """Writes WORKDIR/data_spec.json (atomically) and returns it. A workdir that already records ANOTHER split
  (other corpus file, test documents or excluded splits: a resume with changed data settings) is refused,
  since its checkpoints were trained on the recorded one."""
  workdir = Path(workdir).expanduser()
  rec = training_record(prepared, data_cfg, batches, exclude)
  old = read_data_spec(workdir)
  if old is not None:
    problem = None
    if old["corpus"]["sha256"] != rec["corpus"]["sha256"]:
      problem = f"the corpus file differs ({old['corpus']['path']} -> {rec['corpus']['path']}, data.path)"
    elif sorted(old["exclude_splits"]) != sorted(rec["exclude_splits"]):
      problem = f"data.exclude_splits differs ({old['exclude_splits']} -> {rec['exclude_splits']})"
    elif old["split_plan"]["test_ids_sha256"] != rec["split_plan"]["test_ids_sha256"]:
      differ = [f"data.{f} {old.get(f)!r} -> {rec[f]!r}" for f in SPLIT_FIELDS if old.get(f) != rec[f]]
      problem = "the test split differs (" + ("; ".join(differ) or "the split rule changed") + ")"
    if problem:
      raise DataSpecMismatchError(f"{workdir} was pre-trained on another split: {problem}; resuming would mix "
                                  "two splits. Use the recorded data settings or another --workdir.")
  atomic.write_json(workdir / SPEC_FILE, rec, sort_keys=True)
  return rec


def check_compatible(recorded: dict[str, Any] | None, current: Any, *, model: str = "") -> str | None:
  """Raises DataSpecMismatchError when pre-training (the workdir's `recorded` spec) could have seen a
  document of the evaluation's test split (`current`: an `EvalData`, or its `info["data_spec"]`).

  Same corpus file (sha256) only: "test" must be among the excluded splits, and the test split must be the
  same set of documents (the test ids' digest over every row with a usable text). When it is not, the error
  names the config fields that differ (data.split_seed, data.group_field, ...). Returns a note when nothing
  could be checked (no record, another corpus file), else None.
  """
  who = f"model {model!r}: " if model else ""
  if recorded is None:
    return f"{who}no {SPEC_FILE} (an HF folder, or a workdir without a recorded split): not checked"
  cur = current if isinstance(current, dict) else current.info["data_spec"]
  if recorded["corpus"]["sha256"] != cur["corpus"]["sha256"]:
    return (f"{who}pre-trained on another corpus file ({recorded['corpus']['path']}) than this evaluation's "
            f"({cur['corpus']['path']}): overlap between them is not checked")
  if "test" not in recorded["exclude_splits"]:
    raise DataSpecMismatchError(
        f"{who}pre-training on this corpus did not exclude the test split (data.exclude_splits="
        f"{','.join(recorded['exclude_splits'])!r}): it saw this evaluation's test documents")
  if recorded["split_plan"]["test_ids_sha256"] == cur["split_plan"]["test_ids_sha256"]:
    return None
  differ = [f"data.{f}={cur.get(f)!r} (pre-training: {recorded.get(f)!r})" for f in SPLIT_FIELDS
            if recorded.get(f) != cur.get(f)]
  what = "; ".join(differ) if differ else ("no setting differs (the split rule changed between jaxemb versions; "
                                           "re-prepare by pre-training again)")
  raise DataSpecMismatchError(
      f"{who}this evaluation's test split is not the one pre-training excluded ({recorded['split_plan']['n_test']} "
      f"vs {cur['split_plan']['n_test']} test documents), so pre-training could have seen test documents: {what}. "
      "Evaluate with the pre-training's data settings.")
