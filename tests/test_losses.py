"""Specification of the loss maths in jaxemb/objectives/losses.py.

Each loss is checked against (a) an independent NumPy float64 implementation of the formula in
docs/method.md, written with explicit loops, and (b) hand-worked cases whose numbers are derived in the
comments, so the expected values never come from the code under test.
"""

import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxemb.objectives import losses

RTOL = 1e-5
ATOL = 1e-6
E = math.e

# Everything runs jitted: that is how the train step uses the losses, and on CPU one compile per shape is
# far cheaper than eager op-by-op dispatch.
masked_lm_loss = jax.jit(losses.masked_lm_loss)
nt_xent = jax.jit(losses.nt_xent, static_argnames="temperature")
supcon = jax.jit(losses.supcon, static_argnames="temperature")
classification_loss = jax.jit(losses.classification_loss)


# ---------------------------------------------------------------------------------------------------------
# Independent NumPy references (float64, loops over rows).
# ---------------------------------------------------------------------------------------------------------


def _np_unit_rows(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _np_log_softmax_at(row, target, allowed):
  """log( exp(row[target]) / sum_{a in allowed} exp(row[a]) )."""
  return row[target] - np.log(np.sum(np.exp([row[a] for a in allowed])))


def np_masked_lm_loss(logits, labels, weights):
  logits = np.asarray(logits, np.float64)
  total, n = 0.0, 0.0
  for i in range(logits.shape[0]):
    for m in range(logits.shape[1]):
      w = float(weights[i, m])
      if w > 0:
        total += -w * _np_log_softmax_at(logits[i, m], labels[i, m], range(logits.shape[2]))
        n += w
  return (total / n if n > 0 else 0.0), n


def np_nt_xent(anchors, positives, tau):
  z = _np_unit_rows(np.concatenate([anchors, positives], axis=0))
  two_n = z.shape[0]
  s = z @ z.T / tau
  terms = []
  for i in range(two_n):
    others = [j for j in range(two_n) if j != i]
    terms.append(-_np_log_softmax_at(s[i], (i + two_n // 2) % two_n, others))
  return float(np.mean(terms))


def np_supcon(x, labels, tau, valid=None):
  b = len(labels)
  valid = np.ones(b, bool) if valid is None else np.asarray(valid, bool)
  z = _np_unit_rows(x)
  s = z @ z.T / tau
  rows = [i for i in range(b) if valid[i]]
  if len({labels[i] for i in rows}) < 2:  # no negative pair
    return 0.0
  per_anchor = []
  for i in rows:
    others = [a for a in rows if a != i]
    pos = [p for p in others if labels[p] == labels[i]]
    if pos:
      per_anchor.append(-np.mean([_np_log_softmax_at(s[i], p, others) for p in pos]))
  return float(np.mean(per_anchor)) if per_anchor else 0.0


def np_ce(logits, labels):
  logits = np.asarray(logits, np.float64)
  k = logits.shape[1]
  return float(np.mean([-_np_log_softmax_at(logits[i], labels[i], range(k)) for i in range(len(labels))]))


def _unit(deg, length=1.0):
  rad = math.radians(deg)
  return [length * math.cos(rad), length * math.sin(rad)]


def _directional_check(f, x, seed):
  """jax.grad(f)(x) . v equals a central finite difference of f along a random unit v."""
  v = np.random.default_rng(seed).normal(size=x.shape).astype(np.float32)
  v /= np.linalg.norm(v)
  h = 1e-3
  numeric = (float(f(x + h * v)) - float(f(x - h * v))) / (2 * h)
  analytic = float(jnp.vdot(jax.jit(jax.grad(f))(x), v))
  np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-3)


# ---------------------------------------------------------------------------------------------------------
# masked_lm_loss
# ---------------------------------------------------------------------------------------------------------


def _mlm_inputs(seed=0, n=3, m=4, v=7):
  rng = np.random.default_rng(seed)
  logits = rng.normal(scale=2.0, size=(n, m, v)).astype(np.float32)
  labels = rng.integers(0, v, size=(n, m)).astype(np.int32)
  weights = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], np.float32)
  return logits, labels, weights


def test_masked_lm_loss_matches_numpy_mean_over_real_predictions():
  logits, labels, weights = _mlm_inputs()
  loss, n = masked_lm_loss(logits, labels, weights)
  want, want_n = np_masked_lm_loss(logits, labels, weights)
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, want, rtol=RTOL)
  assert float(n) == want_n == 5.0


