"""Whole-document embeddings (jaxemb/models/windows.py, Encoder.embed(window=...)): window spans by hand,
poolings against NumPy recomputations, and the encoder path against windows embedded one at a time."""

import numpy as np
import pytest

from jaxemb.models.windows import POOLINGS, Pooler, Windowing

SHORT = ["chest pain", "Pt c/o SOB, hx of CHF.", "denies fever", "BP 120/80"]
LONG = " ".join(f"word{i} pain fever cough" for i in range(60))  # ~300 tokens


def test_spans_hand_values():
  # window 8 with 2 special tokens = 6 text tokens; stride 2 overlap -> starts 0, 4, 8, 12
  w = Windowing(window=8, stride=2, pooling="mean")
  assert w.spans(13) == [(0, 6), (4, 10), (8, 13)]
  assert w.spans(6) == [(0, 6)]           # fits one window exactly
  assert w.spans(7) == [(0, 6), (4, 7)]
  assert w.spans(0) == [(0, 0)]           # an empty text: its special tokens alone, as truncation embeds it
  assert Windowing(8, 0, "mean").spans(13) == [(0, 6), (6, 12), (12, 13)]
  assert Windowing(8, 2, "mean", max_windows=2).spans(100) == [(0, 6), (4, 10)]


@pytest.mark.parametrize("bad, msg", [
    (Windowing(0, 0, "mean"), "needs windows"),
    (Windowing(64, 0, "avg"), "not one of"),
    (Windowing(2, 0, "mean"), "no room"),
    (Windowing(64, 62, "mean"), "stride 62"),
    (Windowing(1024, 0, "mean"), "position table"),
])
def test_bad_settings_name_the_setting(bad, msg):
  with pytest.raises(ValueError, match=msg):
    bad.check(2, 512)


def test_pooler_against_numpy():
  rng = np.random.default_rng(0)
  v = rng.normal(size=(5, 3)).astype(np.float32)
  doc = np.array([1, 0, 1, 1, 2])
  first = np.array([True, True, False, False, True])
  tokens = np.array([10.0, 7.0, 10.0, 4.0, 3.0])
  p = Pooler(3, 3, POOLINGS)
  # added in two passes and out of order: pools must not depend on either
  p.add(doc[3:], first[3:], tokens[3:], v[3:])
  p.add(doc[:3], first[:3], tokens[:3], v[:3])
  d1 = [0, 2, 3]  # document 1's windows, first window = row 0
  np.testing.assert_allclose(p.result("mean")[1], (v[d1] * tokens[d1, None]).sum(0) / tokens[d1].sum(), rtol=1e-6)
  np.testing.assert_allclose(p.result("mean_unweighted")[1], v[d1].mean(0), rtol=1e-6)
  np.testing.assert_array_equal(p.result("max")[1], v[d1].max(0))
  np.testing.assert_array_equal(p.result("first")[1], v[0])
  np.testing.assert_array_equal(p.result("mean_max")[1], np.concatenate([p.result("mean")[1], v[d1].max(0)]))
  for pooling in ("first", "mean", "mean_unweighted", "max"):  # one-window documents: that window, bit for bit
    np.testing.assert_array_equal(p.result(pooling)[[0, 2]], v[[1, 4]])


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
  from jaxemb import Encoder
  return Encoder.from_pretrained(tiny_model_dir)


def test_short_documents_get_exactly_the_truncated_vector(tiny):
  today = tiny.embed(SHORT, batch_size=4, max_length=64)
  out = tiny.embed_documents(SHORT, Windowing(64, 16, "mean"), poolings=POOLINGS, batch_size=4)
  for pooling in ("first", "mean", "mean_unweighted", "max"):
    np.testing.assert_array_equal(out[pooling], today, err_msg=pooling)
  np.testing.assert_array_equal(out["mean_max"], np.concatenate([today, today], 1))
  np.testing.assert_array_equal(tiny.embed(SHORT, batch_size=4, window=64, pooling="mean"), today)


def test_first_pooling_is_truncation_for_long_documents(tiny):
  texts = [LONG, *SHORT]
  np.testing.assert_allclose(tiny.embed(texts, batch_size=4, window=64, pooling="first"),
                             tiny.embed(texts, batch_size=4, max_length=64), rtol=1e-5, atol=1e-6)


def test_long_document_against_windows_embedded_one_by_one(tiny):
  """The independent route: the text's ids cut by hand (stride 8 -> 54 new tokens per 62-token window),
  each window wrapped in [CLS] .. [SEP] and embedded alone (no batching, no padding), pooled in NumPy."""
  from jaxemb.models.encoder import pooled_embeddings
  tok = tiny.tokenizer(LONG, add_special_tokens=False)["input_ids"]
  cls, sep = tiny.tokenizer.cls_token_id, tiny.tokenizer.sep_token_id
  starts = list(range(0, len(tok) - 8, 54))
  windows = [[cls, *tok[s:s + 62], sep] for s in starts]
  assert len(windows) >= 4 and windows[-1][-2] == tok[-1]
  v = np.stack([np.asarray(pooled_embeddings(tiny.params["encoder"], np.array([w], np.int32),
                                             np.ones((1, len(w)), np.int32), config=tiny.config))[0]
                for w in windows])
  n = np.array([len(w) for w in windows], np.float64)
  out = tiny.embed_documents([SHORT[0], LONG], Windowing(64, 8, "mean"), poolings=POOLINGS, batch_size=4,
                             windows_per_pass=3, docs_per_pass=1)  # several passes: streaming keeps the pools
  np.testing.assert_allclose(out["mean"][1], (v * n[:, None]).sum(0) / n.sum(), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out["mean_unweighted"][1], v.mean(0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out["max"][1], v.max(0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out["first"][1], v[0], rtol=1e-4, atol=1e-5)
  capped = tiny.embed([LONG], batch_size=4, window=64, stride=8, pooling="mean_unweighted", max_windows=2)
  np.testing.assert_allclose(capped[0], v[:2].mean(0), rtol=1e-4, atol=1e-5)


def test_pooling_without_windows_is_an_error(tiny):
  with pytest.raises(ValueError, match="needs windows"):
    tiny.embed(SHORT, pooling="mean")
