"""The frozen-encoder probe on cached embeddings: learns separable data, early-stops, vmaps a grid."""

import numpy as np
import pytest

from jaxemb.eval.fewshot import sample_few_shot
from jaxemb.eval.metrics import macro_f1
from jaxemb.eval.probe import ProbeSettings, macro_f1_jnp, train_probe

SETTINGS = ProbeSettings(lr=3e-3, max_steps=150, eval_every=10, patience=4, batch_size=64)


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


def test_jit_macro_f1_matches_numpy():
  rng = np.random.default_rng(0)
  y, p = rng.integers(0, 5, 50), rng.integers(0, 6, 50)
  assert float(macro_f1_jnp(y, p, 6)) == pytest.approx(macro_f1(y, p, 6), abs=1e-6)
