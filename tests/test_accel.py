"""Accelerator readiness, checked on CPU by what the compiler is given (issue 23): bf16 dots in the forward and
the backward, the fused attention path, dropout at global batches past 2^32 elements, prefetching."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO


def _config(name: str, arg: str = "smoke"):
  sys.path.insert(0, str(REPO / "tests"))
  from test_train import _config as load
  return load(name, arg)


# ------------------------------------------------------------------------------------------- mixed precision
def test_lowp_einsum_gradients_are_compute_dtype_dots_with_float32_accumulation():
  """Reference: float32 einsums of the bf16-rounded operands and the bf16-rounded cotangent (products of bf16
  values are exact in float32, so only the summation order can differ)."""
  from jaxemb.models import precision
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((2, 3, 5, 8)), jnp.float32)
  b = jnp.asarray(rng.standard_normal((2, 3, 7, 8)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((2, 3, 5, 7)), jnp.float32)
  spec = "bhqd,bhkd->bhqk"
  y, vjp = jax.vjp(lambda a, b: precision.einsum(spec, a, b, jnp.bfloat16), a, b)
  da, db = vjp(g)
  r = lambda x: x.astype(jnp.bfloat16).astype(jnp.float32)
  hi = jax.lax.Precision.HIGHEST
  np.testing.assert_allclose(y, jnp.einsum(spec, r(a), r(b), precision=hi), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(da, jnp.einsum("bhqk,bhkd->bhqd", r(g), r(b), precision=hi), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(db, jnp.einsum("bhqd,bhqk->bhkd", r(a), r(g), precision=hi), rtol=1e-6, atol=1e-6)
  assert y.dtype == da.dtype == db.dtype == jnp.float32
  # and the dense form (weights stored out x in) against the same reference
  w = jnp.asarray(rng.standard_normal((4, 8)), jnp.float32)
  _, vjp = jax.vjp(lambda x, w: precision.dense(x, w, jnp.bfloat16), a, w)
  gd = jnp.asarray(rng.standard_normal((2, 3, 5, 4)), jnp.float32)
  dx, dw = vjp(gd)
  np.testing.assert_allclose(dw, jnp.einsum("bhqo,bhqi->oi", r(gd), r(a), precision=hi), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, jnp.einsum("bhqo,oi->bhqi", r(gd), r(w), precision=hi), rtol=1e-6, atol=1e-6)


def _lowered_step(objective, model_dir, **model):
  """HLO text (before XLA's optimisations) of the objective's smoke train step on one device."""
  from jax.sharding import Mesh
  from jaxemb import Encoder
  from jaxemb.train.loop import _pad_lengths, build_state_and_step, open_corpus, pad_to
  cfg = _config(objective)
  cfg.model.init = str(model_dir)
  for k, v in model.items():
    cfg.model[k] = v
  enc = Encoder.from_pretrained(model_dir)
  _, _, batches = open_corpus(cfg, enc.tokenizer)
  batch = pad_to(batches.batch(0), _pad_lengths(cfg))
  state, step = build_state_and_step(cfg, enc, batches, Mesh(np.array(jax.devices()[:1]), ("data",)))
  lowered = step.lower(state, batch)
  return lowered.as_text(dialect="hlo"), lowered.as_text()


@pytest.mark.parametrize("objective", ["mlm", "simcse", "declutr", "metadata"])
def test_bf16_train_step_runs_its_dots_on_bf16_operands(objective, tiny_model_dir):
  """Issue 23's criterion: >= 90% of the dot FLOPs of the bf16 train step have bf16 operands (33% before the
  custom VJP: the backward's dots took the float32 cotangent). What stays float32 is the contrastive
  similarity matrix (HIGHEST precision on purpose, losses.py) and the metadata classify head."""
  from jaxemb.train import hlo
  text, stablehlo = _lowered_step(objective, tiny_model_dir, dtype="bfloat16")
  dots = hlo.dots(text)
  # The parser sees every dot: an independent count on the StableHLO text of the same lowering.
  assert len(dots) == stablehlo.count("stablehlo.dot_general") > 0
  shares = hlo.dtype_shares(text)
  assert shares.get("bf16 x bf16", 0.0) >= 0.9, shares
  f32 = [d for d in dots if d.lhs_dtype == "f32"]
  if objective == "mlm":
    assert not f32, f32
  # float32 config: every dot float32 (the counter's other side).
  text32, _ = _lowered_step(objective, tiny_model_dir)
  assert hlo.dtype_shares(text32)["f32 x f32"] == 1.0


def test_dot_flops_are_counted_from_the_shapes():
  from jaxemb.train import hlo
  f = lambda a, b: jnp.einsum("bij,bjk->bik", a, b)
  text = jax.jit(f).lower(jnp.ones((3, 4, 5)), jnp.ones((3, 5, 6), jnp.bfloat16)).as_text(dialect="hlo")
  (d,) = hlo.dots(text)
  assert d.flops == 2 * 3 * 4 * 6 * 5 and d.lhs_dtype == "f32"  # the bf16 operand was promoted first
  # XLA's --xla_dump_to `*before_optimizations.txt` spelling (names with %), as the issue measures it.
  dump = """  %p.1 = bf16[4,64,384]{2,1,0} parameter(0)
  %p.2 = bf16[384,384]{1,0} parameter(1)
  %dot_general.150 = f32[4,64,384]{2,1,0} dot(%p.1, %p.2), lhs_contracting_dims={2}, rhs_contracting_dims={1}"""
  assert hlo.dots(dump) == [hlo.Dot("bf16", "bf16", "f32", 2 * 4 * 64 * 384 * 384)]


# ------------------------------------------------------------------------------------------- attention
def _tiny_config(**kw):
  from jaxemb.models.config import EncoderConfig
  base = dict(family="bert", vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
              max_position_embeddings=64)
  return EncoderConfig(**{**base, **kw})


def test_dot_product_attention_matches_the_xla_attention_forward_and_gradients():
  """jax.nn.dot_product_attention (XLA's implementation on CPU) against the hand-written path, float32, with
  padding, and with hidden dropout on but attention dropout 0 (the fused path drops no probabilities; its
  other dropout masks are the xla path's)."""
  from jaxemb.models.encoder import encode, init_params, mean_pool
  config = _tiny_config(attention_dropout=0.0, hidden_dropout=0.1)
  params = init_params(config, seed=1)["encoder"]
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(1, 100, (3, 16)), jnp.int32)
  mask = jnp.asarray(np.arange(16)[None, :] < np.array([[16], [9], [3]]), jnp.int32)

  def loss(p, attention):
    h = encode(p, ids, mask, config=config, dropout_rng=jax.random.PRNGKey(3), attention=attention)
    return jnp.sum(mean_pool(h, mask) ** 2), h

  (l_x, h_x), g_x = jax.value_and_grad(loss, has_aux=True)(params, "xla")
  (l_d, h_d), g_d = jax.value_and_grad(loss, has_aux=True)(params, "dot_product_attention")
  m = np.asarray(mask, bool)
  np.testing.assert_allclose(np.asarray(h_d)[m], np.asarray(h_x)[m], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(l_d, l_x, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g_d), jax.tree.leaves(g_x)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_unknown_attention_is_refused():
  from jaxemb.models.encoder import encode, init_params
  config = _tiny_config()
  ids = jnp.ones((1, 4), jnp.int32)
  with pytest.raises(ValueError, match="model.attention"):
    encode(init_params(config)["encoder"], ids, ids, config=config, attention="flash")


# ------------------------------------------------------------------------------------------- dropout at scale
def _mix32_np(h):
  h = h ^ (h >> np.uint64(16))
  h = (h * np.uint64(0x85EBCA6B)) & np.uint64(0xFFFFFFFF)
  h = h ^ (h >> np.uint64(13))
  h = (h * np.uint64(0xC2B2AE35)) & np.uint64(0xFFFFFFFF)
  return h ^ (h >> np.uint64(16))


def _hash_np(flat_index: np.ndarray, s0: int, s1: int) -> np.ndarray:
  """The documented formula in numpy uint64 (an independent implementation of hash_bits at any position)."""
  i = flat_index.astype(np.uint64)
  lo, hi = i & np.uint64(0xFFFFFFFF), i >> np.uint64(32)
  inner = (_mix32_np(lo ^ np.uint64(s0)) + np.uint64(s1) + hi * np.uint64(0x9E3779B9)) & np.uint64(0xFFFFFFFF)
  return _mix32_np(inner).astype(np.uint32)


def test_hash_bits_is_the_documented_function_of_the_global_position():
  from jaxemb.models.dropout import hash_bits, mul_wide
  s0, s1 = 0x12345678, 0x9ABCDEF0
  shape = (3, 5, 7)
  narrow = np.asarray(hash_bits(shape, jnp.uint32(s0), jnp.uint32(s1)))
  np.testing.assert_array_equal(narrow.ravel(), _hash_np(np.arange(105), s0, s1))
  # The wide form (row x column words) is the same function where both apply.
  wide = np.asarray(hash_bits(shape, jnp.uint32(s0), jnp.uint32(s1), wide_from=1))
  np.testing.assert_array_equal(wide, narrow)
  # Its 64-bit index arithmetic, against Python integers, including rows whose index passes 2^32.
  rng = np.random.default_rng(0)
  a, b = rng.integers(0, 2**32, 500, dtype=np.uint64), rng.integers(0, 2**32, 500, dtype=np.uint64)
  hi, lo = (np.asarray(x) for x in mul_wide(jnp.asarray(a.astype(np.uint32)), jnp.asarray(b.astype(np.uint32))))
  assert [(int(h) << 32) | int(l) for h, l in zip(hi, lo)] == [int(x) * int(y) for x, y in zip(a, b)]


def test_hash_bits_past_two_to_the_32_elements_by_abstract_evaluation_and_a_slice():
  """A 12 x 2^29 x 2 array (3 * 2^32 elements) is traced, not materialised; a jitted slice of it at indices past
  2^32 and 2^33 is computed and compared with the numpy formula."""
  from jaxemb.models.dropout import hash_bits
  shape = (12, 2**29, 2)
  out = jax.eval_shape(lambda: hash_bits(shape, jnp.uint32(1), jnp.uint32(2)))
  assert out.shape == shape and out.dtype == jnp.uint32
  # XLA fuses the slice into the hash: only the slice's elements are computed.
  got = np.asarray(jax.jit(lambda: hash_bits(shape, jnp.uint32(1), jnp.uint32(2))[9, 2**29 - 3:, :])())
  flat = 9 * 2**30 + np.arange(2**30 - 6, 2**30)
  np.testing.assert_array_equal(got.ravel(), _hash_np(flat, 1, 2))


@pytest.mark.parametrize("rows,length", [(8192, 256), (1400, 512)])
def test_train_step_traces_at_global_batches_past_two_to_the_32_dropout_elements(rows, length):
  """SimCSE at 4096 pairs x 256 tokens (8192 rows) and 700 pairs x 512 tokens (1400 rows), traced by abstract
  evaluation (jax.eval_shape: no compile, no run). A 1-layer encoder of hidden 32 with 16 heads has MiniLM's
  attention-dropout sizes and more (8192 x 16 x 256^2 = 8.6e9 and 1400 x 16 x 512^2 = 5.9e9 elements, past
  2^32 = 4.3e9; MiniLM's 12 heads give 6.4e9 and 4.4e9). hash_bits raised at trace time there before."""
  from jax.sharding import Mesh
  from jaxemb import Encoder
  from jaxemb.train.loop import build_state_and_step
  config = _tiny_config(num_heads=16, num_layers=1, max_position_embeddings=512).replace(vocab_size=30522)
  enc = Encoder.from_config(config, seed=0, name="wide")
  cfg = _config("simcse")
  cfg.batch_size = rows // 2
  cfg.data.max_length = length
  state, step = build_state_and_step(cfg, enc, None, Mesh(np.array(jax.devices()[:1]), ("data",)))
  spec = jax.ShapeDtypeStruct((rows // 2, length), jnp.int32)
  batch = {"input_ids": spec, "attention_mask": spec, "positive_ids": spec, "positive_mask": spec,
           "dup": jax.ShapeDtypeStruct((rows // 2,), jnp.int32)}
  assert rows * 16 * length**2 >= 2**32
  _, metrics = jax.eval_shape(step, state, batch)
  assert metrics["loss"].shape == () and metrics["loss"].dtype == jnp.float32


# ------------------------------------------------------------------------------------------- input pipeline
def test_prefetch_keeps_order_runs_ahead_by_depth_and_raises_the_producers_error():
  import time
  from jaxemb.train.prefetch import Prefetch
  calls = []

  def produce():
    calls.append(len(calls))
    if len(calls) == 6:
      raise RuntimeError("corpus gone")
    return calls[-1]

  feed = Prefetch(produce, depth=2)
  deadline = time.time() + 10
  while len(calls) < 3 and time.time() < deadline:
    time.sleep(0.01)
  time.sleep(0.2)
  assert len(calls) == 3  # two queued, one in the producer's hands, none beyond
  assert [next(feed) for _ in range(5)] == [0, 1, 2, 3, 4]
  with pytest.raises(RuntimeError, match="corpus gone"):
    next(feed)
  feed.close()
  inline = Prefetch(iter(range(3)).__next__, depth=0)
  assert [next(inline), next(inline), next(inline)] == [0, 1, 2]
  with pytest.raises(StopIteration):
    next(inline)


def test_prefetched_lagged_loop_logs_the_synchronous_loops_losses(tiny_model_dir, tmp_path):
  """The same seed with batches prefetched 3 steps ahead and metrics read only at log steps (log_every 3)
  against the synchronous loop (prefetch 0, log_every 1): the same loss at every step both logged, the same
  final weights, and the checkpoint's data position is the step's own, not the prefetcher's."""
  import json
  from jaxemb.train.loop import train
  out = {}
  for name, prefetch, log_every in (("sync", 0, 1), ("ahead", 3, 3)):
    cfg = _config("mlm")
    cfg.model.init = str(tiny_model_dir)
    cfg.total_steps, cfg.checkpoint.every, cfg.log_every = 6, 3, log_every
    cfg.data.prefetch = prefetch
    cfg.checkpoint.export_final = False
    train(cfg, tmp_path / name)
    rows = [json.loads(l) for l in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    out[name] = {r["step"]: (r["loss"], r["grad_norm"]) for r in rows if "loss" in r}
    # At step 3 the prefetcher has drawn batches 4-6 already; the checkpoint records 3.
    data = [json.loads(f.read_text()) for f in (tmp_path / name / "checkpoints" / "3" / "data").iterdir()
            if f.is_file() and f.read_text().startswith("{")]
    assert {"step": 3} in data, data
  assert sorted(out["ahead"]) == [3, 6]
  for step, v in out["ahead"].items():
    assert v == out["sync"][step], (step, v, out["sync"][step])


# ------------------------------------------------------------------------------------------- GradCache
def _simcse_grads(config, params, batch, **kw):
  from jaxemb.objectives.simcse import loss_fn
  kw = {"remat": False, "attention": "xla", "temperature": 0.05, "dedup": True, "gradcache_chunks": 0,
        "gradcache_policy": "nothing_saveable", **kw}
  f = lambda p: loss_fn(p, batch, jax.random.PRNGKey(0), config=config, dtype=jnp.float32, **kw)
  return jax.value_and_grad(f, has_aux=True)


def _simcse_batch(rows, length, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, length + 1, (rows, 1))
  mask = (np.arange(length)[None, :] < lengths).astype(np.int32)
  return {"input_ids": jnp.asarray(rng.integers(1, 100, (rows, length)) * mask, jnp.int32),
          "attention_mask": jnp.asarray(mask), "dup": jnp.arange(rows, dtype=jnp.int32)}


@pytest.mark.parametrize("policy", ["nothing_saveable", "dots_with_no_batch_dims_saveable"])
def test_gradcache_gradients_equal_the_full_batch_gradients(policy):
  """SimCSE (NT-Xent over 2B = 16 rows) embedded in 4 strided chunks vs one pass, dropout off: same loss,
  same gradient for every parameter (the chain rule through the cached embedding gradient is exact)."""
  from jaxemb.models.encoder import init_params
  config = _tiny_config(attention_dropout=0.0, hidden_dropout=0.0)
  params = {"encoder": init_params(config, seed=2)["encoder"]}
  batch = _simcse_batch(8, 12)
  (l_full, _), g_full = _simcse_grads(config, params, batch)(params)
  (l_c, _), g_c = _simcse_grads(config, params, batch, gradcache_chunks=4, gradcache_policy=policy)(params)
  np.testing.assert_allclose(l_c, l_full, rtol=1e-6)
  scale = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_full))
  assert scale > 1e-3  # a gradient worth comparing
  for a, b in zip(jax.tree.leaves(g_c), jax.tree.leaves(g_full)):  # float32 sums in another order
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * scale)


def test_gradcache_keeps_one_chunks_activations():
  """XLA's buffer plan (compiled.memory_analysis) of the loss's value-and-grad at 64 rows x 64 tokens: the
  8-chunk cached pass needs a fraction of the full pass's temporary memory."""
  from jaxemb.models.encoder import init_params
  config = _tiny_config(attention_dropout=0.1, hidden_dropout=0.1)
  params = {"encoder": init_params(config, seed=2)["encoder"]}
  batch = _simcse_batch(32, 64)
  temp = {}
  for chunks in (0, 8):
    f = jax.jit(_simcse_grads(config, params, batch, gradcache_chunks=chunks))
    temp[chunks] = f.lower(params).compile().memory_analysis().temp_size_in_bytes
  assert temp[8] < temp[0] / 3, temp


@pytest.mark.parametrize("objective", ["simcse", "declutr", "metadata"])
def test_gradcache_objective_step_gradients_equal_the_full_batch(objective, tiny_model_dir):
  """Each contrastive objective's loss on a real smoke batch (DeCLUTR: anchors with MLM, length-split
  positives; metadata: MLM + SupCon), dropout off, with config.gradcache.chunks = 4 against 0."""
  from jaxemb import Encoder, objectives
  from jaxemb.train.loop import _pad_lengths, initial_params, open_corpus, pad_to
  enc = Encoder.from_pretrained(tiny_model_dir)
  config = enc.config.replace(hidden_dropout=0.0, attention_dropout=0.0)
  cfg = _config(objective)
  cfg.model.init = str(tiny_model_dir)
  _, _, batches = open_corpus(cfg, enc.tokenizer)
  batch = {k: jnp.asarray(v) for k, v in pad_to(batches.batch(1), _pad_lengths(cfg)).items()}
  params = initial_params(cfg, enc, batches)
  out = []
  for chunks in (0, 4):
    cfg.gradcache.chunks = chunks
    fn = objectives.get(objective).loss(cfg, config, jnp.float32, False)
    (loss, metrics), grads = jax.value_and_grad(lambda p: fn(p, batch, jax.random.PRNGKey(0))[:2],
                                                has_aux=True)(params)
    out.append((loss, metrics, grads))
  (l0, m0, g0), (l4, m4, g4) = out
  np.testing.assert_allclose(l4, l0, rtol=1e-6)
  for k in m0:
    np.testing.assert_allclose(m4[k], m0[k], rtol=1e-6, err_msg=k)
  scale = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g0))
  assert scale > 1e-3
  # float32 sums in another order (XLA blocks a 2-row chunk's matmuls unlike a 16-row batch's), amplified by
  # 1/tau = 20 in the similarities: measured max |difference| / scale 9e-6 (simcse), see the report.
  worst = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(g4), jax.tree.leaves(g0))) / scale
  print(objective, "max |grad difference| / max |grad|", worst)
  assert worst < 5e-5


# ------------------------------------------------------------------------------------------- multi-host
def test_hosts_that_list_different_checkpoints_are_refused(tmp_path):
  """Two simulated hosts (the all-gather replaced by a function returning this host's row and another's): the
  same listing passes, a host that lists no checkpoint (a workdir that is not shared) is a CheckpointError."""
  from jaxemb.train.checkpoint import CheckpointError, agreed_steps
  for step in (4, 8):
    (tmp_path / "checkpoints" / str(step)).mkdir(parents=True)
  assert agreed_steps(tmp_path, gather=lambda mine: np.stack([mine, mine])) == [4, 8]
  other = np.array([0, -1, 0], np.int32)
  with pytest.raises(CheckpointError, match="host 1: 0 checkpoints, latest -1"):
    agreed_steps(tmp_path, gather=lambda mine: np.stack([mine, other]))
  assert agreed_steps(tmp_path) == [4, 8]  # one process: nothing to compare


def test_final_encoder_merges_lora_on_the_hosts_copy():
  """LoRA merged from replicated mesh arrays: the same weights as merging the device arrays, computed from
  host copies (nothing in the result lives on the mesh, so host 0 alone never starts a global program)."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from jaxemb.models import lora as lora_lib
  from jaxemb.train import levers as levers_lib
  cfg = _config("mlm")
  cfg.lora.rank, cfg.lora.alpha = 2, 4.0
  rng = np.random.default_rng(0)
  enc = {"layer_0": {"attention": {"query": {"weight": rng.standard_normal((8, 8)).astype(np.float32),
                                             "bias": np.zeros(8, np.float32)}}}}
  lora = {"layer_0/attention/query": {"a": rng.standard_normal((2, 8)).astype(np.float32),
                                      "b": rng.standard_normal((8, 2)).astype(np.float32)}}
  replicated = NamedSharding(Mesh(np.array(jax.devices()[:1]), ("data",)), P())
  params = jax.device_put({"encoder": enc, "lora": lora}, replicated)
  merged = levers_lib.final_encoder(params, cfg)
  expected = lora_lib.merge(params["encoder"], params["lora"], 2.0)
  for a, b in zip(jax.tree.leaves(merged), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not isinstance(getattr(a, "sharding", None), NamedSharding)


def test_fused_attention_asks_for_cudnn_only_on_gpu_in_half_precision(monkeypatch):
  """JAX 0.10's implementation=None is XLA's everywhere, so the GPU kernel must be asked for by name, and
  only where cuDNN takes the inputs (bf16/fp16)."""
  from jaxemb.models import encoder
  assert encoder.fused_attention_implementation(jnp.bfloat16) is None  # CPU
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert encoder.fused_attention_implementation(jnp.bfloat16) == "cudnn"
  assert encoder.fused_attention_implementation(jnp.float32) is None


def test_remat_policies_keep_the_gradients_and_unknown_ones_are_refused():
  """model.remat with each policy: the same loss and gradients as no remat (recomputation changes what is
  stored, not what is computed), float32, dropout on (the same rng gives the same masks when recomputed)."""
  from jaxemb.models.encoder import REMAT_POLICIES, encode, init_params, mean_pool
  config = _tiny_config()
  params = init_params(config, seed=1)["encoder"]
  ids = jnp.asarray(np.random.default_rng(0).integers(1, 100, (2, 8)), jnp.int32)
  mask = jnp.ones_like(ids)

  def grads(remat):
    f = lambda p: jnp.sum(mean_pool(encode(p, ids, mask, config=config, dropout_rng=jax.random.PRNGKey(1),
                                           remat=remat), mask) ** 2)
    return jax.value_and_grad(f)(params)

  l0, g0 = grads(False)
  scale = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g0))
  for policy in REMAT_POLICIES:
    l1, g1 = grads(policy)
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):  # XLA fuses the recomputation differently
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * scale)
  with pytest.raises(ValueError, match="remat_policy"):
    grads("everything_saveable_please")
