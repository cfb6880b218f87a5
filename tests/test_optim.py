"""Optimiser pieces against closed forms."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxemb.train import early_stopping
from jaxemb.train.optim import (decay_mask, make_optimizer, make_schedule, slanted_triangular,
                                warmup_linear_decay)


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


def test_fine_tuning_schedule_starts_learning_at_step_0():
  # warmup_offset=1 (the fine-tuner): T=20 steps, 2 warmup steps; factor (s+1)/2 for s < 2, then (20-s)/18
  s = warmup_linear_decay(1.0, 20, 2, warmup_offset=1)
  np.testing.assert_allclose([float(s(t)) for t in (0, 1, 2, 11, 20, 25)], [0.5, 1.0, 1.0, 0.5, 0.0, 0.0],
                             atol=1e-7)


def test_linear_schedule_equals_optax_joined_linear_schedules():
  # the form pre-training used before the toolkit: optax's two joined linear schedules (same numbers)
  ref = optax.join_schedules([optax.linear_schedule(0.0, 1e-3, 10), optax.linear_schedule(1e-3, 0.0, 100)], [10])
  s = make_schedule(_cfg(), 110)
  np.testing.assert_allclose([float(s(t)) for t in range(0, 120)], [float(ref(t)) for t in range(0, 120)],
                             rtol=1e-6, atol=1e-12)


def test_decay_mask_is_the_matrices_of_encoder_and_heads():
  """By path (bias, LayerNorm) = by ndim >= 2 (the rule fine-tuning used) on every parameter of the encoder,
  the MLM head and both classification heads."""
  import jax

  from jaxemb.eval.heads import init_head
  from jaxemb.models.config import EncoderConfig
  from jaxemb.models.encoder import init_params
  config = EncoderConfig(family="bert", vocab_size=64, hidden_size=8, num_layers=1, num_heads=2,
                         intermediate_size=16, max_position_embeddings=16, type_vocab_size=2)
  params = {**init_params(config), "probe": init_head("probe", 8, 3, 0), "logreg": init_head("logreg", 8, 3, 0)}
  assert jax.tree.map(lambda x: x.ndim >= 2, params) == decay_mask(params)


def test_early_stopping_host_and_jit_agree_with_the_rule():
  """(f1, loss) per evaluation: an F1 gain or an F1 tie with a lower loss is an improvement; patience 2."""
  import jax
  import jax.numpy as jnp
  evals = [(0.5, 1.0), (0.6, 0.9), (0.6, 0.95), (0.6, 0.8), (0.55, 0.7), (0.6, 0.8)]
  # improvements at steps 10, 20, 40; then two without (50, 60): exhausted after step 60, best step 40
  expect_improved = [True, True, False, True, False, False]
  es, got = early_stopping.init(), []
  for k, (f1, loss) in enumerate(evals):
    es, improved = early_stopping.update(es, f1, loss, 10 * (k + 1))
    got.append(bool(improved))
  assert got == expect_improved
  assert (es.best_f1, es.best_loss, es.best_step, es.bad) == (0.6, 0.8, 40, 2)
  assert early_stopping.exhausted(es, 2) and not early_stopping.exhausted(es, 3)

  @jax.jit
  def run(f1s, losses):
    def body(es, x):
      es, improved = early_stopping.update(es, x[0], x[1], x[2].astype(jnp.int32), xp=jnp)
      return es, improved
    steps = 10.0 * jnp.arange(1, len(evals) + 1)
    return jax.lax.scan(body, early_stopping.init(xp=jnp), jnp.stack([f1s, losses, steps], 1))

  es_j, improved_j = run(*(jnp.asarray(v, jnp.float32) for v in zip(*evals)))
  assert improved_j.tolist() == expect_improved
  assert (int(es_j.best_step), int(es_j.bad)) == (40, 2)
