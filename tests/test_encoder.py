"""The Flax encoder against PyTorch `transformers` outputs saved by scripts/make_reference_fixtures.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import FIXTURES, REPO
from jaxemb import Encoder
from jaxemb.models import convert
from jaxemb.models.config import EncoderConfig
from jaxemb.models.inference import pad_sequences
from jaxemb.models.dropout import dropout
from jaxemb.models.encoder import (attention_query_block, encode, gather_rows, mean_pool, mlm_logits,
                                   pooled_embeddings, rows_per_chunk)


@pytest.fixture(scope="module")
def minilm():
  return Encoder.from_pretrained("minilm")


def _load_fixture_model(folder: Path):
  config = EncoderConfig.from_file(folder / "config.json")
  params, names, extras, head = convert.import_hf_tensors(convert.read_safetensors(folder), config)
  return config, params, names, extras, head


def _masked_max_diff(a_BxLxD, b_BxLxD, mask_BxL):
  return float(np.abs((a_BxLxD - b_BxLxD) * mask_BxL[..., None]).max())


def test_minilm_embed_matches_torch_bertmodel(minilm):
  ref = load_file(str(FIXTURES / "minilm_reference.safetensors"))
  meta = json.loads((FIXTURES / "minilm_reference.json").read_text())
  X = minilm.embed(meta["texts"], batch_size=4, max_length=meta["max_length"])
  assert X.dtype == np.float32 and X.shape == ref["mean_pooled"].shape
  # Reference: torch BertModel + masked mean pooling (fixture). Tolerance from the issue: 1e-4.
  assert np.abs(X - ref["mean_pooled"]).max() < 1e-4
  # The tokenizer path agrees with the reference ids, including truncation at 64 and the empty string.
  ids = minilm.tokenize(meta["texts"], meta["max_length"])
  assert [len(x) for x in ids] == meta["n_tokens"]


def test_minilm_bfloat16_embed_is_close_to_the_torch_reference(minilm):
  """The opt-in bf16 compute path (eval.py --config.embed_dtype=bfloat16): same embeddings as torch's float32
  BertModel up to bf16 rounding (8 mantissa bits; 6 layers): cosine >= 0.999 per text (measured 0.9999+)."""
  ref = load_file(str(FIXTURES / "minilm_reference.safetensors"))["mean_pooled"]
  meta = json.loads((FIXTURES / "minilm_reference.json").read_text())
  X = minilm.embed(meta["texts"], batch_size=4, max_length=meta["max_length"], dtype="bfloat16")
  assert X.dtype == np.float32
  cos = (X * ref).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(ref, axis=1)
  assert cos.min() > 0.999, cos


def test_row_chunked_embedding_matches_the_torch_reference(minilm):
  """The CPU embedding path runs a batch in row chunks (lax.map) to keep attention scores in cache. Chunks of
  1 and 2 rows of a 4-row batch give the torch BertModel fixture's embeddings to the same 1e-4 as one pass."""
  ref = load_file(str(FIXTURES / "minilm_reference.safetensors"))["mean_pooled"]
  meta = json.loads((FIXTURES / "minilm_reference.json").read_text())
  ids = minilm.tokenize(meta["texts"], meta["max_length"])
  ids_BxL, mask_BxL = pad_sequences(ids[:4], 4, meta["max_length"], minilm.tokenizer.pad_token_id)
  whole = np.asarray(pooled_embeddings(minilm.params["encoder"], ids_BxL, mask_BxL, config=minilm.config))
  for rows in (1, 2):
    chunked = np.asarray(pooled_embeddings(minilm.params["encoder"], ids_BxL, mask_BxL, config=minilm.config,
                                           chunk_rows=rows))
    assert np.abs(chunked - ref[:4]).max() < 1e-4
    assert np.abs(chunked - whole).max() < 1e-5
  with pytest.raises(ValueError, match="must divide"):
    pooled_embeddings(minilm.params["encoder"], ids_BxL, mask_BxL, config=minilm.config, chunk_rows=3)


