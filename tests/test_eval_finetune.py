"""Fine-tuning on the tiny random model: freezing, NEFTune noise, early-stopping bookkeeping."""

import numpy as np
import pytest

from jaxemb.eval.finetune import FinetuneSettings, finetune, frozen_subtrees

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
  from jaxemb import Encoder
  enc = Encoder.from_pretrained(tiny_model_dir)
  texts = [f"{w} note {i}" for i, w in enumerate(["cardiac murmur", "skin rash", "renal failure"] * 8)]
  y = np.arange(len(texts)) % 3
  return enc, enc.tokenize(texts, 16), y


def _run(tiny, **kw):
  enc, ids, y = tiny
  settings = FinetuneSettings(batch_size=8, eval_batch_size=8, max_epochs=2, max_length=16, **kw)
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


def test_neftune_noise_reaches_training(tiny, frozen_run):
  noisy = _run(tiny, freeze_layers=1, neftune_alpha=15.0)
  assert noisy.steps_run == frozen_run.steps_run
  w = lambda r: np.asarray(r.params["encoder"]["layer_1"]["output"]["dense"]["weight"])
  # same seed, same batches, same dropout: only the embedding noise differs
  assert not np.allclose(w(frozen_run), w(noisy))
