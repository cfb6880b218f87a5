"""Choices made by code on the validation split: a validation signal during training, and the weight-space
interpolation (1 - a) * theta0 + a * theta written out at the end (WiSE-FT).

The validation documents are the prepared corpus's `validation` split (never `test`), at most
`validation.max_docs` of them (a seeded subset), embedded like the evaluator embeds (mean pooling of the first
`validation.max_length` tokens, or with `validation.window` > 0 of the whole document in windows pooled by
`validation.pooling`, as eval.py's `embed.*`; no dropout). Scores:
- `val_uniformity` (Wang & Isola: log E exp(-2 ||x - y||^2) over pairs of l2-normalised embeddings; lower is
  more uniform) and `val_base_distance` (mean 1 - cos between the embedding and the initial encoder's of the
  same document): label-free;
- with `data.label_field`: `val_probe_f1`, the macro-F1 of a logistic regression probe under stratified k-fold
  cross-validation on the validation documents alone (the evaluator's validation split; its test split is
  never read), averaged over `validation.repeats` fold partitions, and `val_alignment` (E ||x - y||^2 over
  same-label pairs).
With labels, the interpolation weight is the one with the best `val_probe_f1` (ties: the smaller weight, i.e.
closer to the base); without labels it is `interpolate.default_alpha`, a default measured in the sweep
(docs/RESULTS.md "Recipes"). The interpolation table also holds the base itself (a = 0, from the anchor's
embeddings) and, with labels, each weight's paired difference from the base on the validation documents: the
bootstrap interval of `eval/compare.py` over validation documents, the fold partitions standing in for seeds,
and its verdict. That is the signal a recipe sweep reads without touching the test split.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxemb.data.batching import pad_rows, bucket_length
from jaxemb.models.encoder import pooled_embeddings, rows_per_chunk
from jaxemb.metrics import geometry
from jaxemb.metrics.compare import paired_bootstrap
from jaxemb.metrics.cv_probe import cv_probe_predictions, mean_macro_f1
from jaxemb.models.lora import interpolate
from jaxemb.models.windows import Pooler, Windowing

_EMBED_BATCH = 16


def defaults(c: ml_collections.ConfigDict) -> None:
  c.validation = ml_collections.ConfigDict()
  c.validation.every = 0           # steps between validation scores (0 = off); also scored at the end
  c.validation.max_docs = 256      # seeded subset of the validation split
  c.validation.max_length = 256    # tokens per document, as the evaluator embeds
  # Whole documents, as eval.py's config.embed (jaxemb/models/windows.py): window 0 = the first max_length
  # tokens; window > 0 = windows of that many tokens overlapping by stride, pooled per document.
  c.validation.window = 0
  c.validation.stride = 0
  c.validation.pooling = "first"
  c.validation.max_windows = 0
  c.validation.folds = 5           # k of the cross-validated probe (labels only)
  c.validation.repeats = 3         # fold partitions averaged (less partition noise in a small validation split)
  c.validation.keep_best = False   # with labels: export the step with the best val_probe_f1, not the last
  # False: a run that scores or chooses on the validation split (validation.every, validation.keep_best,
  # interpolate.alphas) does not train on it, so the choice is made on unseen documents. True trains on them too
  # (the choice is then biased toward the trained weights; data_spec.json, export.json and the card say so).
  c.validation.include_in_training = False
  c.interpolate = ml_collections.ConfigDict()
  c.interpolate.alphas = ""        # e.g. "0.25,0.5,0.75,1.0": export (1-a)*theta0 + a*theta; "" = the trained weights
  c.interpolate.default_alpha = 0.5  # the weight used when the corpus has no label field to choose by


def reads_validation(cfg: ml_collections.ConfigDict) -> bool:
  """Whether the run scores or chooses anything on the validation split."""
  return bool(int(cfg.validation.every) > 0 or cfg.validation.keep_best or parse_alphas(cfg.interpolate.alphas))


def training_exclude_splits(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The splits training does not see: `data.exclude_splits`, plus "validation" when the run selects on it
  (`reads_validation`) unless `validation.include_in_training`."""
  from jaxemb.data.spec import exclude_splits
  out = exclude_splits(cfg.data)
  if reads_validation(cfg) and not cfg.validation.include_in_training and "validation" not in out:
    out = (*out, "validation")
  return out