def test_masked_lm_loss_hand_worked():
  # One real slot with logits [0, 0, log 2] and label 2: p = 2 / (1 + 1 + 2) = 1/2, CE = log 2.
  # A second slot has weight 0 and must not count.
  logits = np.array([[[0.0, 0.0, math.log(2.0)], [5.0, -5.0, 0.0]]], np.float32)
  loss, n = masked_lm_loss(logits, np.array([[2, 1]]), np.array([[1.0, 0.0]], np.float32))
  np.testing.assert_allclose(loss, math.log(2.0), rtol=RTOL)
  assert float(n) == 1.0


def test_masked_lm_loss_ignores_weight_zero_slots():
  logits, labels, weights = _mlm_inputs()
  base, _ = masked_lm_loss(logits, labels, weights)
  pad = weights == 0
  logits2 = logits.copy()
  logits2[pad] = np.random.default_rng(1).normal(scale=50.0, size=logits2[pad].shape)
  logits2[0, 3, 0] = np.nan  # even garbage in a padding slot must not leak
  labels2 = labels.copy()
  labels2[pad] = -100  # an "ignore index" style label, out of range
  changed, _ = masked_lm_loss(logits2, labels2, weights)
  np.testing.assert_allclose(changed, base, rtol=RTOL)
  grad = jax.jit(jax.grad(lambda x: masked_lm_loss(x, labels2, weights)[0]))(logits2)
  assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[pad] == 0.0)


def test_masked_lm_loss_no_predictions_is_zero_not_nan():
  logits, labels, _ = _mlm_inputs()
  weights = np.zeros(labels.shape, np.float32)
  loss, n = masked_lm_loss(logits, labels, weights)
  assert float(loss) == 0.0 and float(n) == 0.0
  grad = jax.jit(jax.grad(lambda x: masked_lm_loss(x, labels, weights)[0]))(logits)
  assert np.all(np.asarray(grad) == 0.0)


def test_masked_lm_loss_bf16_logits_computed_in_float32():
  logits, labels, weights = _mlm_inputs()
  logits_bf16 = jnp.asarray(logits, jnp.bfloat16)
  loss, _ = masked_lm_loss(logits_bf16, labels, weights)
  want, _ = np_masked_lm_loss(np.asarray(logits_bf16.astype(jnp.float32)), labels, weights)
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, want, rtol=RTOL)


# ---------------------------------------------------------------------------------------------------------
# nt_xent
# ---------------------------------------------------------------------------------------------------------


def test_nt_xent_matches_numpy():
  rng = np.random.default_rng(0)
  anchors = rng.normal(size=(5, 8)).astype(np.float32)
  positives = (anchors + 0.5 * rng.normal(size=(5, 8))).astype(np.float32)
  for tau in (0.05, 0.5):
    got = nt_xent(anchors, positives, temperature=tau)
    np.testing.assert_allclose(got, np_nt_xent(anchors, positives, tau), rtol=RTOL)


def test_nt_xent_hand_worked_three_pairs():
  # N = 3 pairs of 2-D vectors at known angles (lengths are irrelevant after l2norm):
  #   rows z0..z5 = a1 0deg, a2 90deg, a3 180deg, p1 0deg, p2 90deg, p3 270deg;  tau = 0.5.
  # Cosines (row: z0 z1 z2 z3 z4 z5), then S = cos / 0.5 = 2 cos; '*' = excluded diagonal:
  #   z0:  *  0 -1  1  0  0   target z3 (s = 2)
  #   z1:  0  * 0  0  1 -1    target z4 (s = 2)
  #   z2: -1  0  *  -1  0  0  target z5 (s = 0)
  #   z3:  1  0 -1  *  0  0   target z0 (s = 2)
  #   z4:  0  1  0  0  * -1   target z1 (s = 2)
  #   z5:  0 -1  0  0 -1  *   target z2 (s = 0)
  # Rows z0, z1, z3, z4 each see S values {2, 0, 0, 0, -2}:
  #   CE = log(e^2 + 3 + e^-2) - 2 = log(10.524391) - 2 = 2.353696 - 2 = 0.353696
  # Rows z2, z5 each see {0, 0, 0, -2, -2} with target 0:
  #   CE = log(3 + 2 e^-2) - 0 = log(3.270671) = 1.184995
  # Mean over 6 rows = (4 * 0.353696 + 2 * 1.184995) / 6 = 0.630795.
  anchors = np.array([_unit(0, 2.0), _unit(90), _unit(180, 0.3)], np.float32)
  positives = np.array([_unit(0), _unit(90, 5.0), _unit(270)], np.float32)
  want = (4 * (math.log(E**2 + 3 + E**-2) - 2) + 2 * math.log(3 + 2 * E**-2)) / 6
  assert abs(want - 0.6307954) < 1e-6
  np.testing.assert_allclose(nt_xent(anchors, positives, temperature=0.5), want, rtol=RTOL)


