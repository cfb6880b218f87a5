"""Retrieval: each model searches a document pool with its embeddings; BM25 is the reference row and each
dense model's fusion with BM25 a hybrid row (jaxemb/eval/retrieval.py; the set: jaxemb/eval/retrieval_data.py).

Units (= the `mode` of their rows):
- per model: "retrieval" (exact dense search), and with config.retrieval.bm25 one hybrid unit per fusion in
  config.retrieval.fusions: "retrieval_rrf", "retrieval_minmax" (weight chosen on the validation queries);
- once, model "bm25": "retrieval".
Rows: one per (model, mode, split) with the metrics of retrieval.METRICS (mean over the split's queries),
n_queries, n_docs and, for hybrids, the chosen weight and its validation table. Per-query test scores go to
the verdict: every row against the base's dense row and against BM25's, paired over test queries
(compare.score_verdict_rows, config.retrieval.verdict_metric).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxemb.eval.dataset import EvalError
from jaxemb.eval.evaluators.base import Context, Evaluator, ModelHandle, Plan, UnitResult, csv_list, settings_from

FUSIONS = ("rrf", "minmax")
_SHARED = "retrieval"   # ctx.cache key of the RetrievalTask both evaluators share


@dataclasses.dataclass(frozen=True)
class RetrievalSettings:
  query_field: str
  pool: str
  max_queries: int
  k: int
  query_block: int
  doc_block: int
  bm25: bool
  fusions: str
  weight_grid: str
  default_weight: float
  verdict_metric: str


class RetrievalTask:
  """What every retrieval unit of one evaluation shares: the set, BM25's run, each model's dense run."""

  def __init__(self, ctx: Context, settings: RetrievalSettings):
    from jaxemb.eval import retrieval_data
    self.ctx, self.s = ctx, settings
    self.rs = retrieval_data.load(ctx.cfg)
    for note in self.rs.notes:
      ctx.log(f"data: {note}")
    self.splits = {s: self.rs.split_queries(s) for s in ("validation", "test")}
    self._bm25 = None
    self._dense: dict[str, tuple[np.ndarray, np.ndarray]] = {}

  def bm25_run(self) -> tuple[np.ndarray, np.ndarray]:
    if self._bm25 is None:
      from jaxemb.eval.retrieval import BM25
      t0 = time.time()
      self._bm25 = BM25(self.rs.doc_texts).search(self.rs.query_texts, self.s.k)
      self.ctx.log(f"  bm25: indexed {len(self.rs.doc_texts)} documents and searched {len(self.rs.query_texts)} "
                   f"queries in {time.time() - t0:.1f}s")
    return self._bm25

  def embed(self, model: ModelHandle, texts: list[str], what: str) -> np.ndarray:
    """float32 [N, D]: THE call site that turns texts into vectors for retrieval (cached per model and texts).
    Today the encoder's truncating path (the first config.max_length tokens); a whole-document path replaces
    this one call."""
    from jaxemb.eval.cache import cached_embeddings
    cfg = self.ctx.cfg

    def embed_all() -> np.ndarray:
      try:
        return model.encoder().embed(texts, batch_size=cfg.embed_batch_size, max_length=cfg.max_length,
                                     dtype=cfg.embed_dtype)
      except ValueError as e:
        raise EvalError(f"model {model.spec!r}: {e}") from None

    t0 = time.time()
    cache_dir = Path(cfg.embed.cache_dir).expanduser() if cfg.embed.cache_dir else self.ctx.out / "cache"
    z, _ = cached_embeddings(model.spec, texts, max_length=cfg.max_length, cache_dir=cache_dir, dtype=cfg.embed_dtype,
                             log=self.ctx.log, embed_fn=embed_all)
    model.timings[f"embed_{what}"] = time.time() - t0
    return z

  def dense_run(self, model: ModelHandle) -> tuple[np.ndarray, np.ndarray]:
    if model.spec not in self._dense:
      from jaxemb.eval.retrieval import dense_search
      d_NxD = self.embed(model, self.rs.doc_texts, "documents")
      q_QxD = self.embed(model, self.rs.query_texts, "queries")
      t0 = time.time()
      self._dense[model.spec] = dense_search(q_QxD, d_NxD, self.s.k, query_block=self.s.query_block,
                                             doc_block=self.s.doc_block)
      model.timings["search"] = time.time() - t0
    return self._dense[model.spec]

  def metrics(self, run: tuple[np.ndarray, np.ndarray], split: str) -> dict[str, np.ndarray]:
    """Per-query metrics of the `split` queries of a run over every query."""
    q = self.splits[split]
    return self.metrics_of((run[0][q], run[1][q]), split)

  def metrics_of(self, run_sub: tuple[np.ndarray, np.ndarray], split: str) -> dict[str, np.ndarray]:
    """Per-query metrics of a run over the `split` queries only (rows in the split's order)."""
    from jaxemb.eval.retrieval import evaluate
    ids = [self.rs.query_ids[i] for i in self.splits[split]]
    return evaluate(run_sub[0], run_sub[1], ids, self.rs.doc_ids, self.rs.qrels)

  def result(self, model: str, mode: str, run, extra: dict[str, Any] | None = None) -> UnitResult:
    out = UnitResult()
    for split in ("validation", "test"):
      if not len(self.splits[split]):
        continue
      per = self.metrics(run, split)
      out.runs.append({"model": model, "mode": mode, "shots": None, "seed": None, "split": split,
                       **{m: float(v.mean()) for m, v in per.items()}, "n_queries": int(len(self.splits[split])),
                       "n_docs": len(self.rs.doc_ids), **(extra or {})})
      if split == "test":
        out.scores = {m: v.astype(np.float64) for m, v in per.items()}
    test = out.runs[-1]
    self.ctx.log(f"  {mode}: test nDCG@10 {test['ndcg@10']:.3f}, MRR@10 {test['mrr@10']:.3f}, R@10 "
                 f"{test['recall@10']:.3f} ({test['n_queries']} queries, {test['n_docs']} documents)")
    return out


def _settings(cfg: Any) -> RetrievalSettings:
  from jaxemb.eval.retrieval import METRICS
  s = settings_from(RetrievalSettings, cfg.retrieval, "retrieval")
  fusions = [f.strip() for f in str(s.fusions).split(",") if f.strip()]
  if set(fusions) - set(FUSIONS):
    raise EvalError(f"config.retrieval.fusions must be a subset of {','.join(FUSIONS)}; got {s.fusions!r}")
  try:
    grid = [float(w) for w in csv_list(s.weight_grid, "retrieval.weight_grid")]
  except ValueError as e:
    raise EvalError(f"config.retrieval.weight_grid: {e}") from None
  if any(not 0 <= w <= 1 for w in grid + [s.default_weight]):
    raise EvalError("config.retrieval.weight_grid and default_weight must lie in [0, 1]")
  if s.k < 100 or s.query_block < 1 or s.doc_block < 1:
    raise EvalError(f"config.retrieval: k must be >= 100 (Recall@100, MAP@100), blocks >= 1; got k={s.k}")
  if s.verdict_metric not in METRICS:
    raise EvalError(f"config.retrieval.verdict_metric must be one of {METRICS}; got {s.verdict_metric!r}")
  return s


def _task(ctx: Context, settings: RetrievalSettings) -> RetrievalTask:
  if _SHARED not in ctx.cache:
    ctx.cache[_SHARED] = RetrievalTask(ctx, settings)
  return ctx.cache[_SHARED]


class RetrievalEvaluator(Evaluator):
  name = "retrieval"
  needs_labels = False

  def __init__(self, cfg: Any, plan: Plan):
    super().__init__(cfg, plan)
    self.s = _settings(cfg)
    fusions = [f.strip() for f in str(self.s.fusions).split(",") if f.strip()] if self.s.bm25 else []
    self.by_unit = {"retrieval": None, **{f"retrieval_{f}": f for f in fusions}}
    self.grid = [float(w) for w in csv_list(self.s.weight_grid, "retrieval.weight_grid")]

  def prepare(self, ctx: Context) -> dict[str, Any]:
    task = _task(ctx, self.s)
    return {**task.rs.info, "digest": task.rs.digest()}

  def units(self) -> list[str]:
    return list(self.by_unit)

  def run(self, unit: str, model: ModelHandle, ctx: Context) -> UnitResult:
    task = _task(ctx, self.s)
    dense = task.dense_run(model)
    fusion = self.by_unit[unit]
    if fusion is None:
      return task.result(model.spec, unit, dense)
    from jaxemb.eval.retrieval import choose_weight, fuse
    bm25 = task.bm25_run()
    val = task.splits["validation"]
    if len(val):
      sub = lambda run: (run[0][val], run[1][val])
      score = lambda w: task.metrics_of(fuse(sub(dense), sub(bm25), w, fusion, self.s.k), "validation")["ndcg@10"].mean()
      w, table = choose_weight(score, self.grid, self.s.default_weight)
    else:
      w, table = self.s.default_weight, {}
    ctx.log(f"  {unit}: weight of the dense run {w:g} (validation nDCG@10 by weight: "
            + (", ".join(f"{k:g}: {v:.3f}" for k, v in table.items()) or "no validation queries, the default")
            + ")")
    return task.result(model.spec, unit, fuse(dense, bm25, w, fusion, self.s.k),
                       {"weight": w, "weight_table": {f"{k:g}": v for k, v in table.items()}})

  def verdict_rows(self, scores: dict[tuple[str, str], dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    from jaxemb.metrics.compare import score_verdict_rows
    rows = {k: v for k, v in scores.items() if k[1].startswith("retrieval")}
    v = self.cfg.verdict
    return score_verdict_rows(rows, [(self.plan.models[0], "retrieval"), ("bm25", "retrieval")],
                              metric=self.s.verdict_metric, n_boot=v.n_boot, seed=v.seed, level=v.level)


class BM25Evaluator(Evaluator):
  name = "bm25"
  per_model = False
  needs_labels = False

  def __init__(self, cfg: Any, plan: Plan):
    super().__init__(cfg, plan)
    self.s = _settings(cfg)

  def units(self) -> list[str]:
    return ["retrieval"]

  def run(self, unit: str, model: None, ctx: Context) -> UnitResult:
    task = _task(ctx, self.s)
    return task.result("bm25", unit, task.bm25_run(), {"tokenizer": "lowercase, (?u)\\b\\w\\w+\\b, English stop "
                                                                    "words (bm25s), no stemming"})