@dataclasses.dataclass
class ValidationSet:
  """Padded token ids of the validation documents (with windows: of their windows, R rows) and the documents'
  labels (-1 = none). doc_R / first_R: the document of each row and whether it is its first window (None: one
  row per document, in document order)."""
  ids_NxL: np.ndarray
  mask_NxL: np.ndarray
  labels_N: np.ndarray
  n_docs: int
  doc_R: np.ndarray | None = None
  first_R: np.ndarray | None = None
  pooling: str = "first"

  @classmethod
  def from_prepared(cls, prepared, *, max_docs: int, max_length: int, seed: int,
                    windowing: Windowing = Windowing()) -> "ValidationSet | None":
    idx = prepared.indices(["validation"])
    idx = idx[prepared.lengths[idx] > 0]
    if len(idx) == 0:
      return None
    if len(idx) > max_docs:
      idx = np.sort(np.random.default_rng(seed).choice(idx, max_docs, replace=False))
    if windowing.window:  # every window a row, wrapped in [CLS] .. [SEP] like eval.py's (Encoder.embed_documents)
      labels = np.asarray(prepared.label_index, np.int64)[idx] if len(prepared.labels) else np.full(len(idx), -1)
      rows = [(d, k == 0, t[a:b]) for d, t in enumerate(prepared.tokens_many(idx))
              for k, (a, b) in enumerate(windowing.spans(len(t)))]
      order = np.argsort([len(r[2]) for r in rows], kind="stable")
      toks = [rows[i][2] for i in order]
      n_pad = (-len(toks)) % _EMBED_BATCH
      width = min(windowing.window, max(len(t) for t in toks) + 2)
      ids, mask = pad_rows(toks + [toks[-1]] * n_pad, width, prepared.special)
      return cls(ids, mask, labels, len(idx), np.array([rows[i][0] for i in order]),
                 np.array([rows[i][1] for i in order]), windowing.pooling)
    toks = [t[:max_length - 2] for t in prepared.tokens_many(idx)]
    # Sorted by length, so that embed() can cut each batch of rows to its own length bucket (mean pooling over
    # the mask gives the same vectors at any padding; short reports embed several times faster).
    order = np.argsort([len(t) for t in toks], kind="stable")
    idx, toks = idx[order], [toks[i] for i in order]
    n_pad = (-len(toks)) % _EMBED_BATCH  # whole batches
    width = min(max_length, max(len(t) for t in toks) + 2)
    ids, mask = pad_rows(toks + [toks[-1]] * n_pad, width, prepared.special)
    labels = np.asarray(prepared.label_index, np.int64)[idx] if len(prepared.labels) else np.full(len(idx), -1)
    return cls(ids, mask, labels, len(idx))

  @property
  def has_labels(self) -> bool:
    keep = self.labels_N >= 0
    return keep.sum() >= 4 and len(np.unique(self.labels_N[keep])) >= 2


# Not models.encoder.jitted_embed_fn: that one spreads a batch over every device of every host, and validation runs
# on host 0 alone, between train steps.
@partial(jax.jit, static_argnames=("config",))
def _embed_batch(params_encoder, ids_BxL, mask_BxL, *, config):
  return pooled_embeddings(params_encoder, ids_BxL, mask_BxL, config=config,
                           chunk_rows=rows_per_chunk(*ids_BxL.shape))


