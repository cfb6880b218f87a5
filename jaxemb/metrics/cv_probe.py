"""The cross-validated probe that scores a validation split: out-of-fold predictions of a logistic regression
probe on the validation documents alone (the training-time validator, jaxemb/train/validation.py, chooses the
interpolation weight and the kept step by it)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class CVPredictions(NamedTuple):
  """Out-of-fold predictions of the cross-validated probe and the scheme that made them."""
  keep_N: np.ndarray      # bool [N]: the documents scored (labelled, of a class with >= 2 documents)
  y: np.ndarray           # int [N']: their labels
  preds: np.ndarray       # int [repeats, N']: one row of out-of-fold predictions per fold partition
  scheme: dict[str, Any]  # folds, repeats, documents and classes kept and dropped (export.json, the log)


CV_SCHEME = ("stratified k-fold over the classes with >= 2 validation documents, k = validation.folds (fewer "
             "only when the largest class is smaller), repeated with validation.repeats seeded partitions; a "
             "class with fewer than k documents is spread over fewer folds, so each held-out document still has "
             "a training document of its class; single-document classes cannot be both and are left out")


def cv_probe_predictions(z_NxD: np.ndarray, labels_N: np.ndarray, folds: int, repeats: int = 1
                         ) -> CVPredictions | None:
  """Out-of-fold predictions of a logistic regression probe (standardised features, C = 1), one row per fold
  partition (seeds 0 .. repeats-1), under the scheme `CV_SCHEME`: the number of folds does not shrink to the
  smallest class, whose few documents are spread over fewer folds. None when fewer than 2 classes or 2 folds
  are possible."""
  import warnings
  from sklearn.linear_model import LogisticRegression
  from sklearn.model_selection import StratifiedKFold, cross_val_predict
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  labelled = labels_N >= 0
  classes, counts = np.unique(labels_N[labelled], return_counts=True)
  keep = labelled & np.isin(labels_N, classes[counts >= 2])
  x, y = z_NxD[keep], labels_N[keep]
  kept = counts[counts >= 2]
  k = int(min(folds, kept.max())) if len(kept) else 0
  if len(kept) < 2 or k < 2:
    return None
  scheme = {"scheme": CV_SCHEME, "folds": k, "repeats": max(int(repeats), 1), "n_docs": int(keep.sum()),
            "n_classes": int(len(kept)), "smallest_class_docs": int(kept.min()),
            "dropped_docs": int(labelled.sum() - keep.sum()),
            "dropped_classes": [int(c) for c in classes[counts < 2]]}
  model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
  with warnings.catch_warnings():  # "least populated class has only m members": intended, recorded in scheme
    warnings.filterwarnings("ignore", message=".*least populated class.*", category=UserWarning)
    preds = np.stack([cross_val_predict(model, x, y, cv=StratifiedKFold(k, shuffle=True, random_state=r))
                      for r in range(scheme["repeats"])])
  return CVPredictions(keep, y, preds, scheme)


def cv_probe_f1(z_NxD: np.ndarray, labels_N: np.ndarray, folds: int, repeats: int = 1) -> float:
  """Macro-F1 of the cross-validated probe (cv_probe_predictions), mean over the fold partitions."""
  return mean_macro_f1(cv_probe_predictions(z_NxD, labels_N, folds, repeats))


def mean_macro_f1(cv: CVPredictions | None) -> float:
  """Macro-F1 of the out-of-fold predictions, mean over the fold partitions (NaN: nothing to score)."""
  from sklearn.metrics import f1_score
  if cv is None:
    return float("nan")
  return float(np.mean([f1_score(cv.y, p, average="macro") for p in cv.preds]))
