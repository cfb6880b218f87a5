"""Optimiser pieces against closed forms."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxemb.train.optim import decay_mask, make_optimizer, make_schedule, slanted_triangular


def _cfg(**kw):
  c = ml_collections.ConfigDict(dict(lr=1e-3, weight_decay=0.1, b1=0.9, b2=0.999, eps=1e-6, schedule="linear",
                                     warmup_steps=10, cut_frac=0.1, ratio=32.0, clip_norm=1.0, accumulate=1))
  c.update(kw)
  return c


def test_slanted_triangular_matches_ulmfit_formula():
  # ULMFiT eq. 3 with T=1000, cut_frac=0.1, ratio=32: cut=100; t=50 -> p=0.5; t=100 -> p=1;
  # t=550 -> p = 1 - 450/900 = 0.5; lr = lr_max * (1 + p*31) / 32.
  s = slanted_triangular(1.0, 1000, 0.1, 32.0)
  assert float(s(0)) == 1 / 32
  np.testing.assert_allclose(float(s(50)), (1 + 0.5 * 31) / 32, rtol=1e-6)
  np.testing.assert_allclose(float(s(100)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(float(s(550)), (1 + 0.5 * 31) / 32, rtol=1e-6)
  np.testing.assert_allclose(float(s(1000)), 1 / 32, rtol=1e-6)


def test_linear_warmup_then_decay():
  s = make_schedule(_cfg(), 110)  # 10 warmup steps to 1e-3, then linear to 0 at step 110
  np.testing.assert_allclose([float(s(t)) for t in (0, 5, 10, 60, 110)], [0, 5e-4, 1e-3, 5e-4, 0], atol=1e-9)


def test_no_weight_decay_on_bias_and_layernorm():
  params = {"encoder": {"layer_0": {"output": {"dense": {"weight": 1, "bias": 1}, "LayerNorm": {"scale": 1, "bias": 1}}},
                        "embeddings": {"word_embeddings": {"embedding": 1}}}}
  m = decay_mask(params)
  assert m["encoder"]["layer_0"]["output"]["dense"] == {"weight": True, "bias": False}
  assert m["encoder"]["layer_0"]["output"]["LayerNorm"] == {"scale": False, "bias": False}
  assert m["encoder"]["embeddings"]["word_embeddings"]["embedding"] is True


def test_adamw_decay_and_clipping_against_hand_computation():
  """One AdamW step from zero moments: update = -lr * (g_hat / (|g_hat| + eps) + wd * p) where g_hat is the
  clipped gradient (Adam's first step moves each coordinate by lr * sign(g)); biases get no decay."""
  tx, _ = make_optimizer(_cfg(schedule="constant", clip_norm=1.0), 10)
  p = {"dense": {"weight": jnp.array([2.0, -1.0]), "bias": jnp.array([3.0])}}
  g = {"dense": {"weight": jnp.array([3.0, 0.0]), "bias": jnp.array([4.0])}}  # norm 5 -> clipped by 1/5
  upd, _ = tx.update(g, tx.init(p), p)
  new = optax.apply_updates(p, upd)
  lr, wd, eps = 1e-3, 0.1, 1e-6
  gw = np.array([0.6, 0.0])
  expect_w = np.array([2.0, -1.0]) - lr * (gw / (np.abs(gw) + eps) + wd * np.array([2.0, -1.0]))
  np.testing.assert_allclose(np.asarray(new["dense"]["weight"]), expect_w, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(new["dense"]["bias"]), [3.0 - lr * 0.8 / (0.8 + eps)], rtol=1e-6)


def test_gradient_accumulation_averages_micro_batches():
  tx, _ = make_optimizer(_cfg(schedule="constant", accumulate=2, clip_norm=0.0, weight_decay=0.0), 10)
  p = {"w": jnp.array([1.0])}
  state = tx.init(p)
  u1, state = tx.update({"w": jnp.array([1.0])}, state, p)
  assert float(u1["w"][0]) == 0.0  # no update until the second micro-batch
  u2, state = tx.update({"w": jnp.array([3.0])}, state, p)
  np.testing.assert_allclose(float(u2["w"][0]), -1e-3 * 2.0 / (2.0 + 1e-6), rtol=1e-5)
  # Adam's first moment after one real update is (1 - b1) * mean(g) = 0.1 * 2: the mean, not the sum.
  mu = optax.tree_utils.tree_get(state.inner_opt_state, "mu")
  np.testing.assert_allclose(float(mu["w"][0]), 0.2, rtol=1e-6)