def test_rows_per_chunk_is_the_largest_divisor_within_the_token_budget():
  # 512 tokens a chunk: 32 x 128 -> 4 rows, 32 x 256 -> 2, 16 x 512 -> 1, 32 x 64 -> 8; a batch of 30 at
  # length 64 -> 6 (the largest divisor of 30 that is <= 8); a row longer than the budget still runs alone.
  assert rows_per_chunk(32, 128) == 4
  assert rows_per_chunk(32, 256) == 2
  assert rows_per_chunk(16, 512) == 1
  assert rows_per_chunk(32, 64) == 8
  assert rows_per_chunk(30, 64) == 6
  assert rows_per_chunk(4, 1024) == 1
  assert rows_per_chunk(3, 16, tokens=4096) == 3


def test_minilm_hidden_states_match_torch(minilm):
  ref = load_file(str(FIXTURES / "minilm_reference.safetensors"))
  h = encode(minilm.params["encoder"], ref["input_ids"], ref["attention_mask"], config=minilm.config,
             token_type_ids_BxL=ref["token_type_ids"])
  assert _masked_max_diff(np.asarray(h), ref["last_hidden_state"], ref["attention_mask"]) < 1e-4
  pooled = np.asarray(mean_pool(h, ref["attention_mask"]))
  assert np.abs(pooled - ref["mean_pooled"]).max() < 1e-4


def test_mlm_head_matches_torch_bertformaskedlm(minilm):
  """A BertForMaskedLM head (random, seeded in torch) imported by name gives the same logits at gathered
  positions as torch computing logits for every position and indexing them."""
  ref = load_file(str(FIXTURES / "minilm_mlm_reference.safetensors"))
  head_tensors = load_file(str(FIXTURES / "minilm_mlm_head.safetensors"))
  tensors = {**convert.read_safetensors(minilm.source_dir), **head_tensors}
  params, *_ = convert.import_hf_tensors(tensors, minilm.config)
  h = encode(params["encoder"], ref["input_ids"], ref["attention_mask"], config=minilm.config,
             token_type_ids_BxL=ref["token_type_ids"])
  logits = mlm_logits(params, gather_rows(h, ref["mlm_positions"]), config=minilm.config)
  assert logits.shape == ref["mlm_logits"].shape
  np.testing.assert_allclose(np.asarray(logits), ref["mlm_logits"], atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["tiny_roberta", "tiny_bert"])
def test_tiny_models_match_torch(name):
  config, params, _, _, head = _load_fixture_model(FIXTURES / name)
  assert head, "these fixtures are *ForMaskedLM checkpoints: the head must be loaded, not re-initialised"
  ref = load_file(str(FIXTURES / f"{name}_reference.safetensors"))
  h = encode(params["encoder"], ref["input_ids"], ref["attention_mask"], config=config,
             token_type_ids_BxL=ref.get("token_type_ids"))
  assert _masked_max_diff(np.asarray(h), ref["last_hidden_state"], ref["attention_mask"]) < 1e-5
  np.testing.assert_allclose(np.asarray(mean_pool(h, ref["attention_mask"])), ref["mean_pooled"], atol=1e-5)
  logits = np.asarray(mlm_logits(params, h, config=config))
  m = ref["attention_mask"][..., None] > 0
  assert np.abs(np.where(m, logits - ref["mlm_logits"], 0)).max() < 1e-4


def test_roundtrip_is_bit_identical(tmp_path):
  folder = FIXTURES / "tiny_roberta"
  original = convert.read_safetensors(folder)
  config, params, names, extras, _ = _load_fixture_model(folder)
  exported = convert.export_hf_tensors(params, names, extras)
  # Same names, same bits: the folder loads in transformers exactly as before.
  assert set(exported) == set(original)
  for k in original:
    assert original[k].dtype == exported[k].dtype and np.array_equal(original[k], exported[k]), k
  convert.save_tensors(exported, tmp_path / "model.safetensors")
  params2, *_ = convert.import_hf_tensors(convert.read_safetensors(tmp_path), config)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
    assert np.array_equal(a, b)