def embed(params_encoder, vs: ValidationSet, config) -> np.ndarray:
  """float32 [n_docs, D] embeddings of the validation documents (no dropout)."""
  out = []
  for i in range(0, len(vs.ids_NxL), _EMBED_BATCH):
    # the batch's own length bucket (a few compiled shapes, reused by every scoring of the run)
    w = bucket_length(int(vs.mask_NxL[i:i + _EMBED_BATCH].sum(1).max()), vs.ids_NxL.shape[1])
    out.append(np.asarray(_embed_batch(params_encoder, vs.ids_NxL[i:i + _EMBED_BATCH, :w],
                                       vs.mask_NxL[i:i + _EMBED_BATCH, :w], config=config)))
  if vs.doc_R is None:
    return np.concatenate(out)[:vs.n_docs]
  z_RxD = np.concatenate(out)[:len(vs.doc_R)]
  pool = Pooler(vs.n_docs, z_RxD.shape[1], (vs.pooling,))
  pool.add(vs.doc_R, vs.first_R, vs.mask_NxL[:len(vs.doc_R)].sum(1).astype(np.float64), z_RxD)
  return pool.result(vs.pooling)


_COMPUTE = object()  # scores(cv=...): not given, compute it


def scores(z_NxD: np.ndarray, z0_NxD: np.ndarray, vs: ValidationSet, folds: int, repeats: int = 1,
           base_preds: np.ndarray | None = None, cv: Any = _COMPUTE) -> dict[str, Any]:
  """Validation scores of embeddings z against the base's z0. With labels and `base_preds` (the base's
  out-of-fold predictions, same partitions) also the paired difference from the base: val_diff, its 95%
  bootstrap interval over validation documents (val_ci_low / val_ci_high) and val_verdict. `cv`: z's
  cv_probe_predictions when the caller already has them."""
  u_NxD = geometry.l2_normalize(z_NxD)
  out: dict[str, Any] = {"val_uniformity": geometry.uniformity(u_NxD),
                         "val_base_distance": float(np.mean(1.0 - np.sum(u_NxD * geometry.l2_normalize(z0_NxD), axis=1)))}
  if vs.has_labels:
    if cv is _COMPUTE:
      cv = cv_probe_predictions(z_NxD, vs.labels_N, folds, repeats)
    out["val_probe_f1"] = mean_macro_f1(cv)
    labelled = vs.labels_N >= 0
    out["val_alignment"] = geometry.alignment(u_NxD[labelled], vs.labels_N[labelled])
    if cv is not None and base_preds is not None:
      y, preds = cv.y, cv.preds
      cmp = paired_bootstrap(y, preds, base_preds, num_classes=int(max(y.max(), preds.max(), base_preds.max())) + 1)
      out.update(val_diff=cmp["diff"], val_ci_low=cmp["ci_low"], val_ci_high=cmp["ci_high"],
                 val_verdict=cmp["verdict"])
  return out


