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
- with `validation.metric = "retrieval"` (no probe then): `val_ndcg@10`, `val_mrr@10` and `val_recall@10` of
  retrieval on the validation split (`ValidationQueries`): each validation document that has a query (the
  corpus field `validation.query_field`, or the pairs objective's `pairs.query_field` when that is empty) gives
  one query, the pool is the validation documents scored (the same `validation.max_docs` subset), and a query is
  relevant to its own document and its exact duplicates (`metrics.retrieval.self_judgements`, the rule of
  eval.py's one-corpus retrieval). Exact cosine search and pytrec_eval's metrics (`metrics/retrieval.py`), the
  queries embedded like the documents (the first `validation.max_length` tokens; no windows).
The score the choices maximise (`score_key`) is `val_probe_f1`, or `val_ndcg@10` with the retrieval metric. With
it, the interpolation weight is the one with the best score (ties: the smaller weight, i.e. closer to the base);
with neither labels nor the retrieval metric it is `interpolate.default_alpha`, a default measured in the sweep
(docs/RESULTS.md "Recipes"). The interpolation table also holds the base itself (a = 0, from the initial
encoder's embeddings) and each weight's paired difference from the base on the validation split: for the probe the
bootstrap interval of `metrics/compare.py` over validation documents, the fold partitions standing in for
seeds; for retrieval the paired bootstrap of nDCG@10 over validation queries (`paired_bootstrap_mean`); and its
verdict. That is the signal a recipe sweep reads without touching the test split.
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
from jaxemb.metrics.compare import paired_bootstrap, paired_bootstrap_mean
from jaxemb.metrics.cv_probe import cv_probe_predictions, mean_macro_f1
from jaxemb.metrics.retrieval import dense_search, evaluate, self_judgements
from jaxemb.models.lora import interpolate
from jaxemb.models.windows import Pooler, Windowing

_EMBED_BATCH = 16
METRICS = ("probe", "retrieval")   # validation.metric
_RETRIEVAL_DEPTH = 10              # the retrieval scores reported are all @10


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
  c.validation.keep_best = False   # export the step with the best score_key (val_probe_f1 / val_ndcg@10), not the last
  # What chooses (keep_best, interpolate.alphas): "probe" (val_probe_f1 with data.label_field) or "retrieval"
  # (val_ndcg@10 of each validation document's query, field validation.query_field, over the validation documents).
  c.validation.metric = "probe"
  c.validation.query_field = ""    # retrieval: the query field; "" = config.pairs.query_field (the pairs objective)
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


def score_key(cfg: ml_collections.ConfigDict) -> str:
  """The validation score that validation.keep_best and the interpolation choice maximise."""
  return "val_ndcg@10" if str(cfg.validation.metric) == "retrieval" else "val_probe_f1"


def query_field(cfg: ml_collections.ConfigDict) -> str:
  """The corpus field of each document's query for validation.metric = "retrieval"."""
  field = str(cfg.validation.query_field) or (str(cfg.pairs.query_field) if "pairs" in cfg else "")
  if not field:
    raise ValueError("config.validation.metric='retrieval' needs the query field: set config.validation.query_field "
                     "(the pairs objective's config.pairs.query_field is used when it is empty)")
  return field


def _sorted_rows(toks: list, max_length: int, special) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(order, ids, mask): token rows cut to max_length - 2, sorted by length and padded to whole batches, so that
  embed() can cut each batch of rows to its own length bucket (mean pooling over the mask gives the same
  vectors at any padding; short rows embed several times faster). Row r is toks[order[r]]."""
  toks = [t[:max_length - 2] for t in toks]
  order = np.argsort([len(t) for t in toks], kind="stable")
  toks = [toks[i] for i in order]
  n_pad = (-len(toks)) % _EMBED_BATCH  # whole batches
  width = min(max_length, max(len(t) for t in toks) + 2)
  ids, mask = pad_rows(toks + [toks[-1]] * n_pad, width, special)
  return order, ids, mask


@dataclasses.dataclass
class ValidationSet:
  """Padded token ids of the validation documents (with windows: of their windows, R rows) and the documents'
  labels (-1 = none). doc_R / first_R: the document of each row and whether it is its first window (None: one
  row per document, in document order). docs_N: the prepared corpus's index of each document, in the order of
  embed()'s rows."""
  ids_NxL: np.ndarray
  mask_NxL: np.ndarray
  labels_N: np.ndarray
  n_docs: int
  doc_R: np.ndarray | None = None
  first_R: np.ndarray | None = None
  pooling: str = "first"
  docs_N: np.ndarray | None = None

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
                 np.array([rows[i][1] for i in order]), windowing.pooling, docs_N=idx)
    order, ids, mask = _sorted_rows(prepared.tokens_many(idx), max_length, prepared.special)
    idx = idx[order]
    labels = np.asarray(prepared.label_index, np.int64)[idx] if len(prepared.labels) else np.full(len(idx), -1)
    return cls(ids, mask, labels, len(idx), docs_N=idx)

  @property
  def has_labels(self) -> bool:
    keep = self.labels_N >= 0
    return keep.sum() >= 4 and len(np.unique(self.labels_N[keep])) >= 2


@dataclasses.dataclass
class ValidationQueries:
  """Retrieval on the validation split: `rows`, the token rows of the queries (a ValidationSet, one row per
  query), searched over the documents of the validation ValidationSet (pool row p = its embed() row p). Query
  ids `q<p>` and document ids `d<p>` name pool rows; qrels judge each query's own document and its exact
  duplicates relevant."""
  rows: ValidationSet
  query_ids: list[str]
  doc_ids: list[str]
  qrels: dict[str, dict[str, int]]
  field: str
  n_without_query: int

  @classmethod
  def from_prepared(cls, prepared, docs: ValidationSet, *, field: str, max_length: int) -> "ValidationQueries":
    from jaxemb.data.prepare import tokenize
    from jaxemb.data.splits import text_key
    from jaxemb.objectives.pairs import read_queries
    from jaxemb.resolve import load_tokenizer
    queries = read_queries(prepared, field)
    records = prepared.records(docs.docs_N)
    pool = [p for p, r in enumerate(records) if r["source"] in queries]
    if not pool:
      raise ValueError(f"config.validation.metric='retrieval': none of the {len(records)} validation documents of "
                       f"{prepared.corpus_path} has a query in field {field!r}")
    texts = [queries[records[p]["source"]] for p in pool]
    order, ids, mask = _sorted_rows([np.asarray(t, np.int32) for t in tokenize(load_tokenizer(prepared.tokenizer_name),
                                                                                texts)], max_length, prepared.special)
    query_doc = [pool[i] for i in order]   # the pool row of each query row
    doc_ids = [f"d{p}" for p in range(len(records))]
    query_ids = [f"q{p}" for p in query_doc]
    qrels = self_judgements(query_ids, query_doc, doc_ids, [text_key(r["text"]) for r in records])
    return cls(ValidationSet(ids, mask, np.full(len(pool), -1), len(pool)), query_ids, doc_ids, qrels, field,
               len(records) - len(pool))

  def record(self) -> dict[str, Any]:
    """What export.json's interpolation record says about the retrieval set."""
    return {"query_field": self.field, "n_queries": len(self.query_ids), "n_docs": len(self.doc_ids),
            "docs_without_query": self.n_without_query,
            "n_queries_with_duplicates": sum(len(v) > 1 for v in self.qrels.values())}


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
  out = _geometry_scores(z_NxD, z0_NxD)
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


def _geometry_scores(z_NxD: np.ndarray, z0_NxD: np.ndarray) -> dict[str, Any]:
  u_NxD = geometry.l2_normalize(z_NxD)
  return {"val_uniformity": geometry.uniformity(u_NxD),
          "val_base_distance": float(np.mean(1.0 - np.sum(u_NxD * geometry.l2_normalize(z0_NxD), axis=1)))}


def retrieval_scores(q_QxD: np.ndarray, d_NxD: np.ndarray, vq: ValidationQueries,
                     base_ndcg_Q: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
  """Validation retrieval of query embeddings q (rows = vq.query_ids) over the pool's d (rows = vq.doc_ids):
  val_ndcg@10, val_mrr@10, val_recall@10 (means over the queries) and, with the base's per-query nDCG@10, the
  paired difference: val_diff, its 95% bootstrap interval over queries (val_ci_low / val_ci_high) and
  val_verdict. Returns (scores, per-query nDCG@10 float64 [Q])."""
  idx_QxK, score_QxK = dense_search(q_QxD, d_NxD, _RETRIEVAL_DEPTH)
  per = evaluate(idx_QxK, score_QxK, vq.query_ids, vq.doc_ids, vq.qrels)
  out: dict[str, Any] = {f"val_{m}": float(per[m].mean()) for m in ("ndcg@10", "mrr@10", "recall@10")}
  if base_ndcg_Q is not None:
    cmp = paired_bootstrap_mean(per["ndcg@10"], base_ndcg_Q)
    out.update(val_diff=cmp["diff"], val_ci_low=cmp["ci_low"], val_ci_high=cmp["ci_high"], val_verdict=cmp["verdict"])
  return out, per["ndcg@10"]


class Validator:
  """Scores an encoder on the validation set against the initial encoder's embeddings."""

  def __init__(self, cfg: ml_collections.ConfigDict, prepared, config, initial_encoder: Any):
    self.cfg, self.config = cfg, config
    v = cfg.validation
    if str(v.metric) not in METRICS:
      raise ValueError(f"config.validation.metric must be one of {METRICS}, got {v.metric!r}")
    self.key = score_key(cfg)
    field = None
    if str(v.metric) == "retrieval":  # a missing field stops the run before training, not at its end
      from jaxemb.data.readers import peek_fields
      field, present = query_field(cfg), peek_fields(prepared.corpus_path)
      if field not in present:
        raise ValueError(f"config.validation.metric='retrieval' reads each document's query from field {field!r}, "
                         f"which {prepared.corpus_path} does not have (fields seen: {', '.join(sorted(present))}); "
                         "set config.validation.query_field (or config.pairs.query_field)")
    windowing = Windowing(int(v.window), int(v.stride), str(v.pooling), int(v.max_windows)).check(2, config.max_tokens)
    self.vs = ValidationSet.from_prepared(prepared, max_docs=int(v.max_docs), max_length=int(v.max_length),
                                          seed=cfg.seed, windowing=windowing)
    self.queries = None
    if field is not None and self.vs is not None:
      self.queries = ValidationQueries.from_prepared(prepared, self.vs, field=field, max_length=int(v.max_length))
    self.initial = initial_encoder
    self._z0 = None
    self._base_cv = _COMPUTE  # the base's cv_probe_predictions (None: not computable), once computed
    self._base_retrieval = None  # the base's (query embeddings, per-query nDCG@10), once computed

  @property
  def available(self) -> bool:
    return self.vs is not None

  def z0(self) -> np.ndarray:
    if self._z0 is None:
      self._z0 = embed(self.initial, self.vs, self.config)
    return self._z0

  def base_cv(self):
    """The base's cv_probe_predictions (None without labels, with the retrieval metric or when not computable),
    computed once."""
    if self._base_cv is _COMPUTE:
      self._base_cv = (cv_probe_predictions(self.z0(), self.vs.labels_N, int(self.cfg.validation.folds),
                                            int(self.cfg.validation.repeats))
                       if self.vs.has_labels and self.queries is None else None)
    return self._base_cv

  def base_retrieval(self) -> tuple[np.ndarray, np.ndarray]:
    """The base's query embeddings and per-query nDCG@10, computed once."""
    if self._base_retrieval is None:
      q0 = embed(self.initial, self.queries.rows, self.config)
      self._base_retrieval = (q0, retrieval_scores(q0, self.z0(), self.queries)[1])
    return self._base_retrieval

  def _retrieval_scores(self, params_encoder) -> dict[str, Any]:
    """Geometry and retrieval scores of an encoder (None: the base, from the initial encoder's embeddings)."""
    q0, base_ndcg = self.base_retrieval()
    z = self.z0() if params_encoder is None else embed(params_encoder, self.vs, self.config)
    q = q0 if params_encoder is None else embed(params_encoder, self.queries.rows, self.config)
    return {**_geometry_scores(z, self.z0()), **retrieval_scores(q, z, self.queries, base_ndcg)[0]}

  def _scores(self, z: np.ndarray, cv: Any = _COMPUTE) -> dict[str, Any]:
    base = self.base_cv()
    return scores(z, self.z0(), self.vs, int(self.cfg.validation.folds), int(self.cfg.validation.repeats),
                  None if base is None else base.preds, cv)

  def score(self, params_encoder) -> dict[str, Any]:
    if self.queries is not None:
      return self._retrieval_scores(params_encoder)
    return self._scores(embed(params_encoder, self.vs, self.config))

  def choose_alpha(self, trained_encoder, alphas: list[float]) -> dict[str, Any]:
    """Scores of each interpolation weight and the chosen one (see the module docstring); a = 0 is the base
    (its embeddings are the initial encoder's: scored once, whether or not 0 is among the candidates)."""
    table = []
    for a in sorted(set([0.0, *alphas])):
      if self.queries is not None:  # a = 0: the base, scored from the initial encoder's embeddings
        s = self._retrieval_scores(None if a == 0.0 else interpolate(self.initial, trained_encoder, a))
      elif a == 0.0:  # the base: the initial encoder's embeddings and cross-validated predictions, computed once
        s = self._scores(self.z0(), cv=self.base_cv())
      else:
        s = self._scores(embed(interpolate(self.initial, trained_encoder, a), self.vs, self.config))
      table.append({"alpha": a, "candidate": a in alphas, **s})
    if self.queries is not None or self.vs.has_labels:
      best = max((r for r in table if r["candidate"]),
                 key=lambda r: (np.nan_to_num(r[self.key], nan=-1.0), -r["alpha"]))
      chosen, criterion = best["alpha"], self.key
    else:
      chosen, criterion = float(self.cfg.interpolate.default_alpha), "default_alpha (no label field)"
    base = self.base_cv()
    out = {"chosen_alpha": chosen, "criterion": criterion, "n_validation_docs": self.vs.n_docs,
           "cv": None if base is None else base.scheme, "table": table}
    if self.queries is not None:
      out["retrieval"] = self.queries.record()
    return out


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


def save_best(workdir: Path, step: int, key: str, score: float, encoder_tree: Any) -> None:
  """Persists the best step of validation.keep_best, so that a resumed run still knows it: the encoder as
  safetensors with its step, score and the score's name (`score_key`) in the file's metadata, written to a
  temporary name and renamed (one file: the weights and the step they belong to can never disagree)."""
  from safetensors.numpy import save_file
  flat = {_path_key(k): np.ascontiguousarray(v) for k, v in jax.tree_util.tree_flatten_with_path(encoder_tree)[0]}
  tmp = workdir / (BEST_WEIGHTS + ".tmp")
  save_file(flat, str(tmp), metadata={"step": str(int(step)), "metric": key, key: repr(float(score))})
  tmp.replace(workdir / BEST_WEIGHTS)


def load_best(workdir: Path, template: Any, resumed_at: int, key: str) -> tuple[float, int, Any] | None:
  """(score `key`, step, encoder tree shaped like `template`) of the best step saved at or before `resumed_at`,
  or None (no record, one from steps that will be trained again, or one scored by another metric)."""
  from safetensors import safe_open
  path = workdir / BEST_WEIGHTS
  if not path.exists():
    return None
  with safe_open(str(path), framework="numpy") as f:
    meta = f.metadata()
    # a record without "metric" was scored by the probe, the only metric there was when it was written
    if int(meta["step"]) > resumed_at or meta.get("metric", "val_probe_f1") != key:
      return None
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    tree = jax.tree_util.tree_unflatten(treedef, [f.get_tensor(_path_key(k)) for k, _ in leaves])
  return float(meta[key]), int(meta["step"]), tree