def test_minilm_save_pretrained_roundtrip(minilm, tmp_path):
  out = minilm.save_pretrained(tmp_path / "adapted")
  for f in ("config.json", "model.safetensors", "tokenizer.json", "modules.json"):
    assert (out / f).exists(), f
  original = set(convert.read_safetensors(minilm.source_dir))
  written = set(convert.read_safetensors(out))
  # BertModel names are kept (sentence-transformers loads them); the new MLM head is added under HF's names.
  assert original <= written
  assert written - original == {"cls.predictions.bias", "cls.predictions.transform.dense.weight",
                                "cls.predictions.transform.dense.bias",
                                "cls.predictions.transform.LayerNorm.weight",
                                "cls.predictions.transform.LayerNorm.bias"}
  again = Encoder.from_pretrained(out)
  assert again.head_loaded
  for a, b in zip(jax.tree.leaves(minilm.params), jax.tree.leaves(again.params)):
    assert np.array_equal(np.asarray(a), np.asarray(b))


def _write_folder(tmp_path, tensors, config_src=FIXTURES / "tiny_bert" / "config.json"):
  tmp_path.mkdir(parents=True, exist_ok=True)
  (tmp_path / "config.json").write_text(config_src.read_text())
  save_file(tensors, str(tmp_path / "model.safetensors"))
  return tmp_path


def test_mismatched_tensors_are_listed_in_one_error(tmp_path):
  t = convert.read_safetensors(FIXTURES / "tiny_bert")
  del t["bert.encoder.layer.1.output.dense.bias"]
  t["bert.encoder.layer.0.attention.self.query.weight"] = np.zeros((8, 8), np.float32)
  t["bert.encoder.layer.0.extra.weight"] = np.zeros((2,), np.float32)
  t["bert.pooler.dense.weight"] = np.zeros((32, 32), np.float32)  # ignorable by name
  config = EncoderConfig.from_file(FIXTURES / "tiny_bert" / "config.json")
  with pytest.raises(convert.WeightsError) as e:
    convert.import_hf_tensors(t, config, source="x/model.safetensors")
  msg = str(e.value)
  assert "missing (1): bert.encoder.layer.1.output.dense.bias" in msg
  assert "unexpected (1): bert.encoder.layer.0.extra.weight" in msg
  assert "bert.encoder.layer.0.attention.self.query.weight: shape (8, 8), config expects (32, 32)" in msg
  assert "pooler" not in msg