class Validator:
  """Scores an encoder on the validation set against the initial encoder's embeddings."""

  def __init__(self, cfg: ml_collections.ConfigDict, prepared, config, initial_encoder: Any):
    self.cfg, self.config = cfg, config
    v = cfg.validation
    windowing = Windowing(int(v.window), int(v.stride), str(v.pooling), int(v.max_windows)).check(2, config.max_tokens)
    self.vs = ValidationSet.from_prepared(prepared, max_docs=int(v.max_docs), max_length=int(v.max_length),
                                          seed=cfg.seed, windowing=windowing)
    self.initial = initial_encoder
    self._z0 = None
    self._base_cv = _COMPUTE  # the base's cv_probe_predictions (None: not computable), once computed

  @property
  def available(self) -> bool:
    return self.vs is not None

  def z0(self) -> np.ndarray:
    if self._z0 is None:
      self._z0 = embed(self.initial, self.vs, self.config)
    return self._z0

  def base_cv(self):
    """The base's cv_probe_predictions (None without labels or when not computable), computed once."""
    if self._base_cv is _COMPUTE:
      self._base_cv = (cv_probe_predictions(self.z0(), self.vs.labels_N, int(self.cfg.validation.folds),
                                            int(self.cfg.validation.repeats)) if self.vs.has_labels else None)
    return self._base_cv

  def _scores(self, z: np.ndarray, cv: Any = _COMPUTE) -> dict[str, Any]:
    base = self.base_cv()
    return scores(z, self.z0(), self.vs, int(self.cfg.validation.folds), int(self.cfg.validation.repeats),
                  None if base is None else base.preds, cv)

  def score(self, params_encoder) -> dict[str, Any]:
    return self._scores(embed(params_encoder, self.vs, self.config))

  def choose_alpha(self, trained_encoder, alphas: list[float]) -> dict[str, Any]:
    """Scores of each interpolation weight and the chosen one (see the module docstring); a = 0 is the base
    (its embeddings are the anchor's: scored once, whether or not 0 is among the candidates)."""
    table = []
    for a in sorted(set([0.0, *alphas])):
      if a == 0.0:  # the base: its embeddings and cross-validated predictions are the anchor's, computed once
        s = self._scores(self.z0(), cv=self.base_cv())
      else:
        s = self._scores(embed(interpolate(self.initial, trained_encoder, a), self.vs, self.config))
      table.append({"alpha": a, "candidate": a in alphas, **s})
    if self.vs.has_labels:
      best = max((r for r in table if r["candidate"]),
                 key=lambda r: (np.nan_to_num(r["val_probe_f1"], nan=-1.0), -r["alpha"]))
      chosen, criterion = best["alpha"], "val_probe_f1"
    else:
      chosen, criterion = float(self.cfg.interpolate.default_alpha), "default_alpha (no label field)"
    base = self.base_cv()
    return {"chosen_alpha": chosen, "criterion": criterion, "n_validation_docs": self.vs.n_docs,
            "cv": None if base is None else base.scheme, "table": table}


def parse_alphas(value: str) -> list[float]:
  try:
    alphas = [float(a) for a in str(value).split(",") if a.strip()]
  except ValueError:
    raise ValueError(f"config.interpolate.alphas must be comma-separated numbers in [0, 1], got {value!r}") from None
  if any(not 0.0 <= a <= 1.0 for a in alphas):
    raise ValueError(f"config.interpolate.alphas must lie in [0, 1], got {value!r}")
  return alphas


BEST_WEIGHTS = "best_encoder.safetensors"  # validation.keep_best's record: weights + step + score in one file


def _path_key(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def save_best(workdir: Path, step: int, score: float, encoder_tree: Any) -> None:
  """Persists the best step of validation.keep_best, so that a resumed run still knows it: the encoder as
  safetensors with its step and score in the file's metadata, written to a temporary name and renamed (one
  file: the weights and the step they belong to can never disagree)."""
  from safetensors.numpy import save_file
  flat = {_path_key(k): np.ascontiguousarray(v) for k, v in jax.tree_util.tree_flatten_with_path(encoder_tree)[0]}
  tmp = workdir / (BEST_WEIGHTS + ".tmp")
  save_file(flat, str(tmp), metadata={"step": str(int(step)), "val_probe_f1": repr(float(score))})
  tmp.replace(workdir / BEST_WEIGHTS)


def load_best(workdir: Path, template: Any, resumed_at: int) -> tuple[float, int, Any] | None:
  """(val_probe_f1, step, encoder tree shaped like `template`) of the best step saved at or before
  `resumed_at`, or None (no record, or one from steps that will be trained again)."""
  from safetensors import safe_open
  path = workdir / BEST_WEIGHTS
  if not path.exists():
    return None
  with safe_open(str(path), framework="numpy") as f:
    meta = f.metadata()
    if int(meta["step"]) > resumed_at:
      return None
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    tree = jax.tree_util.tree_unflatten(treedef, [f.get_tensor(_path_key(k)) for k, _ in leaves])
  return float(meta["val_probe_f1"]), int(meta["step"]), tree
