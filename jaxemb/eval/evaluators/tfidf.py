"""The non-neural reference: TF-IDF + logistic regression (jaxemb/eval/tfidf.py) on the same few-shot
samples as the neural rows. Runs once (not per model); its rows carry model "tfidf".

Units: "tfidf", and "tfidf_balanced" when config.tfidf_class_weight lists "balanced".
"""

from __future__ import annotations

import time
from typing import Any

from jaxemb.eval.dataset import EvalError
from jaxemb.eval.evaluators.base import Context, Evaluator, Plan, UnitResult, csv_list


class TfidfEvaluator(Evaluator):
  name = "tfidf"
  per_model = False

  def __init__(self, cfg: Any, plan: Plan):
    super().__init__(cfg, plan)
    from jaxemb.eval.tfidf import CLASS_WEIGHTS, TfidfSettings
    try:
      c_grid = tuple(float(c) for c in csv_list(cfg.tfidf_c_grid, "tfidf_c_grid"))
    except ValueError as e:
      raise EvalError(f"config.tfidf_c_grid: {e}") from None
    weights = csv_list(cfg.tfidf_class_weight, "tfidf_class_weight")
    if set(weights) - set(CLASS_WEIGHTS):
      raise EvalError(f"config.tfidf_class_weight must be a subset of {','.join(CLASS_WEIGHTS)}; got {weights}")
    self.settings = TfidfSettings(c_grid=c_grid)   # the vectoriser's settings are the module's, not the config's
    self.by_unit = {"tfidf" + ("_balanced" if w == "balanced" else ""): w for w in weights}

  def units(self) -> list[str]:
    return list(self.by_unit)

  def run(self, unit: str, model: None, ctx: Context) -> UnitResult:
    from jaxemb.eval.tfidf import tfidf_logreg
    t0 = time.time()
    out = UnitResult()
    memo: dict[bytes, tuple] = {}  # the seeds of "all" share one training set, and lbfgs is deterministic
    for shots in self.plan.shots:
      for seed in self.plan.seeds:
        idx = ctx.sample(shots, seed)
        if idx.tobytes() not in memo:
          memo[idx.tobytes()] = tfidf_logreg(ctx.data.texts, ctx.data.y_N, idx, ctx.data.split_idx["validation"],
                                             ctx.eval_idx, num_classes=ctx.num_classes, settings=self.settings,
                                             seed=0, class_weight=self.by_unit[unit])
        probs, info = memo[idx.tobytes()]
        out.add_run(ctx, self.name, unit, shots, seed, probs,
                    {"n_train": int(len(idx)), "C": info["C"], "n_iter": info["n_iter"],
                     "converged": info["converged"], "c_grid_fits": info["grid"]})
    n_bad = sum(not r["converged"] for r in out.runs if r["split"] == "test")
    ctx.log(f"{unit}: {len(out.preds)} runs in {time.time() - t0:.1f}s; test macro-F1 mean {out.test_f1():.3f}"
            + (f"; {n_bad} chosen fit(s) did not converge" if n_bad else ""))
    return out
