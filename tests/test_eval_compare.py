"""The verdict's paired bootstrap (jaxemb/metrics/compare.py) against hand-computed numbers and a plain loop."""

import numpy as np
import pytest

from jaxemb.metrics.compare import paired_bootstrap, resample_weights, verdict_rows, weighted_macro_f1
from jaxemb.metrics.classification import macro_f1

Y4 = np.array([0, 0, 1, 1])
P4 = np.array([0, 1, 1, 1])


def test_weighted_macro_f1_by_hand():
  # y=[0,0,1,1], pred=[0,1,1,1]: class 0 TP 1 FN 1 -> 2/3; class 1 TP 2 FP 1 -> 4/5; macro (2/3 + 4/5) / 2
  w = np.array([[1.0, 1, 1, 1],
                [2.0, 0, 1, 1],    # docs 0,0,2,3: every prediction right -> 1
                [0.0, 1, 0, 2]])   # docs 1,3,3: class 0 TP 0 FN 1 -> 0; class 1 TP 2 FP 1 -> 4/5; macro 0.4
  np.testing.assert_allclose(weighted_macro_f1(w, Y4, P4, 2), [(2 / 3 + 4 / 5) / 2, 1.0, 0.4])
  # a class in neither labels nor predictions of a resample is not averaged in (metrics.macro_f1's rule)
  np.testing.assert_allclose(weighted_macro_f1(np.array([[1.0, 1, 0, 0]]), Y4, np.array([0, 0, 2, 2]), 3), [1.0])
  assert weighted_macro_f1(np.ones((1, 4)), Y4, P4, 2)[0] == pytest.approx(macro_f1(Y4, P4, 2))


def test_resample_weights_count_draws():
  w = resample_weights(7, 600, seed=3)   # 600 resamples: drawn in blocks of compare.BLOCK
  assert w.shape == (600, 7) and (w.sum(1) == 7).all()
  draws = np.random.default_rng(3).integers(0, 7, size=(600, 7))   # one draw of every resample
  for b in (4, 255, 599):
    np.testing.assert_array_equal(w[b], np.bincount(draws[b], minlength=7))


def test_identical_predictions_are_no_different():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 40)
  pred = rng.integers(0, 3, (2, 40))
  r = paired_bootstrap(y, pred, pred.copy(), num_classes=3, n_boot=200)
  assert (r["diff"], r["ci_low"], r["ci_high"], r["seed_std"]) == (0.0, 0.0, 0.0, 0.0)
  assert r["verdict"] == "no different" and r["n_seeds"] == 2 and r["n_test"] == 40


def test_interval_equals_a_plain_resampling_loop():
  """The same resamples drawn one by one and scored with metrics.macro_f1 on the indexed documents."""
  rng = np.random.default_rng(1)
  t, n_boot, seed = 25, 300, 7
  y = rng.integers(0, 3, t)
  model = np.where(rng.random((2, t)) < 0.7, y, rng.integers(0, 3, (2, t)))
  base = np.where(rng.random((2, t)) < 0.5, y, rng.integers(0, 3, (2, t)))
  r = paired_bootstrap(y, model, base, num_classes=3, n_boot=n_boot, seed=seed)

  per_seed = [macro_f1(y, model[s], 3) - macro_f1(y, base[s], 3) for s in range(2)]
  draws = np.random.default_rng(seed).integers(0, t, size=(n_boot, t))
  stats = [np.mean([macro_f1(y[d], model[s][d], 3) - macro_f1(y[d], base[s][d], 3) for s in range(2)])
           for d in draws]
  assert r["diff"] == pytest.approx(np.mean(per_seed))
  assert r["seed_std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / np.sqrt(2))  # std ddof=1 of two values
  assert r["ci_low"] == pytest.approx(np.quantile(stats, 0.025))
  assert r["ci_high"] == pytest.approx(np.quantile(stats, 0.975))


def test_clear_differences_get_better_and_worse():
  y = np.arange(60) % 3
  right, wrong = y[None], ((y + 1) % 3)[None]   # every prediction right: F1 1; every one wrong: F1 0
  better = paired_bootstrap(y, right, wrong, num_classes=3, n_boot=200)
  assert better["diff"] == 1.0 and better["ci_low"] == 1.0 and better["verdict"] == "better"
  assert paired_bootstrap(y, wrong, right, num_classes=3, n_boot=200)["verdict"] == "worse"


def test_verdict_rows_pair_only_shared_seeds():
  y = np.array([0, 1, 0, 1])
  preds = {("base", "probe", 8, 0): y, ("base", "probe", 8, 1): y,
           ("adapted", "probe", 8, 0): 1 - y,         # seed 1 of the adapted model failed: only seed 0 pairs
           ("adapted", "finetune", 8, 0): y}          # no base fine-tune: no verdict
  rows = verdict_rows(preds, y, "base", ["base", "adapted"], num_classes=2, n_boot=50)
  assert len(rows) == 1
  assert rows[0]["mode"] == "probe" and rows[0]["n_seeds"] == 1 and rows[0]["diff"] == -1.0
  assert rows[0]["verdict"] == "worse"
