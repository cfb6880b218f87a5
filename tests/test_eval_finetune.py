"""Fine-tuning on the tiny random model: freezing, NEFTune noise (its scale; training only), early stop."""

import numpy as np
import pytest

from jaxemb.eval.finetune import FinetuneSettings, finetune, frozen_subtrees

pytestmark = pytest.mark.slow

# configs/eval.py's fine-tuning values (FinetuneSettings has no defaults), shrunk for the tiny model
TINY = dict(lr=5e-5, head_lr=1e-3, weight_decay=0.01, warmup_frac=0.1, batch_size=8, eval_batch_size=8, max_epochs=2,
            eval_every=0, patience=3, freeze_layers=0, neftune_alpha=0.0, head_dropout=0.1, max_length=16)


def _settings(**kw) -> FinetuneSettings:
  return FinetuneSettings(**{**TINY, **kw})


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
  from jaxemb import Encoder
  enc = Encoder.from_pretrained(tiny_model_dir)
  texts = [f"{w} note {i}" for i, w in enumerate(["cardiac murmur", "skin rash", "renal failure"] * 8)]
  y = np.arange(len(texts)) % 3
  return enc, enc.tokenize(texts, 16), y


def _run(tiny, **kw):
  enc, ids, y = tiny
  settings = _settings(**kw)
  return finetune(enc.params["encoder"], enc.config, ids, y, np.arange(12), np.arange(12, 18),
                  np.arange(12, 24), num_classes=3, seed=0, settings=settings, pad_id=0)


@pytest.fixture(scope="module")
def frozen_run(tiny):
  return _run(tiny, freeze_layers=1)


def test_freeze_layers_keeps_embeddings_and_first_layers_out_of_training(tiny, frozen_run):
  enc, res = tiny[0], frozen_run
  assert frozen_subtrees(enc.config, 0) == ()
  assert frozen_subtrees(enc.config, 1) == ("embeddings", "layer_0")
  with pytest.raises(ValueError, match="freeze_layers"):
    frozen_subtrees(enc.config, enc.config.num_layers + 1)
  assert set(res.params["encoder"]) == {"layer_1"}  # the only trainable encoder subtree of a 2-layer model
  before = np.asarray(enc.params["encoder"]["layer_1"]["output"]["dense"]["weight"])
  after = np.asarray(res.params["encoder"]["layer_1"]["output"]["dense"]["weight"])
  assert res.best_step > 0 and not np.allclose(before, after)
  assert 0 < res.best_step <= res.steps_run
  assert res.probs_ExC.shape == (12, 3)
  np.testing.assert_allclose(res.probs_ExC.sum(1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def neftune_run(tiny):
  return _run(tiny, freeze_layers=1, neftune_alpha=15.0)


def test_neftune_noise_reaches_training(tiny, frozen_run, neftune_run):
  noisy = neftune_run
  assert noisy.steps_run == frozen_run.steps_run
  w = lambda r: np.asarray(r.params["encoder"]["layer_1"]["output"]["dense"]["weight"])
  # same seed, same batches, same dropout: only the embedding noise differs
  assert not np.allclose(w(frozen_run), w(noisy))


def _embedding_layernorm_input(config, params_encoder, ids, mask, alpha, noise_rng):
  """The embeddings' pre-LayerNorm sum (word + position + type [+ NEFTune noise]) of a forward pass."""
  import flax.linen as nn

  from jaxemb.models.encoder import encode
  seen = {}

  def grab(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and context.module.path == ("embeddings", "LayerNorm"):
      seen["x"] = np.asarray(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(grab):
    encode(params_encoder, ids, mask, config=config, embed_noise_alpha=alpha, noise_rng=noise_rng)
  return seen["x"]


def test_neftune_noise_scale_is_alpha_over_sqrt_length_times_dim(tiny):
  """NEFTune (Jain et al. 2023): Uniform(-1, 1) * alpha / sqrt(L d), L = the row's real tokens. Uniform(-1, 1)
  has std 1/sqrt(3), so the noise of a row is bounded by alpha / sqrt(L d) with std alpha / sqrt(3 L d);
  padding positions get none."""
  import jax
  enc = tiny[0]
  d, alpha, length = enc.config.hidden_size, 10.0, 64
  real_B = np.array([64, 40, 16, 5])
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, 2000, (len(real_B), length)).astype(np.int32)
  mask = (np.arange(length)[None, :] < real_B[:, None]).astype(np.int32)
  clean = _embedding_layernorm_input(enc.config, enc.params["encoder"], ids, mask, 0.0, None)
  noisy = _embedding_layernorm_input(enc.config, enc.params["encoder"], ids, mask, alpha,
                                     jax.random.PRNGKey(3))
  noise = noisy - clean
  for b, n in enumerate(real_B):
    bound = alpha / np.sqrt(n * d)
    row = noise[b, :n]                       # n x d draws
    assert np.abs(row).max() <= bound * (1 + 1e-5)
    assert np.abs(row).max() > 0.9 * bound   # the whole interval is used (n d >= 160 draws)
    # std of n d >= 160 uniform draws: relative standard error sqrt(0.8 / (4 n d)) <= 3.6%; allow 4 of them
    np.testing.assert_allclose(row.std(), alpha / np.sqrt(3 * n * d), rtol=0.15)
    assert np.all(noise[b, n:] == 0.0)       # padding positions


def test_neftune_evaluation_is_noise_free(tiny, neftune_run):
  """The probabilities a NEFTune fine-tune reports come from the plain encoder: recomputing them from the
  kept parameters with no noise and no dropout gives the same numbers, and so does an alpha=0 evaluator."""
  import jax

  from jaxemb.eval.finetune import _compiled, _predict
  from jaxemb.eval.heads import apply_head
  from jaxemb.models.encoder import encode, mean_pool
  enc, ids, y = tiny
  settings = _settings(freeze_layers=1, neftune_alpha=15.0)
  res = neftune_run
  frozen = {k: v for k, v in enc.params["encoder"].items() if k in ("embeddings", "layer_0")}
  eval_rows = np.arange(12, 24)
  # the evaluator of the alpha=15 settings and of alpha=0 give identical, repeatable probabilities
  _, _, eval_noisy = _compiled(enc.config, settings, 3)
  _, _, eval_plain = _compiled(enc.config, _settings(freeze_layers=1), 3)
  p1 = _predict(eval_noisy, res.params, frozen, ids, eval_rows, settings, 0)
  p2 = _predict(eval_noisy, res.params, frozen, ids, eval_rows, settings, 0)
  p3 = _predict(eval_plain, res.params, frozen, ids, eval_rows, settings, 0)
  np.testing.assert_array_equal(p1, p2)
  np.testing.assert_allclose(p1, p3, atol=1e-6)
  np.testing.assert_allclose(res.probs_ExC, p1, atol=1e-6)
  # and from the encoder called directly, without noise or dropout
  from jaxemb.models.inference import pad_sequences
  ids_BxL, mask_BxL = pad_sequences([ids[i] for i in eval_rows], len(eval_rows), 16, 0)
  hidden = encode({**frozen, **res.params["encoder"]}, ids_BxL, mask_BxL, config=enc.config)
  probs = jax.nn.softmax(apply_head("probe", res.params["head"], mean_pool(hidden, mask_BxL)), -1)
  np.testing.assert_allclose(res.probs_ExC, np.asarray(probs), atol=1e-5)
