"""The frozen-encoder probe on cached embeddings: learns separable data, early-stops, vmaps a grid."""

import numpy as np
import pytest

from jaxemb.eval.fewshot import sample_few_shot
from jaxemb.metrics.classification import macro_f1
from jaxemb.eval.probe import (ProbeSettings, class_weights, train_probe,
                              weighted_cross_entropy)

SETTINGS = ProbeSettings(lr=3e-3, weight_decay=1e-2, dropout=0.1, max_steps=150, eval_every=10, patience=4,
                         batch_size=64)


def _separable(n=240, d=16, c=4, seed=0):
  """c well-separated Gaussian blobs (centre distance ~ 8 sigma): any sane head reaches macro-F1 ~1."""
  rng = np.random.default_rng(seed)
  y = np.arange(n) % c
  centres = rng.normal(size=(c, d)) * 4.0
  x = (centres[y] + rng.normal(size=(n, d))).astype(np.float32) * 0.05 + 3.0  # odd scale/offset on purpose
  idx = rng.permutation(n)
  return x, y, idx[:160], idx[160:200], idx[200:]


@pytest.mark.parametrize("head", ["probe", "logreg"])
def test_probe_reaches_perfect_macro_f1_on_separable_embeddings(head):
  x, y, tr, va, te = _separable()
  grid = [(shots, seed) for shots in (4, "all") for seed in (0, 1)]
  train_sets = [tr[sample_few_shot(y[tr], shots, seed)] for shots, seed in grid]
  eval_idx = np.concatenate([va, te])
  res = train_probe(x, y, train_sets, [s for _, s in grid], va, eval_idx, head_kind=head, num_classes=4,
                    settings=SETTINGS, group_per_run=[sh for sh, _ in grid])
  assert res.probs_RxExC.shape == (4, len(eval_idx), 4)
  np.testing.assert_allclose(res.probs_RxExC.sum(-1), 1.0, atol=1e-5)
  for r in range(len(grid)):
    assert macro_f1(y[te], res.probs_RxExC[r, len(va):].argmax(-1), 4) >= 0.99
  assert (res.best_val_f1_R >= 0.99).all()
  assert (res.best_step_R <= res.steps_run_R).all()


def test_early_stopping_on_unlearnable_labels():
  # random labels: validation F1/loss stop improving quickly, patience (4 evaluations) ends every run early
  rng = np.random.default_rng(2)
  x = rng.normal(size=(200, 16)).astype(np.float32)
  y = rng.integers(0, 3, 200)
  res = train_probe(x, y, [np.arange(120)] * 2, [0, 1], np.arange(120, 160), np.arange(160, 200),
                    head_kind="probe", num_classes=3, settings=SETTINGS)
  assert (res.steps_run_R < SETTINGS.max_steps).all()
  assert (res.steps_run_R - res.best_step_R == SETTINGS.patience * SETTINGS.eval_every).all()


def test_seeds_are_independent_runs_and_reproducible():
  x, y, tr, va, te = _separable(seed=1)
  x = x + np.random.default_rng(5).normal(size=x.shape).astype(np.float32) * 0.2  # make it non-trivial
  sets = [tr[sample_few_shot(y[tr], 2, s)] for s in (0, 1)]
  a = train_probe(x, y, sets, [0, 1], va, te, head_kind="probe", num_classes=4, settings=SETTINGS)
  b = train_probe(x, y, sets, [0, 1], va, te, head_kind="probe", num_classes=4, settings=SETTINGS)
  np.testing.assert_array_equal(a.probs_RxExC, b.probs_RxExC)
  assert not np.allclose(a.probs_RxExC[0], a.probs_RxExC[1])


