"""Fine-tuning: the encoder and the paper's head trained together on each (shots, seed) sample
(jaxemb/eval/finetune.py). Unit: "finetune".

config.finetune.shots ("" = config.shots) may list fewer shot sizes: fine-tuning costs far more than a probe.
A run whose loss turns NaN/Inf (FloatingPointError) becomes a failed row with its reason and the evaluation
goes on with the next run.
"""

from __future__ import annotations

import time
from typing import Any

from jaxemb.eval.dataset import EvalError
from jaxemb.eval.evaluators.base import Context, Evaluator, ModelHandle, Plan, UnitResult, settings_from
from jaxemb.eval.fewshot import parse_shots


class FinetuneEvaluator(Evaluator):
  name = "finetune"

  def __init__(self, cfg: Any, plan: Plan):
    super().__init__(cfg, plan)
    from jaxemb.eval.finetune import FinetuneSettings
    try:
      self.shots = parse_shots(cfg.finetune.shots) if cfg.finetune.shots else plan.shots
    except ValueError as e:
      raise EvalError(f"config.finetune.shots: {e}") from None
    self.settings = settings_from(FinetuneSettings, cfg.finetune, "finetune", max_length=cfg.max_length)

  def units(self) -> list[str]:
    return ["finetune"]

  def run(self, unit: str, model: ModelHandle, ctx: Context) -> UnitResult:
    from jaxemb.eval.finetune import finetune, frozen_subtrees
    enc = model.encoder()
    try:
      frozen_subtrees(enc.config, self.settings.freeze_layers)
    except ValueError as e:
      raise EvalError(str(e)) from None
    token_ids = enc.tokenize(ctx.data.texts, self.settings.max_length)
    pad_id = enc.tokenizer.pad_token_id if enc.tokenizer.pad_token_id is not None else enc.config.pad_token_id
    out = UnitResult()
    for shots in self.shots:
      for seed in self.plan.seeds:
        t0 = time.time()
        train_idx = ctx.sample(shots, seed)
        try:
          res = finetune(enc.params["encoder"], enc.config, token_ids, ctx.data.y_N, train_idx,
                         ctx.data.split_idx["validation"], ctx.eval_idx, num_classes=ctx.num_classes, seed=seed,
                         settings=self.settings, pad_id=pad_id)
        except FloatingPointError as e:
          out.failed.append({"model": model.spec, "mode": unit, "shots": shots, "seed": seed,
                             "reason": f"FloatingPointError: {e}", "seconds": round(time.time() - t0, 2)})
          ctx.log(f"  finetune shots={shots} seed={seed}: FAILED ({e}); going on")
          continue
        out.add_run(ctx, model.spec, unit, shots, seed, res.probs_ExC,
                    {"n_train": int(len(train_idx)), "best_step": res.best_step, "steps": res.steps_run,
                     "seconds": round(time.time() - t0, 2)})
        ctx.log(f"  finetune shots={shots} seed={seed}: {res.steps_run} steps, best val macro-F1 "
                f"{res.best_val_f1:.3f} at step {res.best_step}, test macro-F1 {out.runs[-1]['macro_f1']:.3f} "
                f"({time.time() - t0:.1f}s)")
    return out
