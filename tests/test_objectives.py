"""Objective loss functions over the encoder, against straightforward NumPy compositions of the same maths.

The encoder itself is checked against PyTorch in test_encoder.py; here the references recompute each
objective from the encoder's hidden states with NumPy: FULL-vocabulary logits at every position followed by
indexing (what the gather-before-projection must equal), NumPy mean pooling, NumPy NT-Xent / SupCon.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


from jaxemb.models.config import EncoderConfig
from jaxemb.models.encoder import encode, mlm_logits
from jaxemb.objectives import declutr, metadata, mlm

CFG = EncoderConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                    max_position_embeddings=32)


@pytest.fixture(scope="module")
def params():
  from jaxemb.models.encoder import init_params
  return jax.tree.map(jnp.asarray, init_params(CFG, seed=3))


def _np_ce(logits, label):
  logits = logits - logits.max()
  return float(np.log(np.exp(logits).sum()) - logits[label])


def _np_pool(h, m):
  return (h * m[..., None]).sum(1) / m.sum(1, keepdims=True)


def _np_l2(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _np_ntxent(a, p, tau):
  z = _np_l2(np.concatenate([a, p]))
  n2 = len(z)
  s = z @ z.T / tau
  total = 0.0
  for i in range(n2):
    others = [j for j in range(n2) if j != i]
    lse = np.log(np.sum(np.exp(s[i, others])))
    total += lse - s[i, (i + n2 // 2) % n2]
  return total / n2


def _mlm_batch(rng, b, length, m):
  ids = rng.integers(5, CFG.vocab_size, (b, length)).astype(np.int32)
  mask = np.ones((b, length), np.int32)
  mask[0, length - 3:] = 0
  pos = np.stack([rng.choice(np.arange(1, length - 3), m, replace=False) for _ in range(b)]).astype(np.int32)
  labels = rng.integers(5, CFG.vocab_size, (b, m)).astype(np.int32)
  weights = np.ones((b, m), np.float32)
  weights[1, -1] = 0.0  # a padding slot
  return ids, mask, pos, labels, weights


def _np_mlm(params, ids, mask, pos, labels, weights):
  h = encode(params["encoder"], ids, mask, config=CFG)
  full = np.asarray(mlm_logits(params, h, config=CFG))  # B x L x V: every position through the head
  num = sum(w * _np_ce(full[b, p], l) for b in range(len(ids))
            for p, l, w in zip(pos[b], labels[b], weights[b]) if w > 0)
  return num / weights.sum(), np.asarray(h)


def test_mlm_gathers_before_projection_without_changing_the_loss(params):
  ids, mask, pos, labels, weights = _mlm_batch(np.random.default_rng(0), 3, 12, 4)
  loss, metrics = mlm.loss_fn(params, dict(input_ids=ids, attention_mask=mask, mlm_positions=pos,
                                           mlm_labels=labels, mlm_weights=weights), None, config=CFG,
                              dtype=jnp.float32, remat=False, attention='xla')
  ref, _ = _np_mlm(params, ids, mask, pos, labels, weights)
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
  assert float(metrics["n_predictions"]) == 11.0


def test_declutr_loss_is_ntxent_of_averaged_positives_plus_mlm(params):
  rng = np.random.default_rng(1)
  n, p_per, la, lp = 4, 2, 12, 7
  ids, mask, pos, labels, weights = _mlm_batch(rng, n, la, 3)
  pids = rng.integers(5, CFG.vocab_size, (n * p_per, lp)).astype(np.int32)
  pmask = np.ones_like(pids)
  pmask[::3, 5:] = 0
  batch = dict(anchor_ids=ids, anchor_mask=mask, mlm_positions=pos, mlm_labels=labels, mlm_weights=weights,
               positive_ids=pids, positive_mask=pmask)
  # DeCLUTR splits its rng for the two passes, so it needs a key; with dropout rates 0 the key changes
  # nothing and the dropout-free NumPy reference is comparable.
  cfg = CFG.replace(hidden_dropout=0.0, attention_dropout=0.0)
  loss, m = declutr.loss_fn(params, batch, jax.random.PRNGKey(0), config=cfg, dtype=jnp.float32,
                            temperature=0.05, use_mlm=True, positives=p_per, remat=False, attention='xla',
                            mlm_weight=1.0, gradcache_chunks=0, gradcache_policy='nothing_saveable')
  mlm_ref, h = _np_mlm(params, ids, mask, pos, labels, weights)
  anchors = _np_pool(h, mask)
  hp = np.asarray(encode(params["encoder"], pids, pmask, config=CFG))
  positives = _np_pool(hp, pmask).reshape(n, p_per, -1).mean(1)  # P positives averaged per anchor
  ntx = _np_ntxent(anchors, positives, 0.05)
  np.testing.assert_allclose(float(m["contrastive_loss"]), ntx, rtol=1e-4)
  np.testing.assert_allclose(float(loss), ntx + mlm_ref, rtol=1e-4)
  only, m2 = declutr.loss_fn(params, batch, jax.random.PRNGKey(0), config=cfg, dtype=jnp.float32,
                             use_mlm=False, positives=p_per, remat=False, attention='xla', temperature=0.05,
                             mlm_weight=1.0, gradcache_chunks=0, gradcache_policy='nothing_saveable')
  np.testing.assert_allclose(float(only), ntx, rtol=1e-4)
  assert "mlm_loss" not in m2

  # Length-split positives (DeclutrBatches(split_positives=True)): rows 1, 4, 7 (those with 5 real tokens)
  # form the short group padded to 5, the rest the long group; positive_index puts them back. Same loss as
  # the NumPy reference above.
  short = np.array([0, 3, 6])
  long_ = np.setdiff1d(np.arange(n * p_per), short)
  index = np.empty(n * p_per, np.int32)
  index[short], index[long_] = np.arange(3), 3 + np.arange(len(long_))
  split = dict(batch, positive_ids=pids[short, :5], positive_mask=pmask[short, :5], positive_long_ids=pids[long_],
               positive_long_mask=pmask[long_], positive_index=index)
  loss_s, m_s = declutr.loss_fn(params, split, jax.random.PRNGKey(0), config=cfg, dtype=jnp.float32,
                                temperature=0.05, use_mlm=True, positives=p_per, remat=False, attention='xla',
                                mlm_weight=1.0, gradcache_chunks=0, gradcache_policy='nothing_saveable')
  np.testing.assert_allclose(float(m_s["contrastive_loss"]), ntx, rtol=1e-4)
  np.testing.assert_allclose(float(loss_s), ntx + mlm_ref, rtol=1e-4)


def test_metadata_loss_weights_the_note_loss(params):
  ids, mask, pos, labels, weights = _mlm_batch(np.random.default_rng(2), 4, 10, 2)
  cats = np.array([0, 1, 0, 1], np.int32)
  batch = dict(input_ids=ids, attention_mask=mask, mlm_positions=pos, mlm_labels=labels, mlm_weights=weights,
               category=cats)
  mlm_ref, h = _np_mlm(params, ids, mask, pos, labels, weights)
  z = _np_l2(_np_pool(h, mask))
  s = z @ z.T / 0.1
  # SupCon by hand: each row has exactly one positive (the other row of its category).
  sup = np.mean([np.log(np.exp(np.delete(s[i], i)).sum()) - s[i, [2, 3, 0, 1][i]] for i in range(4)])
  loss, m = metadata.loss_fn(params, batch, None, config=CFG, dtype=jnp.float32, note_loss="supcon", weight=0.1,
                             remat=False, attention='xla', temperature=0.1, use_mlm=True, use_note=True, dedup=True,
                             gradcache_chunks=0, gradcache_policy='nothing_saveable')
  np.testing.assert_allclose(float(m["note_loss"]), sup, rtol=1e-4)
  np.testing.assert_allclose(float(loss), mlm_ref + 0.1 * sup, rtol=1e-5)
  head = metadata.init_note_head(CFG.hidden_size, 2, seed=0)
  p2 = {**params, "note_head": jax.tree.map(jnp.asarray, head)}
  logits = _np_pool(h, mask) @ head["weight"].T + head["bias"]
  ce = np.mean([_np_ce(logits[i], cats[i]) for i in range(4)])
  only, m3 = metadata.loss_fn(p2, batch, None, config=CFG, dtype=jnp.float32, note_loss="classify",
                              use_mlm=False, remat=False, attention='xla', weight=0.1, temperature=0.1, use_note=True,
                              dedup=True, gradcache_chunks=0, gradcache_policy='nothing_saveable')
  np.testing.assert_allclose(float(only), ce, rtol=1e-5)
  with pytest.raises(ValueError, match="nothing to train"):
    metadata.loss_fn(params, batch, None, config=CFG, dtype=jnp.float32, use_mlm=False, use_note=False, remat=False,
                     attention='xla', note_loss='supcon', weight=0.1, temperature=0.1, dedup=True, gradcache_chunks=0,
                     gradcache_policy='nothing_saveable')


def test_bfloat16_compute_keeps_float32_params_and_close_loss(params):
  ids, mask, pos, labels, weights = _mlm_batch(np.random.default_rng(3), 2, 8, 2)
  batch = dict(input_ids=ids, attention_mask=mask, mlm_positions=pos, mlm_labels=labels, mlm_weights=weights)
  f32, _ = mlm.loss_fn(params, batch, None, config=CFG, dtype=jnp.float32, remat=False, attention='xla')
  bf16, _ = mlm.loss_fn(params, batch, None, config=CFG, dtype=jnp.bfloat16, remat=False, attention='xla')
  assert bf16.dtype == jnp.float32
  assert abs(float(f32) - float(bf16)) < 0.05 * float(f32)
  grads = jax.grad(lambda p: mlm.loss_fn(p, batch, None, config=CFG, dtype=jnp.bfloat16, remat=False,
                                         attention='xla')[0])(params)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))




def test_remat_recomputes_the_same_loss_and_gradients_with_less_memory(params):
  """model.remat (jax.checkpoint per layer) changes what is stored, not what is computed: with dropout on
  and the same key, loss and every gradient equal the plain step's (float32 reassociation only, 1e-6), and
  the gradient program recomputes each layer's forward: exactly 8 more matmuls per layer (Q, K, V, QK^T,
  PV, attention output, FFN in, FFN out). The memory saving itself is an accelerator effect: XLA's CPU
  buffer plan reports the same temporary bytes either way (measured), so it is not asserted here."""
  cfg = EncoderConfig(vocab_size=50, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32,
                      max_position_embeddings=64, hidden_dropout=0.1, attention_dropout=0.1)
  from jaxemb.models.encoder import init_params
  p = jax.tree.map(jnp.asarray, init_params(cfg, seed=5))
  ids, mask, pos, labels, weights = _mlm_batch(np.random.default_rng(4), 4, 64, 6)
  batch = dict(input_ids=ids, attention_mask=mask, mlm_positions=pos, mlm_labels=labels, mlm_weights=weights)
  key = jax.random.PRNGKey(9)

  def grad_fn(remat):
    return jax.jit(jax.value_and_grad(
        lambda q: mlm.loss_fn(q, batch, key, config=cfg, dtype=jnp.float32, remat=remat, attention='xla')[0]))

  (loss0, g0), (loss1, g1) = grad_fn(False)(p), grad_fn(True)(p)
  assert abs(float(loss0) - float(loss1)) < 1e-6
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
  dots = [grad_fn(r).lower(p).as_text().count("stablehlo.dot_general") for r in (False, True)]
  assert dots[1] == dots[0] + 8 * cfg.num_layers, dots