def test_pickle_checkpoints_are_refused(tmp_path):
  (tmp_path / "config.json").write_text((FIXTURES / "tiny_bert" / "config.json").read_text())
  (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
  with pytest.raises(convert.WeightsError, match="refuses pickle"):
    Encoder.from_pretrained(tmp_path)


def test_bad_model_paths(tmp_path):
  with pytest.raises(FileNotFoundError):
    Encoder.from_pretrained(tmp_path / "nope")
  with pytest.raises(ValueError, match="neither a Hugging Face model folder"):
    Encoder.from_pretrained(tmp_path)


def test_embed_order_truncation_and_errors(tiny_model_dir):
  enc = Encoder.from_pretrained(tiny_model_dir)
  texts = ["short", "", "a much longer text about the patient's chest pain " * 20, "mid length note here"]
  X = enc.embed(texts, batch_size=2, max_length=32)
  # Order is kept although batches are sorted by length: each row equals embedding the text alone.
  for i, t in enumerate(texts):
    np.testing.assert_allclose(X[i], enc.embed([t], batch_size=1, max_length=32)[0], atol=1e-5)
  # Truncation counts the special tokens: the long text is exactly 32 tokens.
  assert len(enc.tokenize(texts[2:3], 32)[0]) == 32
  Xn = enc.embed(texts, max_length=32, normalize=True)
  np.testing.assert_allclose(np.linalg.norm(Xn, axis=1), 1.0, atol=1e-5)
  with pytest.raises(TypeError, match=r"texts\[1\] is int"):
    enc.embed(["ok", 3])
  with pytest.raises(TypeError, match="single string"):
    enc.embed("a string")
  with pytest.raises(ValueError, match="exceeds"):
    enc.embed(["x"], max_length=4096)
  assert enc.embed([]).shape == (0, 32)


def test_embed_reuses_the_device_copy_of_the_parameters_only_while_they_are_unchanged(tiny_model_dir):
  """embed() keeps one device copy of the (read-only, loaded) parameters across calls; a new parameter array
  (replace_params, or one leaf swapped in place) gets a new copy, so results are never stale; writable numpy
  parameters are copied on every call."""
  enc = Encoder.from_pretrained(tiny_model_dir)
  texts = ["chest pain for two days", "no acute distress"]
  leaves = jax.tree.leaves(enc.params["encoder"])
  assert all(isinstance(x, np.ndarray) and not x.flags.writeable for x in leaves)
  X = enc.embed(texts)
  placed = enc._placed[2]
  np.testing.assert_array_equal(enc.embed(texts), X)
  assert enc._placed[2] is placed  # reused

  doubled = jax.tree.map(lambda a: np.asarray(a) * 2, enc.params)  # writable arrays
  enc2 = enc.replace_params(doubled)
  X2 = enc2.embed(texts)
  assert enc2._placed is None and np.abs(X2 - X).max() > 1e-3
  # The same function of the parameters as a fresh encoder built from them (no stale copy on either side).
  enc3 = Encoder.from_pretrained(tiny_model_dir).replace_params(jax.tree.map(jnp.asarray, doubled))
  np.testing.assert_allclose(enc3.embed(texts), X2, atol=1e-6)
  np.testing.assert_allclose(enc.embed(texts), X, atol=0)

  # A leaf swapped inside the same dict: a new copy, a new result.
  layer = enc.params["encoder"]["embeddings"]["word_embeddings"]
  old = layer["embedding"]
  # (a random change: the embedding LayerNorm would cancel a constant shift or a scale)
  layer["embedding"] = old + np.random.default_rng(0).normal(size=old.shape).astype(np.float32)
  assert np.abs(enc.embed(texts) - X).max() > 1e-3
  layer["embedding"] = old
  np.testing.assert_allclose(enc.embed(texts), X, atol=0)


def test_attention_query_block_rule_hand_values():
  """Blocks only when a chunk's float32 scores (rows x heads x L^2 x 4 bytes) pass 8 MiB; then the largest of
  128/96/64/32 that divides L. 2 x 12 x 256^2 x 4 = 6 MiB; 1 x 12 x 384^2 x 4 = 6.75 MiB; 512: 12 MiB."""
  assert attention_query_block(2, 256, 12) == 0
  assert attention_query_block(1, 384, 12) == 0
  assert attention_query_block(1, 512, 12) == 128
  assert attention_query_block(1, 480, 12) == 96       # 480 = 5 x 96
  assert attention_query_block(1, 448, 12) == 64       # 448 = 7 x 64
  assert attention_query_block(1, 544, 12) == 32       # 544 = 17 x 32
  assert attention_query_block(1, 512, 12, threshold_bytes=16 << 20) == 0


def test_query_blocked_attention_is_the_same_function(tiny_model_dir):
  """Attention over blocks of queries (lax.map) = attention over all queries at once, to float rounding,
  padding included; blocks must divide the length and take no dropout."""
  config, params, *_ = _load_fixture_model(tiny_model_dir)
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(1000, 20000, (3, 64)), jnp.int32)
  mask = jnp.asarray(np.arange(64)[None, :] < np.array([[64], [40], [7]]), jnp.int32)
  whole = encode(params["encoder"], ids, mask, config=config)
  for qb in (32, 16):
    blocked = encode(params["encoder"], ids, mask, config=config, query_block=qb)
    assert _masked_max_diff(np.asarray(blocked), np.asarray(whole), np.asarray(mask)) < 1e-5
  pooled = pooled_embeddings(params["encoder"], ids, mask, config=config, chunk_rows=1, query_block=16)
  np.testing.assert_allclose(pooled, pooled_embeddings(params["encoder"], ids, mask, config=config), atol=1e-5)
  with pytest.raises(ValueError, match="must divide"):
    encode(params["encoder"], ids, mask, config=config, query_block=24)
  with pytest.raises(ValueError, match="no dropout"):
    encode(params["encoder"], ids, mask, config=config, query_block=16, dropout_rng=jax.random.PRNGKey(0))


