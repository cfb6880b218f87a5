"""Group-aware, seeded, deterministic train / validation / test splits, with exact duplicates in one split.

`SplitPlanner` collects every document with a usable text (the corpus reader adds each row as it streams,
`corpus.iter_documents(planner=...)`), then assigns all splits at once: pre-training (`prepare`), evaluation
and the dataset report plan over the same rows, so requiring a label or a category moves no document between
splits. `SplitPlan.test_ids_sha256` is what a training workdir records and the evaluator checks
(`spec.check_compatible`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable

from jaxemb.data.corpus import SPLITS, Document


def _unit_hash(*parts: object) -> float:
  """A deterministic uniform number in [0, 1) from `parts` (stable across processes, unlike hash())."""
  digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
  return int.from_bytes(digest, "little") / 2.0**64


def _group_key(group: str | None, doc_id: str) -> str:
  # A document without a group id is its own group; the prefix keeps it apart from real group names.
  return f"g:{group}" if group is not None else f"d:{doc_id}"


def group_key(doc: Document) -> str:
  return _group_key(doc.group, doc.id)


def text_key(text: str) -> int:
  """Equal for texts that are the same after whitespace and case normalisation (exact duplicates). 64 bits:
  a chance collision among 10 million texts has probability ~3e-6, and an int is a third of a hex string's
  memory (the planner keeps one per document)."""
  digest = hashlib.blake2b(" ".join(text.casefold().split()).encode("utf-8"), digest_size=8).digest()
  return int.from_bytes(digest, "little")


# The split scheme's defaults, in one place: `data_config()` (config.data.split_seed / val_fraction /
# test_fraction) reads them, and so does every library function that takes the same settings.
SPLIT_SEED = 0
VAL_FRACTION = 0.1      # carved out of train only when the corpus has no validation rows
TEST_FRACTION = 0.2     # used only for rows without a corpus split


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
  if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
    raise ValueError(f"need 0 <= val_fraction, test_fraction and their sum < 1, got {val_fraction}, {test_fraction}")


def _assign(key: str, corpus_split: str | None, *, seed: int, val_fraction: float, test_fraction: float,
            carve_validation: bool) -> str:
  if corpus_split is not None:
    if corpus_split == "train" and carve_validation:
      return "validation" if _unit_hash("val", seed, key) < val_fraction else "train"
    return corpus_split
  u = _unit_hash("split", seed, key)
  if u < test_fraction:
    return "test"
  if u < test_fraction + val_fraction:
    return "validation"
  return "train"


def assign_split(doc: Document, *, seed: int = SPLIT_SEED, val_fraction: float = VAL_FRACTION,
                 test_fraction: float = TEST_FRACTION,
                 carve_validation: bool = True, key: str | None = None) -> str:
  """The split of one document, before duplicates are reconciled (`SplitPlanner` does that).

  With a corpus split (`doc.split`): the corpus's own split is used as is. Only when the corpus has NO
  validation rows (`carve_validation=True`; `SplitPlanner` decides it from the whole corpus) does a "train"
  document go to validation, when its group hashes below `val_fraction`. Without a corpus split: the group's
  hash picks test (< test_fraction), validation (< test_fraction + val_fraction) or train. Either way all
  documents of a group land in the same split as each other (within the corpus's own train part).
  `key` replaces the group key (`SplitPlanner` passes one key for groups joined by a duplicated text).
  """
  return _assign(key or group_key(doc), doc.split, seed=seed, val_fraction=val_fraction,
                 test_fraction=test_fraction, carve_validation=carve_validation)


# A duplicated text goes to the most protected split any of its copies has: a test text must never be
# trained on (pre-training excludes test), a validation text must not be in the probe's training set.
_SPLIT_RANK = {"test": 3, "validation": 2, "train": 1}


@dataclasses.dataclass
class SplitPlan:
  """Splits of the documents added to a `SplitPlanner`, in the order they were added."""
  splits: list[str]
  carved_validation: bool     # validation was carved out of the corpus's train rows (it had no validation rows)
  duplicates: dict[str, int]  # see SplitPlanner.plan
  test_ids_sha256: str        # sha256 of the sorted ids of the test documents, "\n"-joined
  n_test: int

  def to_dict(self) -> dict:
    """Everything but the per-document splits (JSON-serialisable, for the workdir record and results)."""
    return {"carved_validation": self.carved_validation, "duplicates": dict(self.duplicates),
            "test_ids_sha256": self.test_ids_sha256, "n_test": self.n_test}


class SplitPlanner:
  """Collects (text, id, group, corpus split) per document, then assigns every split at once.

  Splits are per-group hashes (`assign_split`), with two corpus-level rules:
  - validation is carved out of the corpus's train rows only when no row has a corpus validation split;
  - exact duplicates (same text after whitespace / case normalisation) land in one split: groups that share
    a duplicated text are joined (their split hashes the smallest group key), and each joined set takes the
    most protected split of its documents (test > validation > train; a corpus's own test split stays test).
    Documents that share no text with another keep exactly the split they had before this rule.
  Memory: the id, a group key and a 64-bit text key per document (~150 bytes).
  """

  def __init__(self, *, seed: int = SPLIT_SEED, val_fraction: float = VAL_FRACTION,
               test_fraction: float = TEST_FRACTION):
    _check_fractions(val_fraction, test_fraction)
    self.seed, self.val_fraction, self.test_fraction = seed, val_fraction, test_fraction
    self._ids: list[str] = []
    self._groups: list[str] = []
    self._texts: list[int] = []
    self._corpus_splits: list[str | None] = []

  def __len__(self) -> int:
    return len(self._ids)

  def add(self, *, text: str, id: str, group: str | None = None, split: str | None = None) -> int:
    """Registers one document; returns its index in the plan."""
    self._ids.append(id)
    self._groups.append(_group_key(group, id))
    self._texts.append(text_key(text))
    self._corpus_splits.append(split)
    return len(self._ids) - 1

  def add_document(self, doc: Document) -> int:
    return self.add(text=doc.text, id=doc.id, group=doc.group, split=doc.split)

  def plan(self) -> SplitPlan:
    """duplicates: "documents" (copies of an earlier text), "texts" (texts held by >= 2 documents),
    "crossing_texts" (of those, texts whose copies the group hash alone would put in different splits) and
    "moved" (documents whose split differs from the group hash alone)."""
    n = len(self._ids)
    carve = not any(s == "validation" for s in self._corpus_splits)
    kw = dict(seed=self.seed, val_fraction=self.val_fraction, test_fraction=self.test_fraction,
              carve_validation=carve)
    base = [_assign(g, s, **kw) for g, s in zip(self._groups, self._corpus_splits)]

    by_text: dict[int, list[int]] = {}
    for i, t in enumerate(self._texts):
      by_text.setdefault(t, []).append(i)
    dup_texts = [docs for docs in by_text.values() if len(docs) > 1]

    # Union-find over the group keys joined by a duplicated text.
    parent: dict[str, str] = {}

    def find(g: str) -> str:
      while parent.get(g, g) != g:
        parent[g] = parent.get(parent[g], parent[g])
        g = parent[g]
      return g

    for docs in dup_texts:
      roots = {find(self._groups[i]) for i in docs}
      root = min(roots)  # the smallest key: independent of corpus order
      for r in roots:
        parent[r] = root

    final = list(base)
    if dup_texts:
      members: dict[str, list[int]] = {}
      for i, g in enumerate(self._groups):
        if g in parent:
          members.setdefault(find(g), []).append(i)
      for root, docs in members.items():
        own = [_assign(root, self._corpus_splits[i], **kw) for i in docs]
        top = max(own, key=lambda s: (_SPLIT_RANK.get(s, 0), s))
        for i, s in zip(docs, own):
          final[i] = top if _SPLIT_RANK.get(top, 0) > 0 else s
      # Groups joined only through a text duplicated inside one group are in `parent` too (as their own
      # root): the loop above gives them their most protected split, which is what a duplicate asks for.
    test_ids = sorted(self._ids[i] for i in range(n) if final[i] == "test")
    digest = hashlib.sha256("\n".join(test_ids).encode("utf-8")).hexdigest()
    duplicates = {"documents": n - len(by_text), "texts": len(dup_texts),
                  "crossing_texts": sum(len({base[i] for i in docs}) > 1 for docs in dup_texts),
                  "moved": sum(a != b for a, b in zip(base, final))}
    return SplitPlan(splits=final, carved_validation=carve, duplicates=duplicates, test_ids_sha256=digest,
                     n_test=len(test_ids))


def plan_splits(docs: Iterable[Document], *, seed: int = SPLIT_SEED, val_fraction: float = VAL_FRACTION,
                test_fraction: float = TEST_FRACTION) -> SplitPlan:
  """`SplitPlanner` over in-memory documents (see its docstring)."""
  planner = SplitPlanner(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
  for doc in docs:
    planner.add_document(doc)
  return planner.plan()


def split_documents(docs: Iterable[Document], *, seed: int = SPLIT_SEED, val_fraction: float = VAL_FRACTION,
                    test_fraction: float = TEST_FRACTION) -> dict[str, list[Document]]:
  """Group-aware, seeded, deterministic train/validation/test split (see `SplitPlanner`).

  Documents whose corpus split is something else (e.g. "unlabeled") are left out of the three lists.
  """
  docs = list(docs)
  plan = plan_splits(docs, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
  out: dict[str, list[Document]] = {s: [] for s in SPLITS}
  for doc, s in zip(docs, plan.splits):
    if s in out:
      out[s].append(doc)
  return out