def test_nt_xent_single_pair_is_zero():
  # With N = 1 each row's only candidate is its positive: CE = -log 1 = 0.
  loss = nt_xent(np.array([[1.0, 2.0]]), np.array([[-3.0, 0.5]]))
  np.testing.assert_allclose(loss, 0.0, atol=ATOL)


def test_nt_xent_invariant_to_scaling_rows():
  rng = np.random.default_rng(2)
  anchors = rng.normal(size=(4, 6)).astype(np.float32)
  positives = rng.normal(size=(4, 6)).astype(np.float32)
  scale_a = rng.uniform(0.01, 100.0, size=(4, 1)).astype(np.float32)
  scale_p = rng.uniform(0.01, 100.0, size=(4, 1)).astype(np.float32)
  np.testing.assert_allclose(
      nt_xent(anchors * scale_a, positives * scale_p), nt_xent(anchors, positives), rtol=RTOL)


def test_nt_xent_gradient_matches_finite_difference_and_survives_zero_rows():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(6, 5)).astype(np.float32)
  _directional_check(lambda x: nt_xent(x[:3], x[3:], temperature=0.5), x, seed=0)
  x[1] = 0.0  # a degenerate (all-zero) embedding must not produce NaN
  loss, grad = jax.jit(jax.value_and_grad(lambda x: nt_xent(x[:3], x[3:])))(x)
  assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))


def test_nt_xent_bf16_inputs():
  rng = np.random.default_rng(4)
  anchors = jnp.asarray(rng.normal(size=(3, 8)), jnp.bfloat16)
  positives = jnp.asarray(rng.normal(size=(3, 8)), jnp.bfloat16)
  got = nt_xent(anchors, positives, temperature=0.5)
  assert got.dtype == jnp.float32
  want = np_nt_xent(np.asarray(anchors.astype(jnp.float32)), np.asarray(positives.astype(jnp.float32)), 0.5)
  np.testing.assert_allclose(got, want, rtol=RTOL)


# ---------------------------------------------------------------------------------------------------------
# supcon
# ---------------------------------------------------------------------------------------------------------


def test_supcon_matches_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(8, 6)).astype(np.float32)
  labels = np.array([0, 1, 0, 2, 1, 0, 3, 1], np.int32)  # row 3 and row 6 have no positive
  for tau in (0.1, 0.5):
    got = supcon(x, labels, temperature=tau)
    np.testing.assert_allclose(got, np_supcon(x, labels, tau), rtol=RTOL)


def test_supcon_hand_worked_three_examples():
  # z0 at 0deg (label 0), z1 at 90deg (label 0), z2 at 180deg (label 1); tau = 0.5, S = 2 cos:
  #        z0  z1  z2
  #   z0:   *   0  -2
  #   z1:   0   *   0
  #   z2:  -2   0   *
  # Anchor z0: P = {z1}; loss = -(0 - log(e^0 + e^-2)) = log(1.135335) = 0.126928
  # Anchor z1: P = {z0}; loss = -(0 - log(e^0 + e^0)) = log 2 = 0.693147
  # Anchor z2: no positive -> excluded (not averaged in as 0).
  # Loss = (0.126928 + 0.693147) / 2 = 0.410038.
  x = np.array([_unit(0, 3.0), _unit(90), _unit(180, 0.5)], np.float32)
  want = (math.log(1 + E**-2) + math.log(2.0)) / 2
  assert abs(want - 0.4100376) < 1e-6
  np.testing.assert_allclose(supcon(x, np.array([0, 0, 1]), temperature=0.5), want, rtol=RTOL)


