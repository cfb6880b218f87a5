"""Specification of the loss maths in jaxemb/objectives/losses.py.

Each loss is checked against (a) an independent NumPy float64 implementation of the formula in
docs/ARCHITECTURE.md, written with explicit loops, and (b) hand-worked cases whose numbers are derived in the
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

# Each loss runs jitted together with its gradient, as in the train step; on a CPU shared with other
# workers one compile per (shape, temperature) is far cheaper than eager dispatch or separate compiles.
# Tests therefore reuse a few shapes, and every call also asserts that the gradient is finite.
_mlm_vg = jax.jit(jax.value_and_grad(losses.masked_lm_loss, has_aux=True))
_ntx_vg = jax.jit(jax.value_and_grad(losses.nt_xent, argnums=(0, 1)), static_argnames="temperature")
_sup_vg = jax.jit(jax.value_and_grad(losses.supcon), static_argnames="temperature")
_ce_vg = jax.jit(jax.value_and_grad(losses.classification_loss))


def _finite(*arrays):
  for a in arrays:
    assert np.all(np.isfinite(np.asarray(a, np.float32))), a
  return arrays


def masked_lm_loss(logits, labels, weights):
  """-> (loss, n_predictions, d loss / d logits)."""
  (loss, n), grad = _mlm_vg(logits, np.asarray(labels, np.int32), np.asarray(weights, np.float32))
  _finite(loss, grad)
  return loss, n, grad


def nt_xent(anchors, positives, temperature):
  """-> (loss, d loss / d concat(anchors, positives))."""
  loss, (g_a, g_p) = _ntx_vg(anchors, positives, temperature=temperature)
  _finite(loss, g_a, g_p)
  return loss, np.concatenate([g_a, g_p], axis=0)


def supcon(x, labels, temperature):
  """-> (loss, d loss / d x)."""
  loss, grad = _sup_vg(x, np.asarray(labels, np.int32), temperature=temperature)
  _finite(loss, grad)
  return loss, grad


def classification_loss(logits, labels):
  loss, grad = _ce_vg(logits, np.asarray(labels, np.int32))
  _finite(loss, grad)
  return loss


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


def np_supcon(x, labels, tau, groups=None):
  z = _np_unit_rows(x)
  s = z @ z.T / tau
  rows = range(len(labels))
  groups = list(rows) if groups is None else groups
  if not any(labels[i] != labels[j] and groups[i] != groups[j] for i in rows for j in rows):  # no negative pair
    return 0.0
  per_anchor = []
  for i in rows:
    others = [a for a in rows if a != i and groups[a] != groups[i]]
    pos = [p for p in others if labels[p] == labels[i]]
    if pos:
      per_anchor.append(-np.mean([_np_log_softmax_at(s[i], p, others) for p in pos]))
  return float(np.mean(per_anchor)) if per_anchor else 0.0


def np_ce(logits, labels):
  logits = np.asarray(logits, np.float64)
  k = logits.shape[1]
  return float(np.mean([-_np_log_softmax_at(logits[i], labels[i], range(k)) for i in range(len(labels))]))


def _unit(deg, length=1.0, dim=4):
  """A 2-D vector at `deg` degrees of the given length, zero-padded to `dim` (cosines are unchanged)."""
  rad = math.radians(deg)
  return [length * math.cos(rad), length * math.sin(rad)] + [0.0] * (dim - 2)


def _directional_check(value_and_grad, x, seed):
  """The gradient along a random unit direction v equals a central finite difference of the value."""
  v = np.random.default_rng(seed).normal(size=x.shape).astype(np.float32)
  v /= np.linalg.norm(v)
  h = 1e-3
  numeric = (float(value_and_grad(x + h * v)[0]) - float(value_and_grad(x - h * v)[0])) / (2 * h)
  analytic = float(np.vdot(value_and_grad(x)[1], v))
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
  loss, n, _ = masked_lm_loss(logits, labels, weights)
  want, want_n = np_masked_lm_loss(logits, labels, weights)
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, want, rtol=RTOL)
  assert float(n) == want_n == 5.0


def test_masked_lm_loss_hand_worked():
  # Slot (0, 0): logits [0, 0, log 2, 0, ...] with label 2 over V = 7:
  #   p = 2 / (6 * 1 + 2) = 1/4, CE = log 4.
  # Slot (0, 1): logits all 0, label 5: p = 1/7, CE = log 7.  Every other slot has weight 0.
  # Weighted mean = (log 4 + log 7) / 2 = log(28) / 2 = 1.666102.
  logits = np.zeros((3, 4, 7), np.float32)
  logits[0, 0, 2] = math.log(2.0)
  logits[1:, :, 0] = 30.0  # padding slots with loud logits
  labels = np.zeros((3, 4), np.int32)
  labels[0, :2] = [2, 5]
  weights = np.zeros((3, 4), np.float32)
  weights[0, :2] = 1.0
  loss, n, _ = masked_lm_loss(logits, labels, weights)
  np.testing.assert_allclose(loss, math.log(28.0) / 2, rtol=RTOL)
  assert float(n) == 2.0


def test_masked_lm_loss_ignores_weight_zero_slots():
  logits, labels, weights = _mlm_inputs()
  base, _, base_grad = masked_lm_loss(logits, labels, weights)
  pad = weights == 0
  logits2 = logits.copy()
  logits2[pad] = np.random.default_rng(1).normal(scale=50.0, size=logits2[pad].shape)
  logits2[0, 3, 0] = np.nan  # even garbage in a padding slot must not leak
  labels2 = labels.copy()
  labels2[pad] = -100  # an "ignore index" style label, out of range
  changed, _, grad = masked_lm_loss(logits2, labels2, weights)
  np.testing.assert_allclose(changed, base, rtol=RTOL)
  assert np.all(np.asarray(grad)[pad] == 0.0)
  np.testing.assert_allclose(grad, base_grad, rtol=RTOL, atol=ATOL)


def test_masked_lm_loss_no_predictions_is_zero_not_nan():
  logits, labels, _ = _mlm_inputs()
  loss, n, grad = masked_lm_loss(logits, labels, np.zeros(labels.shape, np.float32))
  assert float(loss) == 0.0 and float(n) == 0.0
  assert np.all(np.asarray(grad) == 0.0)


def test_masked_lm_loss_bf16_logits_computed_in_float32():
  logits, labels, weights = _mlm_inputs()
  logits_bf16 = jnp.asarray(logits, jnp.bfloat16)
  loss, _, _ = masked_lm_loss(logits_bf16, labels, weights)
  want, _ = np_masked_lm_loss(np.asarray(logits_bf16.astype(jnp.float32)), labels, weights)
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, want, rtol=RTOL)


# ---------------------------------------------------------------------------------------------------------
# nt_xent
# ---------------------------------------------------------------------------------------------------------


def _pairs(seed, n=3, d=4):
  rng = np.random.default_rng(seed)
  anchors = rng.normal(size=(n, d)).astype(np.float32)
  positives = (anchors + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
  return anchors, positives


def test_nt_xent_matches_numpy():
  anchors, positives = _pairs(0)
  for tau in (0.05, 0.5):  # 0.05 is the DeCLUTR default
    loss, _ = nt_xent(anchors, positives, temperature=tau)
    np.testing.assert_allclose(loss, np_nt_xent(anchors, positives, tau), rtol=RTOL)


def test_nt_xent_hand_worked_three_pairs():
  # N = 3 pairs of 2-D vectors at known angles (lengths are irrelevant after l2norm):
  #   rows z0..z5 = a1 0deg, a2 90deg, a3 180deg, p1 0deg, p2 90deg, p3 270deg;  tau = 0.5.
  # Cosines (columns z0..z5), S = cos / 0.5 = 2 cos; '*' = excluded diagonal; target = (i + 3) mod 6:
  #   z0:  *  0 -1  1  0  0   target z3: s = 2
  #   z1:  0  *  0  0  1 -1   target z4: s = 2
  #   z2: -1  0  * -1  0  0   target z5: s = 0
  #   z3:  1  0 -1  *  0  0   target z0: s = 2
  #   z4:  0  1  0  0  * -1   target z1: s = 2
  #   z5:  0 -1  0  0 -1  *   target z2: s = 0
  # Rows z0, z1, z3, z4 each see S values {2, 0, 0, 0, -2} with target 2:
  #   CE = log(e^2 + 3 + e^-2) - 2 = log(10.524391) - 2 = 2.353696 - 2 = 0.353696
  # Rows z2, z5 each see {0, 0, 0, -2, -2} with target 0:
  #   CE = log(3 + 2 e^-2) - 0 = log(3.270671) = 1.184995
  # Mean over 6 rows = (4 * 0.353696 + 2 * 1.184995) / 6 = 0.630795.
  anchors = np.array([_unit(0, 2.0), _unit(90), _unit(180, 0.3)], np.float32)
  positives = np.array([_unit(0), _unit(90, 5.0), _unit(270)], np.float32)
  want = (4 * (math.log(E**2 + 3 + E**-2) - 2) + 2 * math.log(3 + 2 * E**-2)) / 6
  assert abs(want - 0.6307954) < 1e-6
  loss, _ = nt_xent(anchors, positives, temperature=0.5)
  np.testing.assert_allclose(loss, want, rtol=RTOL)


def test_nt_xent_invariant_to_scaling_rows():
  anchors, positives = _pairs(2)
  rng = np.random.default_rng(3)
  scale_a = rng.uniform(0.01, 100.0, size=(3, 1)).astype(np.float32)
  scale_p = rng.uniform(0.01, 100.0, size=(3, 1)).astype(np.float32)
  scaled, _ = nt_xent(anchors * scale_a, positives * scale_p, temperature=0.5)
  np.testing.assert_allclose(scaled, nt_xent(anchors, positives, temperature=0.5)[0], rtol=RTOL)


def test_nt_xent_gradient_matches_finite_difference_and_survives_zero_rows():
  anchors, positives = _pairs(4)
  x = np.concatenate([anchors, positives])
  _directional_check(lambda x: nt_xent(x[:3], x[3:], temperature=0.5), x, seed=0)
  anchors[1] = 0.0  # a degenerate (all-zero) embedding: finite loss and gradient (checked in nt_xent)
  nt_xent(anchors, positives, temperature=0.5)


def test_nt_xent_bf16_inputs():
  anchors, positives = (jnp.asarray(a, jnp.bfloat16) for a in _pairs(5))
  loss, _ = nt_xent(anchors, positives, temperature=0.5)
  assert loss.dtype == jnp.float32
  want = np_nt_xent(np.asarray(anchors.astype(jnp.float32)), np.asarray(positives.astype(jnp.float32)), 0.5)
  np.testing.assert_allclose(loss, want, rtol=RTOL)


# ---------------------------------------------------------------------------------------------------------
# supcon
# ---------------------------------------------------------------------------------------------------------


def test_supcon_matches_numpy():
  x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
  labels = np.array([0, 1, 0, 2, 1, 0, 3, 1], np.int32)  # rows 3 and 6 have no positive
  loss, _ = supcon(x, labels, temperature=0.1)
  np.testing.assert_allclose(loss, np_supcon(x, labels, 0.1), rtol=RTOL)


def test_supcon_leaves_duplicates_out_of_each_others_sets():
  """groups_B: rows of one group (the same text) are neither each other's positives nor negatives; checked
  against the loop reference, and against the loss without the duplicate row where that is the same thing."""
  x = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
  labels = np.array([0, 1, 0, 2, 1, 0, 3, 1], np.int32)
  groups = np.array([0, 1, 0, 3, 4, 5, 3, 7], np.int32)  # rows 0/2 (same label) and 3/6 (other labels) duplicates
  loss, grad = _sup_g(x, labels, groups)
  _finite(loss, grad)
  np.testing.assert_allclose(loss, np_supcon(x, labels, 0.1, list(groups)), rtol=RTOL)
  assert abs(float(loss) - np_supcon(x, labels, 0.1)) > 1e-3  # the groups change the loss here
  # Distinct groups = the original loss.
  np.testing.assert_allclose(_sup_g(x, labels, np.arange(8, dtype=np.int32))[0], np_supcon(x, labels, 0.1),
                             rtol=RTOL)


_sup_g = jax.jit(jax.value_and_grad(lambda x, y, g: losses.supcon(x, y, 0.1, groups_B=g)))


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
  loss, _ = supcon(x, [0, 0, 1], temperature=0.5)
  np.testing.assert_allclose(loss, want, rtol=RTOL)


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
  loss, _ = supcon(x, [0, 0, 0, 1], temperature=0.5)
  np.testing.assert_allclose(loss, want, rtol=RTOL)


@pytest.mark.parametrize(
    "labels",
    [
        [0, 1, 2, 3],  # no positive pair
        [5, 5, 5, 5],  # all one label: no negative pair
    ],
)
def test_supcon_without_signal_is_exactly_zero_with_zero_gradient(labels):
  x = np.random.default_rng(5).normal(size=(4, 4)).astype(np.float32)
  loss, grad = supcon(x, labels, temperature=0.5)
  assert float(loss) == 0.0
  assert np.all(np.asarray(grad) == 0.0)


def test_supcon_excludes_anchors_without_positives():
  # Rows 0 and 2 (label 9) form the only positive pair; rows 1 and 3 are negatives but not anchors.
  x = np.random.default_rng(6).normal(size=(4, 4)).astype(np.float32)
  z = _np_unit_rows(x)
  s = z @ z.T / 0.5

  def anchor_term(i, p):
    return -(s[i, p] - np.log(sum(np.exp(s[i, a]) for a in range(4) if a != i)))

  want = (anchor_term(0, 2) + anchor_term(2, 0)) / 2  # averaged over the 2 anchors, not over all 4
  loss, _ = supcon(x, [9, 1, 9, 2], temperature=0.5)
  np.testing.assert_allclose(loss, want, rtol=RTOL)


def test_supcon_gradient_matches_finite_difference():
  x = np.random.default_rng(8).normal(size=(4, 4)).astype(np.float32)
  _directional_check(lambda x: supcon(x, [0, 1, 0, 1], temperature=0.5), x, seed=1)


# ---------------------------------------------------------------------------------------------------------
# classification_loss
# ---------------------------------------------------------------------------------------------------------


def test_classification_loss_matches_numpy():
  rng = np.random.default_rng(9)
  logits = rng.normal(scale=3.0, size=(6, 4)).astype(np.float32)
  labels = rng.integers(0, 4, size=6).astype(np.int32)
  loss = classification_loss(logits, labels)
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, np_ce(logits, labels), rtol=RTOL)


def test_classification_loss_hand_worked():
  # Row 0: logits [0, log 3, 0, 0], label 1 -> p = 3/6, CE = log 2.
  # Row 1: logits all 0, label 3 -> p = 1/4, CE = log 4.  Mean = (log 2 + log 4) / 2 = 1.5 log 2.
  logits = np.zeros((2, 4), np.float32)
  logits[0, 1] = math.log(3.0)
  loss = classification_loss(logits, [1, 3])
  np.testing.assert_allclose(loss, 1.5 * math.log(2.0), rtol=RTOL)


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
positives = (anchors + rng.normal(size=(8, 16))).astype(np.float32)
x = rng.normal(size=(8, 16)).astype(np.float32)
labels = np.array([0, 1, 0, 2, 1, 3, 0, 1], np.int32)  # positive pairs cross device boundaries
inputs = (anchors, positives, x, labels)


@jax.jit
def both(anchors, positives, x, labels):
  ntx, g_ntx = jax.value_and_grad(losses.nt_xent)(anchors, positives, 0.05)
  sup, g_sup = jax.value_and_grad(losses.supcon)(x, labels, 0.1)
  return ntx, sup, g_ntx, g_sup


one = jax.devices()[0]
ref = both(*(jax.device_put(a, one) for a in inputs))
sharded = [jax.device_put(a, rows) for a in inputs]
assert len(sharded[0].sharding.device_set) == 4 and not sharded[0].sharding.is_fully_replicated
got = both(*sharded)
np.testing.assert_allclose(float(got[0]), float(ref[0]), rtol=1e-5)
np.testing.assert_allclose(float(got[1]), float(ref[1]), rtol=1e-5)
for g, r in zip(got[2:], ref[2:]):
  np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-6)
print("OK", float(got[0]), float(got[1]))
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
