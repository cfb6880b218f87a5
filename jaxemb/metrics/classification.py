"""Classification metrics in NumPy, from the confusion matrix and from rank statistics.

Written out rather than taken from scikit-learn so that every definition is visible in one place;
tests/test_eval_metrics.py checks each one against scikit-learn on fixed arrays.

Conventions (the same as scikit-learn's defaults):
- macro / weighted averages run over the classes present in y_true OR y_pred; a class with no predictions
  has precision 0, a class with no true examples has recall 0 (zero_division=0);
- F1 = 2 TP / (2 TP + FP + FN), which equals 2PR / (P + R) wherever that is defined;
- AUROC is one-vs-rest per class, macro-averaged over the classes that have at least one positive AND one
  negative example in y_true. The others are excluded and named in the result, never silently averaged in.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def confusion_matrix(y_true_N: np.ndarray, y_pred_N: np.ndarray, num_classes: int) -> np.ndarray:
  """CxC int64 counts; rows are true classes, columns predicted classes."""
  y_true_N = np.asarray(y_true_N, np.int64)
  y_pred_N = np.asarray(y_pred_N, np.int64)
  cm_CxC = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm_CxC, (y_true_N, y_pred_N), 1)
  return cm_CxC


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def f1_per_class(tp_C, true_C, pred_C, xp=np):
  """F1 = 2 TP / (true + predicted) per class (0 where a class is neither true nor predicted) and which
  classes are present. xp: numpy, or jax.numpy inside jit (the probe's early stopping)."""
  den_C = true_C + pred_C
  return xp.where(den_C > 0, 2 * tp_C / xp.maximum(den_C, 1), 0.0), den_C > 0


def per_class_prf(cm_CxC: np.ndarray) -> dict[str, np.ndarray]:
  """Per-class precision, recall, F1 and support (true count), each a length-C array."""
  tp_C = np.diag(cm_CxC).astype(np.float64)
  pred_C = cm_CxC.sum(0).astype(np.float64)
  true_C = cm_CxC.sum(1).astype(np.float64)
  f1_C, present_C = f1_per_class(tp_C, true_C, pred_C)
  return {
      "precision": _safe_div(tp_C, pred_C),
      "recall": _safe_div(tp_C, true_C),
      "f1": f1_C,
      "support": true_C,
      "present": present_C,
  }


def average_ranks(x_N: np.ndarray) -> np.ndarray:
  """1-based ranks of x, ties given the average of the ranks they span (as scipy.stats.rankdata)."""
  x_N = np.asarray(x_N)
  order_N = np.argsort(x_N, kind="mergesort")
  sorted_N = x_N[order_N]
  # Boundaries of runs of equal values; every member of a run gets the run's mean rank.
  new_run_N = np.concatenate([[True], sorted_N[1:] != sorted_N[:-1]])
  run_id_N = np.cumsum(new_run_N) - 1
  run_start = np.flatnonzero(new_run_N)
  run_end = np.concatenate([run_start[1:], [len(x_N)]])
  mean_rank_R = (run_start + 1 + run_end) / 2.0  # mean of ranks start+1 .. end
  ranks_N = np.empty(len(x_N), np.float64)
  ranks_N[order_N] = mean_rank_R[run_id_N]
  return ranks_N


def binary_auroc(is_pos_N: np.ndarray, score_N: np.ndarray) -> float:
  """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half)."""
  is_pos_N = np.asarray(is_pos_N, bool)
  n_pos = int(is_pos_N.sum())
  n_neg = len(is_pos_N) - n_pos
  if n_pos == 0 or n_neg == 0:
    raise ValueError("AUROC needs at least one positive and one negative example")
  ranks_N = average_ranks(score_N)
  u = ranks_N[is_pos_N].sum() - n_pos * (n_pos + 1) / 2.0
  return float(u / (n_pos * n_neg))


def macro_auroc_ovr(y_true_N: np.ndarray, scores_NxC: np.ndarray) -> tuple[float, list[int]]:
  """Macro one-vs-rest AUROC and the list of classes excluded (no positive or no negative in y_true).

  Returns NaN when no class is evaluable.
  """
  y_true_N = np.asarray(y_true_N)
  num_classes = scores_NxC.shape[1]
  aucs, excluded = [], []
  for c in range(num_classes):
    is_pos_N = y_true_N == c
    if is_pos_N.all() or not is_pos_N.any():
      excluded.append(c)
      continue
    aucs.append(binary_auroc(is_pos_N, scores_NxC[:, c]))
  return (float(np.mean(aucs)) if aucs else float("nan")), excluded


def classification_metrics(y_true_N: np.ndarray, y_pred_N: np.ndarray, scores_NxC: np.ndarray | None,
                           num_classes: int) -> dict[str, Any]:
  """accuracy, macro_f1, weighted_f1, macro_precision, macro_recall, auroc (+ auroc_excluded_classes).

  scores_NxC: any per-class scores where larger means more likely (probabilities, logits); None skips AUROC.
  """
  y_true_N = np.asarray(y_true_N, np.int64)
  y_pred_N = np.asarray(y_pred_N, np.int64)
  if len(y_true_N) == 0:
    raise ValueError("cannot compute metrics on an empty set")
  cm_CxC = confusion_matrix(y_true_N, y_pred_N, num_classes)
  prf = per_class_prf(cm_CxC)
  present_C = prf["present"]
  support_C = prf["support"]
  out: dict[str, Any] = {
      "accuracy": float(np.trace(cm_CxC) / cm_CxC.sum()),
      "macro_f1": float(prf["f1"][present_C].mean()),
      "weighted_f1": float((prf["f1"] * support_C).sum() / support_C.sum()),
      "macro_precision": float(prf["precision"][present_C].mean()),
      "macro_recall": float(prf["recall"][present_C].mean()),
  }
  if scores_NxC is not None:
    out["auroc"], out["auroc_excluded_classes"] = macro_auroc_ovr(y_true_N, np.asarray(scores_NxC))
  return out


def macro_f1(y_true_N, y_pred_N, num_classes: int, xp=np):
  """Macro-F1 alone (early stopping on validation, TF-IDF's choice of C): a float with xp=numpy; with
  xp=jax.numpy a float32 scalar array, usable inside jit (the probe's early stopping)."""
  eye_CxC = xp.eye(num_classes, dtype=np.float64 if xp is np else np.float32)  # jax runs 32-bit
  t_NxC, p_NxC = eye_CxC[y_true_N], eye_CxC[y_pred_N]  # one-hot rows
  f1_C, present_C = f1_per_class((t_NxC * p_NxC).sum(0), t_NxC.sum(0), p_NxC.sum(0), xp)
  f1 = (f1_C * present_C).sum() / xp.maximum(present_C.sum(), 1)
  return float(f1) if xp is np else f1


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample std (ddof=1) over seeds, ignoring NaNs; a single value gets std 0, not NaN."""
  v = np.asarray([x for x in values if x is not None], np.float64)
  v = v[~np.isnan(v)]
  if len(v) == 0:
    return float("nan"), float("nan")
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
