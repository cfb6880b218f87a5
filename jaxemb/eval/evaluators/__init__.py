"""Evaluators: plug-ins selected by name from the config (the model is big_vision's `evaluators/`).

Each is a class in its own module, registered below, built once from the config (its settings read and
checked there, before any model loads) and then run unit by unit for each model (`base.Evaluator`). eval.py
knows none of them by name: it asks `build(cfg, plan)` for the selected ones and runs their units.
"""

from __future__ import annotations

from typing import Any

from jaxemb.eval.dataset import EvalError
from jaxemb.eval.evaluators.base import Context, Evaluator, ModelHandle, Plan, UnitResult
from jaxemb.eval.evaluators.finetune import FinetuneEvaluator
from jaxemb.eval.evaluators.geometry import GeometryEvaluator
from jaxemb.eval.evaluators.probe import ProbeEvaluator
from jaxemb.eval.evaluators.retrieval import BM25Evaluator, RetrievalEvaluator
from jaxemb.eval.evaluators.tfidf import TfidfEvaluator

# name -> class, in the order they run for each model (model-free ones, like tfidf, run after all models)
REGISTRY: dict[str, type[Evaluator]] = {c.name: c for c in (ProbeEvaluator, GeometryEvaluator, FinetuneEvaluator,
                                                            RetrievalEvaluator, TfidfEvaluator, BM25Evaluator)}
# the evaluators config.modes selects; geometry, tfidf and bm25 have their own switch
MODES = ("probe", "finetune", "retrieval")


def selected(cfg: Any) -> list[str]:
  """Names of the evaluators the config asks for: config.modes, config.geometry.enabled, config.tfidf and,
  with "retrieval" in config.modes, config.retrieval.bm25."""
  modes = [m.strip() for m in str(cfg.modes).split(",") if m.strip()]
  bad = sorted(set(modes) - set(MODES))
  if bad:
    raise EvalError(f"config.modes: unknown mode(s) {bad}; expected a comma-separated subset of {MODES}")
  if not modes and not cfg.tfidf:
    raise EvalError("nothing to do: config.modes is empty and config.tfidf is False")
  on = set(modes) | ({"geometry"} if cfg.geometry.enabled else set()) | ({"tfidf"} if cfg.tfidf else set())
  if "retrieval" in modes and "retrieval" in cfg and cfg.retrieval.bm25:
    on.add("bm25")
  if "retrieval" in modes and "retrieval" not in cfg:
    raise EvalError("config.modes names retrieval but the config has no retrieval section (use configs/retrieval.py)")
  return [name for name in REGISTRY if name in on]


def build(cfg: Any, plan: Plan) -> list[Evaluator]:
  """The selected evaluators, built (and their settings checked) from the config, in run order."""
  return [REGISTRY[name](cfg, plan) for name in selected(cfg)]


__all__ = ["REGISTRY", "MODES", "Context", "Evaluator", "ModelHandle", "Plan", "UnitResult", "build", "selected"]