def test_dropout_only_with_rng():
  x = jnp.ones((64, 128))
  assert dropout(x, 0.1, None) is x
  y = np.asarray(dropout(x, 0.1, jax.random.PRNGKey(0)))
  kept = y != 0
  # 8192 Bernoulli(0.9) draws: 0.9 +- 4 sigma (sigma = 0.0033); kept values rescaled by 1/0.9 (threshold
  # round(0.1 * 2^32) = 429496730, keep_prob = 1 - 429496730 / 2^32).
  assert abs(kept.mean() - 0.9) < 0.014
  np.testing.assert_allclose(y[kept], 1 / (1 - 429496730 / 2**32), rtol=1e-6)


def test_dropout_decisions_behave_like_independent_draws():
  """The hashed-counter masks, checked against what independent Bernoulli(keep) draws give (closed forms):
  rate over 2^20 elements within 4 sigma; neighbours along either axis kept together with probability
  keep^2 (a counter hash with poor mixing would correlate them); masks of two keys, and of rates 0.1 / 0.5,
  agree only as often as independent masks would."""
  n_rows, n_cols = 1024, 1024
  x = jnp.ones((n_rows, n_cols))
  for rate in (0.1, 0.5):
    keep = 1 - rate
    k1 = np.asarray(dropout(x, rate, jax.random.PRNGKey(1))) != 0
    k2 = np.asarray(dropout(x, rate, jax.random.PRNGKey(2))) != 0
    sigma = np.sqrt(keep * (1 - keep) / k1.size)
    assert abs(k1.mean() - keep) < 4 * sigma
    for both in ((k1[:, 1:] & k1[:, :-1]).mean(), (k1[1:, :] & k1[:-1, :]).mean(), (k1 & k2).mean()):
      # a product of two Bernoulli(keep): mean keep^2, sigma <= sqrt(keep^2 (1 - keep^2) / n) (+ margin)
      assert abs(both - keep**2) < 5 * np.sqrt(keep**2 * (1 - keep**2) / k1.size), (rate, both)


def test_sharded_embed_equals_single_device(tiny_model_dir):
  code = f"""
import numpy as np, jax
from jaxemb import Encoder
assert jax.device_count() == 4
enc = Encoder.from_pretrained({str(tiny_model_dir)!r})
texts = ["note %d about dyspnea" % i * (i % 7 + 1) for i in range(13)]
np.save({str(tiny_model_dir / 'multi.npy')!r}, enc.embed(texts, batch_size=8, max_length=64))
# 16 rows of ~200 tokens: 4 rows a device, which each device runs in chunks of 2 (shard_map + lax.map).
long = ["chest pain radiating to the left arm, troponin negative %d " % i * (i % 3 + 14) for i in range(16)]
np.save({str(tiny_model_dir / 'multi_long.npy')!r}, enc.embed(long, batch_size=16, max_length=256))
"""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": str(REPO)}
  subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
  enc = Encoder.from_pretrained(tiny_model_dir)
  texts = ["note %d about dyspnea" % i * (i % 7 + 1) for i in range(13)]
  single = enc.embed(texts, batch_size=8, max_length=64)
  np.testing.assert_allclose(np.load(tiny_model_dir / "multi.npy"), single, atol=1e-5)
  long = ["chest pain radiating to the left arm, troponin negative %d " % i * (i % 3 + 14) for i in range(16)]
  assert 128 < max(len(x) for x in enc.tokenize(long, 256)) <= 256
  single_long = enc.embed(long, batch_size=16, max_length=256)
  np.testing.assert_allclose(np.load(tiny_model_dir / "multi_long.npy"), single_long, atol=1e-5)