def test_supcon_hand_worked_mean_over_two_positives():
  # z0..z3 at 0, 90, 180, 270 deg, labels (0, 0, 0, 1), tau = 0.5, S = 2 cos:
  #   z0:  *  0 -2  0     z1:  0  *  0 -2     z2: -2  0  *  0
  # Every row's denominator is log(1 + 1 + e^-2) = log(2.135335) = L = 0.758624.
  # Anchor z0: P = {z1 (s=0), z2 (s=-2)}: loss = -((0 - L) + (-2 - L)) / 2 = L + 1
  # Anchor z1: P = {z0 (s=0), z2 (s=0)}:  loss = L
  # Anchor z2: P = {z0 (s=-2), z1 (s=0)}: loss = L + 1
  # Anchor z3: no positive -> excluded.  Loss = L + 2/3 = 1.425290.
  x = np.array([_unit(0), _unit(90), _unit(180), _unit(270)], np.float32)
  want = math.log(2 + E**-2) + 2 / 3
  assert abs(want - 1.4252903) < 1e-6
  np.testing.assert_allclose(supcon(x, np.array([0, 0, 0, 1]), temperature=0.5), want, rtol=RTOL)


@pytest.mark.parametrize(
    "labels, valid",
    [
        ([0, 1, 2, 3], None),  # no positive pair
        ([5, 5, 5, 5], None),  # all one label: no negative pair
        ([0, 1, 2, 2], [True, True, True, False]),  # the only pair involves a padding row
        ([4, 4, 7, 7], [True, True, False, False]),  # the only negatives are padding rows
        ([0, 0, 1, 1], [False, False, False, False]),  # nothing valid
    ],
)
def test_supcon_without_signal_is_exactly_zero_with_zero_gradient(labels, valid):
  x = np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32)
  valid = None if valid is None else np.array(valid)
  loss, grad = jax.jit(jax.value_and_grad(lambda x: supcon(x, np.array(labels), valid_B=valid)))(x)
  assert float(loss) == 0.0
  assert np.all(np.asarray(grad) == 0.0)


def test_supcon_excludes_anchors_without_positives():
  # Two rows of label 9 form the only positive pair; the three singletons are negatives but not anchors.
  rng = np.random.default_rng(6)
  x = rng.normal(size=(5, 4)).astype(np.float32)
  labels = np.array([9, 1, 9, 2, 3])
  z = _np_unit_rows(x)
  s = z @ z.T / 0.1

  def anchor_term(i, p):
    return -(s[i, p] - np.log(sum(np.exp(s[i, a]) for a in range(5) if a != i)))

  want = (anchor_term(0, 2) + anchor_term(2, 0)) / 2  # average over the 2 anchors, not over all 5
  np.testing.assert_allclose(supcon(x, labels), want, rtol=RTOL)


def test_supcon_padding_rows_are_neither_anchors_nor_candidates():
  rng = np.random.default_rng(7)
  x = rng.normal(size=(6, 4)).astype(np.float32)
  labels = np.array([0, 1, 0, 1, 0, 1])
  valid = np.array([True, True, True, True, False, False])
  got = supcon(x, labels, valid_B=valid)
  np.testing.assert_allclose(got, supcon(x[:4], labels[:4]), rtol=RTOL)
  np.testing.assert_allclose(got, np_supcon(x, labels, 0.1, valid), rtol=RTOL)
  # Padding content (even a zero vector) changes neither the value nor the real rows' gradient.
  x_pad = x.copy()
  x_pad[4:] = 0.0
  g = jax.jit(jax.grad(lambda x: supcon(x, labels, valid_B=valid)))
  np.testing.assert_allclose(supcon(x_pad, labels, valid_B=valid), got, rtol=RTOL)
  np.testing.assert_allclose(g(x_pad)[:4], g(x)[:4], rtol=1e-4, atol=1e-6)
  assert np.all(np.asarray(g(x_pad))[4:] == 0.0)