def test_jit_macro_f1_matches_sklearn():
  """The early-stopping score inside jit is metrics.macro_f1 with xp=jax.numpy: scikit-learn's macro-F1 over
  the classes present in y or pred (class 5 is only predicted, so it counts with F1 0)."""
  import jax
  import jax.numpy as jnp
  from sklearn.metrics import f1_score
  rng = np.random.default_rng(0)
  y, p = rng.integers(0, 5, 50), rng.integers(0, 6, 50)
  jitted = jax.jit(lambda y, p: macro_f1(y, p, 7, xp=jnp))  # class 6: absent from both, not averaged
  expect = f1_score(y, p, average="macro", zero_division=0)
  assert float(jitted(y, p)) == pytest.approx(expect, abs=1e-6)
  assert macro_f1(y, p, 7) == pytest.approx(expect, abs=1e-12)


def test_balanced_class_weights_match_sklearn():
  from sklearn.utils.class_weight import compute_class_weight
  y = np.array([0, 0, 0, 0, 0, 0, 2, 2, 3])  # class 1 absent: weight 0, never drawn
  expect = compute_class_weight("balanced", classes=np.array([0, 2, 3]), y=y)  # 9 / (3 * n_k)
  np.testing.assert_allclose(expect, [0.5, 1.5, 3.0])
  np.testing.assert_allclose(class_weights(y, 4, "balanced"), [0.5, 0.0, 1.5, 3.0], rtol=1e-7)
  np.testing.assert_array_equal(class_weights(y, 4, "none"), np.ones(4))
  with pytest.raises(ValueError, match="class_weight"):
    class_weights(y, 4, "inverse")


def test_weighted_cross_entropy_against_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(5, 3)).astype(np.float32)
  y = np.array([0, 2, 2, 1, 0])
  row_w = np.array([1, 1, 1, 1, 0], np.float32)  # the last row is padding
  class_w = np.array([0.5, 2.0, 1.25], np.float32)
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  ce = -logp[np.arange(5), y]
  expect = (ce * row_w * class_w[y]).sum() / row_w.sum()  # hand: mean over real rows of c_y * CE
  got = float(weighted_cross_entropy(logits, y, row_w, class_w))
  assert got == pytest.approx(float(expect), rel=1e-6)


def _triplet(rng, d):
  """Three unit vectors at 120 degrees in a random plane: they sum to 0."""
  q, _ = np.linalg.qr(rng.normal(size=(d, 2)))
  return np.stack([q[:, 0], -0.5 * q[:, 0] + 0.75**0.5 * q[:, 1], -0.5 * q[:, 0] - 0.75**0.5 * q[:, 1]])


def test_balanced_weights_equal_repeating_the_rare_class():
  """Class sizes 3 and 9: balanced weights are 12/(2*3) = 2 and 12/(2*9) = 2/3, i.e. 3:1. The unweighted
  head trained on the rare class's rows repeated 3 times (9 + 9 rows) minimises the same loss:
  (2 S0 + 2/3 S1) / 12 = (3 S0 + S1) / 18. Every row has unit norm and each class is a set of triplets summing
  to 0, so both training sets have mean 0 and the same RMS: the probe's feature normalisation is the same,
  and (full batch, no dropout) so is every AdamW step."""
  rng = np.random.default_rng(3)
  x_train = np.concatenate([_triplet(rng, 8) for _ in range(4)]).astype(np.float32)  # rows 0-2: class 0
  y_train = np.array([0] * 3 + [1] * 9)
  x_eval = rng.normal(size=(20, 8)).astype(np.float32)
  x = np.concatenate([x_train, x_eval])
  y = np.concatenate([y_train, rng.integers(0, 2, 20)])
  val, ev = np.arange(12, 22), np.arange(12, 32)
  rep = np.array([0, 1, 2] * 3 + list(range(3, 12)))
  s = ProbeSettings(lr=1e-2, weight_decay=1e-2, dropout=0.0, max_steps=60, eval_every=10, patience=100,
                    batch_size=64)
  fit = lambda rows, cw: train_probe(x, y, [rows], [0], val, ev, head_kind="logreg", num_classes=2,
                                     settings=s, class_weight=cw).probs_RxExC
  balanced = fit(np.arange(12), "balanced")
  np.testing.assert_allclose(balanced, fit(rep, "none"), atol=2e-5)
  assert not np.allclose(balanced, fit(np.arange(12), "none"), atol=1e-3)
