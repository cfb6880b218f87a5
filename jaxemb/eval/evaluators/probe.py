"""Frozen-encoder probe: heads trained on the model's cached embeddings, every (shots, seed) run of a head in
one jitted program (jaxemb/eval/probe.py).

Units: one per (head, class weight): "probe" (the paper's head), "probe_logreg" (logistic regression), and
with config.probe.class_weight listing "balanced" also "probe_balanced" / "probe_logreg_balanced".
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from jaxemb.eval.dataset import EvalError
from jaxemb.eval.evaluators.base import Context, Evaluator, ModelHandle, Plan, UnitResult, csv_list, settings_from

HEADS = {"probe": "probe", "logreg": "probe_logreg"}   # config.probe.heads name -> mode of its rows


class ProbeEvaluator(Evaluator):
  name = "probe"

  def __init__(self, cfg: Any, plan: Plan):
    super().__init__(cfg, plan)
    from jaxemb.eval.probe import CLASS_WEIGHTS, ProbeSettings
    heads = csv_list(cfg.probe.heads, "probe.heads")
    if set(heads) - set(HEADS):
      raise EvalError(f"config.probe.heads must be a subset of probe,logreg; got {heads}")
    weights = csv_list(cfg.probe.class_weight, "probe.class_weight")
    if set(weights) - set(CLASS_WEIGHTS):
      raise EvalError(f"config.probe.class_weight must be a subset of {','.join(CLASS_WEIGHTS)}; got {weights}")
    settings = settings_from(ProbeSettings, cfg.probe, "probe")
    self.by_unit: dict[str, tuple[str, str, Any]] = {}   # mode -> (head, class weight, settings)
    for head in heads:
      # logistic regression is convex: it tolerates a larger rate (config.probe.logreg_lr)
      s = dataclasses.replace(settings, lr=cfg.probe.logreg_lr) if head == "logreg" else settings
      for w in weights:
        self.by_unit[HEADS[head] + ("_balanced" if w == "balanced" else "")] = (head, w, s)

  def units(self) -> list[str]:
    return list(self.by_unit)

  def run(self, unit: str, model: ModelHandle, ctx: Context) -> UnitResult:
    from jaxemb.eval.probe import train_probe
    head, weight, settings = self.by_unit[unit]
    z_NxD = model.embeddings()
    grid = [(shots, seed) for shots in self.plan.shots for seed in self.plan.seeds]
    t0 = time.time()
    res = train_probe(z_NxD, ctx.data.y_N, [ctx.sample(*g) for g in grid], [g[1] for g in grid],
                      ctx.data.split_idx["validation"], ctx.eval_idx, head_kind=head,
                      num_classes=ctx.num_classes, settings=settings, group_per_run=[g[0] for g in grid],
                      class_weight=weight)
    out = UnitResult()
    for r, (shots, seed) in enumerate(grid):
      out.add_run(ctx, model.spec, unit, shots, seed, res.probs_RxExC[r],
                  {"n_train": int(len(ctx.sample(shots, seed))), "best_step": int(res.best_step_R[r]),
                   "steps": int(res.steps_run_R[r])})
    ctx.log(f"  {unit}: {len(grid)} runs in {time.time() - t0:.1f}s; test macro-F1 mean {out.test_f1():.3f}")
    return out
