"""Evaluator metrics (NumPy, from the confusion matrix / rank statistics) against scikit-learn."""

import numpy as np
import pytest
from sklearn import metrics as skm

from jaxemb.metrics.classification import (average_ranks, binary_auroc, classification_metrics, confusion_matrix,
                                 macro_auroc_ovr, macro_f1, mean_std)

# Fixed arrays: 4 classes; class 3 is never predicted (precision 0 by convention), class 2 is predicted
# once wrongly; scores have ties.
Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 0, 1, 2, 3, 3])
Y_PRED = np.array([0, 0, 1, 1, 1, 0, 1, 2, 0, 1, 0, 0, 1, 2, 2, 1])


def _scores(n_classes=4, seed=0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(len(Y_TRUE), n_classes)) + 1.5 * np.eye(n_classes)[Y_TRUE]
  logits = np.round(logits, 1)  # creates ties in the rank statistics
  return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_confusion_matrix_matches_sklearn():
  np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED, 4), skm.confusion_matrix(Y_TRUE, Y_PRED))


def test_prf_accuracy_match_sklearn():
  m = classification_metrics(Y_TRUE, Y_PRED, None, 4)
  assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y_TRUE, Y_PRED))
  assert m["macro_f1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="macro", zero_division=0))
  assert m["weighted_f1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="weighted", zero_division=0))
  assert m["macro_precision"] == pytest.approx(skm.precision_score(Y_TRUE, Y_PRED, average="macro", zero_division=0))
  assert m["macro_recall"] == pytest.approx(skm.recall_score(Y_TRUE, Y_PRED, average="macro", zero_division=0))
  assert macro_f1(Y_TRUE, Y_PRED, 4) == pytest.approx(m["macro_f1"])


def test_macro_averages_skip_classes_absent_from_both_true_and_pred():
  # num_classes=6 but classes 4 and 5 occur nowhere: sklearn's default label set ignores them, so do we.
  m = classification_metrics(Y_TRUE, Y_PRED, None, 6)
  assert m["macro_f1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="macro", zero_division=0))
  # a class only predicted (never true) counts in the macro average with F1 0, as in sklearn
  y_pred = Y_PRED.copy()
  y_pred[0] = 5
  assert macro_f1(Y_TRUE, y_pred, 6) == pytest.approx(skm.f1_score(Y_TRUE, y_pred, average="macro",
                                                                     zero_division=0))


def test_auroc_matches_sklearn_with_ties():
  scores = _scores()
  auc, excluded = macro_auroc_ovr(Y_TRUE, scores)
  assert excluded == []
  assert auc == pytest.approx(skm.roc_auc_score(Y_TRUE, scores, multi_class="ovr", average="macro"))
  for c in range(4):
    assert binary_auroc(Y_TRUE == c, scores[:, c]) == pytest.approx(skm.roc_auc_score(Y_TRUE == c, scores[:, c]))


def test_auroc_excludes_and_reports_classes_absent_from_y_true():
  scores = _scores(n_classes=5)  # class 4 never occurs in Y_TRUE
  auc, excluded = macro_auroc_ovr(Y_TRUE, scores)
  assert excluded == [4]
  expected = np.mean([skm.roc_auc_score(Y_TRUE == c, scores[:, c]) for c in range(4)])
  assert auc == pytest.approx(expected)
  m = classification_metrics(Y_TRUE, scores.argmax(1), scores, 5)
  assert m["auroc_excluded_classes"] == [4]


def test_average_ranks_match_scipy():
  from scipy.stats import rankdata
  x = np.array([3.0, 1.0, 3.0, 2.0, 1.0, 3.0, 0.5])
  np.testing.assert_allclose(average_ranks(x), rankdata(x))


def test_mean_std_over_seeds():
  assert mean_std([0.5, 0.7]) == pytest.approx((0.6, np.std([0.5, 0.7], ddof=1)))
  assert mean_std([0.4]) == (0.4, 0.0)
  assert mean_std([0.4, float("nan")]) == (0.4, 0.0)