def test_supcon_gradient_matches_finite_difference():
  x = np.random.default_rng(8).normal(size=(5, 4)).astype(np.float32)
  _directional_check(lambda x: supcon(x, np.array([0, 1, 0, 1, 2]), temperature=0.5), x, seed=1)


# ---------------------------------------------------------------------------------------------------------
# classification_loss
# ---------------------------------------------------------------------------------------------------------


def test_classification_loss_matches_numpy():
  rng = np.random.default_rng(9)
  logits = rng.normal(scale=3.0, size=(6, 4)).astype(np.float32)
  labels = rng.integers(0, 4, size=6).astype(np.int32)
  got = classification_loss(logits, labels)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, np_ce(logits, labels), rtol=RTOL)
  # Hand-worked: logits [0, log 3] with label 1 -> p = 3/4, CE = log(4/3) = 0.287682.
  np.testing.assert_allclose(
      classification_loss(np.array([[0.0, math.log(3.0)]]), np.array([1])), math.log(4 / 3), rtol=RTOL)


def test_classification_loss_valid_mask():
  rng = np.random.default_rng(10)
  logits = rng.normal(size=(5, 3)).astype(np.float32)
  labels = np.array([0, 2, 1, -1, 99])  # padding rows may carry junk labels
  valid = np.array([True, True, True, False, False])
  got = classification_loss(logits, labels, valid_B=valid)
  np.testing.assert_allclose(got, np_ce(logits[:3], labels[:3]), rtol=RTOL)
  assert float(classification_loss(logits, labels, valid_B=np.zeros(5, bool))) == 0.0


# ---------------------------------------------------------------------------------------------------------
# Global batch sharded over a device mesh
# ---------------------------------------------------------------------------------------------------------

_SHARDED_CODE = r"""
import jax, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxemb.objectives import losses

assert jax.device_count() == 4, jax.devices()
mesh = Mesh(np.array(jax.devices()), ("data",))
rows = NamedSharding(mesh, P("data"))
rng = np.random.default_rng(0)
anchors = rng.normal(size=(8, 16)).astype(np.float32)
positives = (anchors + 0.3 * rng.normal(size=(8, 16))).astype(np.float32)
x = rng.normal(size=(8, 16)).astype(np.float32)
labels = np.array([0, 1, 0, 2, 1, 3, 0, 1], np.int32)  # positives cross device boundaries
valid = np.array([True] * 7 + [False])

ntx = jax.jit(lambda a, p: losses.nt_xent(a, p, temperature=0.05))
sup = jax.jit(lambda x, y, v: losses.supcon(x, y, temperature=0.1, valid_B=v))
one = jax.devices()[0]
ref_ntx = float(ntx(jax.device_put(anchors, one), jax.device_put(positives, one)))
ref_sup = float(sup(*(jax.device_put(a, one) for a in (x, labels, valid))))

sa, sp, sx, sy, sv = (jax.device_put(a, rows) for a in (anchors, positives, x, labels, valid))
assert len(sa.sharding.device_set) == 4 and not sa.sharding.is_fully_replicated
got_ntx = float(ntx(sa, sp))
got_sup = float(sup(sx, sy, sv))
np.testing.assert_allclose(got_ntx, ref_ntx, rtol=1e-5)
np.testing.assert_allclose(got_sup, ref_sup, rtol=1e-5)
g_ref = jax.grad(lambda a: ntx(a, positives))(jax.device_put(anchors, one))
g_got = jax.grad(lambda a: ntx(a, sp))(sa)
np.testing.assert_allclose(np.asarray(g_got), np.asarray(g_ref), rtol=1e-4, atol=1e-6)
print("OK", got_ntx, got_sup)
"""


def test_losses_identical_on_a_four_device_mesh():
  repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {
      **os.environ,
      "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
      "JAX_PLATFORMS": "cpu",
      "PYTHONPATH": os.pathsep.join(p for p in (repo_root, os.environ.get("PYTHONPATH")) if p),
  }
  result = subprocess.run(
      [sys.executable, "-c", _SHARDED_CODE], env=env, cwd=repo_root, capture_output=True, text=True,
      timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr
  assert result.stdout.startswith("OK")
