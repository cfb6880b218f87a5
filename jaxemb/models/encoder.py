"""The BERT/RoBERTa encoder and MLM head in Flax Linen, and the pure functions used at the jit boundary.

Layout choices (measured on a 2-core CPU, see docs/PERFORMANCE.md):
- Dense weights are stored as Hugging Face stores them, `(out, in)`, and contracted on their last axis.
  XLA then needs no transposes, and weight conversion is a rename.
- Attention runs in (batch, head, seq, dim) layout with a float32 softmax.
- Dropout decisions come from a counter-based hash seeded by the rng (`models/dropout.py`):
  `jax.random.bernoulli` (or threefry bits) per element dominates a CPU train step at long sequences.
- Matmul inputs are cast to the compute dtype with float32 accumulation, in the forward and in both gradient
  dots (`models/precision.py`); parameters, LayerNorm and softmax stay float32.

Parameter tree (`params["encoder"]`):
  embeddings/{word_embeddings,position_embeddings,token_type_embeddings}/embedding, embeddings/LayerNorm
  layer_{i}/attention/{query,key,value}/{weight,bias}, layer_{i}/attention/output/{dense,LayerNorm}
  layer_{i}/intermediate/dense, layer_{i}/output/{dense,LayerNorm}
and `params["mlm_head"]`: dense, LayerNorm, bias (decoder tied to the word embeddings).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxemb.models import precision
from jaxemb.models.dropout import dropout
from jaxemb.models.config import EncoderConfig

Params = dict[str, Any]


ATTENTIONS = ("xla", "dot_product_attention")
# config.model.remat_policy -> jax.checkpoint policy. "nothing_saveable" is jax.checkpoint's default (None):
# every activation of a layer is recomputed, the program `model.remat=True` always compiled to.
REMAT_POLICIES = ("nothing_saveable", "dots_with_no_batch_dims_saveable", "dots_saveable")


def remat_policy(remat: bool | str):
  """The jax.checkpoint policy of `model.remat` (True = nothing_saveable) or of a policy name."""
  name = "nothing_saveable" if remat is True else remat
  if name not in REMAT_POLICIES:
    raise ValueError(f"config.model.remat_policy must be one of {REMAT_POLICIES}, got {name!r}")
  return None if name == "nothing_saveable" else getattr(jax.checkpoint_policies, name)


def fused_attention_implementation(dtype) -> str | None:
  """`implementation` for jax.nn.dot_product_attention: "cudnn" (the fused flash-attention kernel) on GPU in
  bf16/fp16, which is all cuDNN takes; None (XLA's implementation) elsewhere. JAX 0.10 does not choose cuDNN
  by itself: None means XLA on every platform."""
  if jax.default_backend() == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
    return "cudnn"
  return None


class Linear(nn.Module):
  """y = x W^T + b with W stored (out, in) like PyTorch; float32 accumulation."""
  features: int
  dtype: Any = jnp.float32
  init_std: float = 0.02

  @nn.compact
  def __call__(self, x):
    w = self.param("weight", nn.initializers.normal(self.init_std), (self.features, x.shape[-1]), jnp.float32)
    b = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return precision.dense(x, w, self.dtype) + b


def LayerNorm(eps: float) -> nn.LayerNorm:  # noqa: N802 - reads like the module it returns
  """HF-named LayerNorm in float32; call inside a compact method so it attaches to the caller's scope."""
  return nn.LayerNorm(epsilon=eps, dtype=jnp.float32, param_dtype=jnp.float32, name="LayerNorm")


def _gelu(x, approximate: bool):
  return jax.nn.gelu(x, approximate=approximate)


class Embeddings(nn.Module):
  config: EncoderConfig

  @nn.compact
  def __call__(self, ids_BxL, mask_BxL, token_type_ids_BxL, rng, noise_alpha, noise_rng):
    c = self.config
    init = nn.initializers.normal(c.initializer_range)
    x_BxLxD = nn.Embed(c.vocab_size, c.hidden_size, embedding_init=init, name="word_embeddings")(ids_BxL)
    if noise_rng is not None and noise_alpha > 0:
      # NEFTune (Jain et al. 2023): Uniform(-1, 1) * alpha / sqrt(L * d) on the input token embeddings.
      length = jnp.maximum(mask_BxL.sum(-1, keepdims=True), 1).astype(jnp.float32)[..., None]
      scale = noise_alpha / jnp.sqrt(length * c.hidden_size)
      noise = jax.random.uniform(noise_rng, x_BxLxD.shape, jnp.float32, -1.0, 1.0)
      x_BxLxD = x_BxLxD + noise * scale * mask_BxL[..., None]
    if c.family == "roberta":
      # HF create_position_ids_from_input_ids: positions count non-pad tokens from padding_idx + 1.
      not_pad = (ids_BxL != c.pad_token_id).astype(jnp.int32)
      pos_BxL = jnp.cumsum(not_pad, axis=1) * not_pad + c.pad_token_id
    else:
      pos_BxL = jnp.broadcast_to(jnp.arange(ids_BxL.shape[1]), ids_BxL.shape)
    x_BxLxD = x_BxLxD + nn.Embed(c.max_position_embeddings, c.hidden_size, embedding_init=init,
                                 name="position_embeddings")(pos_BxL)
    x_BxLxD = x_BxLxD + nn.Embed(c.type_vocab_size, c.hidden_size, embedding_init=init,
                                 name="token_type_embeddings")(token_type_ids_BxL)
    x_BxLxD = LayerNorm(c.layer_norm_eps)(x_BxLxD.astype(jnp.float32))
    return dropout(x_BxLxD, c.hidden_dropout, rng)


class Output(nn.Module):
  """dense -> dropout -> LayerNorm(x + residual): HF's BertSelfOutput and BertOutput (both named `output`)."""
  config: EncoderConfig
  dtype: Any

  @nn.compact
  def __call__(self, x, residual, rng):
    c = self.config
    x = Linear(c.hidden_size, self.dtype, c.initializer_range, name="dense")(x)
    x = dropout(x, c.hidden_dropout, rng)
    return LayerNorm(c.layer_norm_eps)(x + residual)


class SelfAttention(nn.Module):
  config: EncoderConfig
  dtype: Any
  query_block: int = 0  # > 0: queries in blocks of this many (lax.map), see attention_query_block
  attention: str = "xla"  # "xla" (below) or "dot_product_attention" (jax.nn's, fused per platform)

  @nn.compact
  def __call__(self, x_BxLxD, bias_Bx1x1xL, rng):
    c = self.config
    b, l, _ = x_BxLxD.shape
    dt = self.dtype
    if self.attention not in ATTENTIONS:
      raise ValueError(f"config.model.attention must be one of {ATTENTIONS}, got {self.attention!r}")
    rng_attn, rng_out = jax.random.split(rng) if rng is not None else (None, None)

    if self.attention == "dot_product_attention":
      # jax.nn.dot_product_attention takes B x L x H x d. It has no dropout, so the fused path drops no
      # attention probabilities (`rng_attn` is drawn and unused, so every other dropout mask is the xla
      # path's). Padding goes in as a boolean mask; the scale is applied inside the kernel.
      if self.query_block:
        raise ValueError("query_block is an option of the xla attention only")

      def heads_bld(name):  # -> B x L x H x d
        y = Linear(c.hidden_size, dt, c.initializer_range, name=name)(x_BxLxD)
        return y.reshape(b, l, c.num_heads, c.head_dim).astype(dt)

      ctx_BxLxHxd = jax.nn.dot_product_attention(
          heads_bld("query"), heads_bld("key"), heads_bld("value"), mask=bias_Bx1x1xL == 0,
          scale=1.0 / math.sqrt(c.head_dim), implementation=fused_attention_implementation(dt))
      ctx_BxLxD = ctx_BxLxHxd.reshape(b, l, c.hidden_size).astype(jnp.float32)
      return Output(c, dt, name="output")(ctx_BxLxD, x_BxLxD, rng_out)

    def heads(name):  # -> B x H x L x d
      y = Linear(c.hidden_size, dt, c.initializer_range, name=name)(x_BxLxD)
      return y.reshape(b, l, c.num_heads, c.head_dim).transpose(0, 2, 1, 3)

    q_BxHxLxd, k_BxHxLxd, v_BxHxLxd = heads("query"), heads("key"), heads("value")
    # The 1/sqrt(d) goes on q (L x d) rather than on the L x L scores.
    q_BxHxLxd = q_BxHxLxd * (1.0 / math.sqrt(c.head_dim))

    def attend(q_BxHxQxd, rng_q):
      scores_BxHxQxL = precision.einsum("bhqd,bhkd->bhqk", q_BxHxQxd, k_BxHxLxd, dt) + bias_Bx1x1xL
      if rng_q is not None:  # training: softmax, dropout on the probabilities, PV
        probs_BxHxQxL = dropout(jax.nn.softmax(scores_BxHxQxL, axis=-1), c.attention_dropout, rng_q)
        return precision.einsum("bhqk,bhkd->bhqd", probs_BxHxQxL, v_BxHxLxd, dt)
      # Inference: softmax(s) @ v as (exp(s - max s) @ v) / sum exp(s - max s), the division on the Q x d
      # context instead of the Q x L probabilities (one fewer pass over the scores): embedding 3% faster on
      # CPU. In the train step it measured neutral for MLM and 2-19% slower for DeCLUTR, hence training keeps
      # the softmax (docs/PERFORMANCE.md "Second pass"). The max cancels in the ratio: no gradient through it.
      e_BxHxQxL = jnp.exp(scores_BxHxQxL - jax.lax.stop_gradient(scores_BxHxQxL.max(-1, keepdims=True)))
      return precision.einsum("bhqk,bhkd->bhqd", e_BxHxQxL, v_BxHxLxd, dt) / e_BxHxQxL.sum(-1, keepdims=True)

    qb = self.query_block
    if 0 < qb < l:
      # One block of queries at a time (against all keys): a block's scores are l / qb times smaller.
      # An inference lever (measured slower in the train step), so it takes no dropout.
      if l % qb:
        raise ValueError(f"query_block {qb} must divide the sequence length {l}")
      if rng_attn is not None:
        raise ValueError("query_block is for inference: it takes no dropout rng")
      blocks_NxBxHxQxd = q_BxHxLxd.reshape(b, c.num_heads, l // qb, qb, c.head_dim).transpose(2, 0, 1, 3, 4)
      ctx_NxBxHxQxd = jax.lax.map(lambda q: attend(q, None), blocks_NxBxHxQxd)
      ctx_BxHxLxd = ctx_NxBxHxQxd.transpose(1, 2, 0, 3, 4).reshape(b, c.num_heads, l, c.head_dim)
    else:
      ctx_BxHxLxd = attend(q_BxHxLxd, rng_attn)
    ctx_BxLxD = ctx_BxHxLxd.transpose(0, 2, 1, 3).reshape(b, l, c.hidden_size)
    return Output(c, dt, name="output")(ctx_BxLxD, x_BxLxD, rng_out)


class Layer(nn.Module):
  config: EncoderConfig
  dtype: Any
  query_block: int = 0
  attention: str = "xla"

  @nn.compact
  def __call__(self, x_BxLxD, bias, rng):
    c = self.config
    rng_a, rng_o = jax.random.split(rng) if rng is not None else (None, None)
    x_BxLxD = SelfAttention(c, self.dtype, self.query_block, self.attention, name="attention")(x_BxLxD, bias,
                                                                                               rng_a)
    inter_BxLxF = _Intermediate(c, self.dtype, name="intermediate")(x_BxLxD)
    return Output(c, self.dtype, name="output")(inter_BxLxF, x_BxLxD, rng_o)


class _Intermediate(nn.Module):
  config: EncoderConfig
  dtype: Any

  @nn.compact
  def __call__(self, x):
    c = self.config
    return _gelu(Linear(c.intermediate_size, self.dtype, c.initializer_range, name="dense")(x), c.gelu_approximate)


class BertEncoder(nn.Module):
  """Post-LN BERT/RoBERTa encoder: ids -> last hidden states. No pooler (the paper mean-pools).

  remat: recompute each layer's activations in the backward pass (`nn.remat`, i.e. `jax.checkpoint`) instead
  of keeping them: activation memory falls from ~num_layers layers' worth to about one layer's, for ~1/3 more
  compute. For long sequences / big batches on accelerators; the parameters and the result are unchanged.
  A policy name (`REMAT_POLICIES`) instead of True keeps what that policy saves (e.g. the weight matmuls'
  outputs with "dots_with_no_batch_dims_saveable": less recompute, more memory).
  attention: "xla" (hand-written, with attention dropout) or "dot_product_attention" (`SelfAttention`)."""
  config: EncoderConfig
  dtype: Any = jnp.float32
  remat: bool | str = False
  query_block: int = 0
  attention: str = "xla"

  @nn.compact
  def __call__(self, ids_BxL, mask_BxL, token_type_ids_BxL=None, dropout_rng=None, noise_alpha=0.0,
               noise_rng=None):
    c = self.config
    if token_type_ids_BxL is None:
      token_type_ids_BxL = jnp.zeros_like(ids_BxL)
    rngs = (jax.random.split(dropout_rng, c.num_layers + 1) if dropout_rng is not None
            else [None] * (c.num_layers + 1))
    x_BxLxD = Embeddings(c, name="embeddings")(ids_BxL, mask_BxL, token_type_ids_BxL, rngs[0], noise_alpha,
                                               noise_rng)
    neg = jnp.finfo(jnp.float32).min
    bias_Bx1x1xL = jnp.where(mask_BxL[:, None, None, :] > 0, 0.0, neg).astype(jnp.float32)
    layer = nn.remat(Layer, policy=remat_policy(self.remat)) if self.remat else Layer
    for i in range(c.num_layers):
      x_BxLxD = layer(c, self.dtype, self.query_block, self.attention, name=f"layer_{i}")(
          x_BxLxD, bias_Bx1x1xL, rngs[i + 1])
    return x_BxLxD


class MLMHead(nn.Module):
  """dense -> gelu -> LayerNorm -> decoder tied to the word embeddings (+ bias). Applied to gathered rows."""
  config: EncoderConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h_NxD, word_embeddings_VxD):
    c = self.config
    h = Linear(c.hidden_size, self.dtype, c.initializer_range, name="dense")(h_NxD)
    h = LayerNorm(c.layer_norm_eps)(_gelu(h, c.gelu_approximate))
    bias = self.param("bias", nn.initializers.zeros, (c.vocab_size,), jnp.float32)
    return precision.dense(h, word_embeddings_VxD, self.dtype) + bias


# ---------------------------------------------------------------------------------------------------------
# Pure functions at the jit boundary.
# ---------------------------------------------------------------------------------------------------------

def encode(params_encoder: Params, input_ids_BxL, attention_mask_BxL, *, config: EncoderConfig,
           token_type_ids_BxL=None, dropout_rng=None, embed_noise_alpha: float = 0.0, noise_rng=None,
           dtype=jnp.float32, remat: bool | str = False, query_block: int = 0, attention: str = "xla"):
  """Last hidden states B x L x D (float32). Dropout only when `dropout_rng` is given; NEFTune noise only
  when `embed_noise_alpha > 0` and `noise_rng` is given; `remat` (True or a policy name) recomputes layers in
  the backward pass; `query_block` > 0 runs attention over blocks of that many queries (same result;
  `attention_query_block`); `attention` picks the attention implementation (`BertEncoder`)."""
  return BertEncoder(config, dtype, remat, query_block, attention).apply(
      {"params": params_encoder}, input_ids_BxL, attention_mask_BxL, token_type_ids_BxL,
      dropout_rng, embed_noise_alpha, noise_rng)


def mlm_logits(params: Params, hidden_NxD, *, config: EncoderConfig, dtype=jnp.float32):
  """Vocabulary logits N x V for already-gathered hidden rows (gather BEFORE the projection)."""
  wte = params["encoder"]["embeddings"]["word_embeddings"]["embedding"]
  return MLMHead(config, dtype).apply({"params": params["mlm_head"]}, hidden_NxD, wte)


def mean_pool(hidden_BxLxD, mask_BxL):
  """Masked mean over all non-pad tokens (special tokens included): the paper's document embedding, B x D."""
  m = mask_BxL.astype(jnp.float32)[..., None]
  return (hidden_BxLxD.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)


def gather_rows(hidden_BxLxD, positions_BxM):
  """hidden rows at the given positions: B x M x D."""
  return jnp.take_along_axis(hidden_BxLxD, positions_BxM[..., None].astype(jnp.int32), axis=1)


def init_params(config: EncoderConfig, seed: int = 0) -> Params:
  """Randomly initialised encoder + MLM head (HF-style init: N(0, initializer_range), zero bias, LN = 1/0)."""
  ids = jnp.zeros((1, 4), jnp.int32)
  enc = BertEncoder(config).init(jax.random.PRNGKey(seed), ids, jnp.ones_like(ids))["params"]
  head = init_mlm_head(config, seed + 1)
  return {"encoder": jax.tree.map(np.asarray, enc), "mlm_head": head}


def init_mlm_head(config: EncoderConfig, seed: int = 0) -> Params:
  wte = jnp.zeros((config.vocab_size, config.hidden_size), jnp.float32)
  head = MLMHead(config).init(jax.random.PRNGKey(seed), jnp.zeros((1, config.hidden_size)), wte)["params"]
  return jax.tree.map(np.asarray, head)


# Tokens per row chunk of the CPU embedding path. Measured on a 2-core AMD EPYC (1 MiB L2 per core, 32 MiB L3;
# bench/embed_chunks.py, docs/PERFORMANCE.md "Row chunks"): chunks of ~512 tokens were the fastest at every
# shape tried (32 x 128: 4 rows; 32 x 256: 2 rows, 1.45x faster than the whole batch; 16 x 512: 1 row, 2.0x),
# while chunks holding >= 48 MiB of attention scores per layer were as slow as no chunking.
CPU_CHUNK_TOKENS = 512


def rows_per_chunk(batch: int, length: int, tokens: int = CPU_CHUNK_TOKENS) -> int:
  """The largest divisor of `batch` with at most `tokens` tokens per chunk (at least 1 row)."""
  limit = max(1, tokens // length)
  return max(d for d in range(1, batch + 1) if batch % d == 0 and d <= limit)


# Query blocks for the CPU embedding path (measured, docs/PERFORMANCE.md "Second pass"): with a chunk's
# attention scores above ~8 MiB per layer (one 512-token row: 12 heads x 512 x 512 floats = 12 MiB), attention
# over blocks of <= 128 queries embeds 16 x 512 ~10% faster; at 2 rows x 256 tokens (6 MiB) it is 6% slower,
# and in the train step (forward + backward) 13% slower at 4 x 512, so training never blocks.
QUERY_BLOCK_SCORES_BYTES = 8 << 20


def attention_query_block(rows: int, length: int, num_heads: int,
                          threshold_bytes: int = QUERY_BLOCK_SCORES_BYTES) -> int:
  """Query block for a chunk of `rows` x `length` tokens: 0 (no blocks) while its float32 attention scores
  (rows x heads x length^2) fit in `threshold_bytes`, else the largest of 128, 96, 64, 32 dividing length
  (0 if none does)."""
  if rows * num_heads * length * length * 4 <= threshold_bytes:
    return 0
  return next((qb for qb in (128, 96, 64, 32) if length % qb == 0 and qb < length), 0)


def pooled_embeddings(params_encoder: Params, ids_BxL, mask_BxL, *, config: EncoderConfig, dtype=jnp.float32,
                      normalize: bool = False, chunk_rows: int | None = None, query_block: int = 0):
  """Mean-pooled embeddings B x D (inference: no dropout). With `chunk_rows` < B the encoder runs over
  chunks of that many rows in sequence (`lax.map`), which keeps each chunk's activations in the CPU cache;
  `query_block` > 0 runs attention over blocks of that many queries. The result is the same function of the
  inputs either way (rows are independent, and so are queries)."""
  b, length = ids_BxL.shape
  if chunk_rows is not None and chunk_rows < b:
    if b % chunk_rows:
      raise ValueError(f"chunk_rows {chunk_rows} must divide the batch {b}")
    chunks = (ids_BxL.reshape(b // chunk_rows, chunk_rows, length),
              mask_BxL.reshape(b // chunk_rows, chunk_rows, length))
    pooled = jax.lax.map(lambda c: pooled_embeddings(params_encoder, c[0], c[1], config=config, dtype=dtype,
                                                     normalize=normalize, query_block=query_block), chunks)
    return pooled.reshape(b, -1)
  hidden = encode(params_encoder, ids_BxL, mask_BxL, config=config, dtype=dtype, query_block=query_block)
  pooled = mean_pool(hidden, mask_BxL)
  if normalize:
    pooled = pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
  return pooled


@functools.lru_cache(maxsize=None)
def jitted_embed_fn(config: EncoderConfig, dtype_name: str = "float32", normalize: bool = False,
                    chunk: bool | None = None):
  """jit(ids, mask -> pooled B x D) for the embedding path, the batch sharded over every device on a "data"
  mesh. Cached per (config, dtype, normalize, chunk).

  chunk: run each device's rows in chunks sized by `rows_per_chunk` (None = on CPU, where it is measured to
  pay; on accelerators one wide program is what keeps the chip busy). With several CPU devices each device
  chunks its own rows (`shard_map`), and the devices run at the same time: on 2 cores, 2 CPU devices
  (JAX_NUM_CPU_DEVICES=2, what eval.py and `python -m jaxemb.eval.embed` set) embed ~18% faster than one.
  Chunks whose attention scores pass 8 MiB (a 512-token row) also run attention in query blocks
  (`attention_query_block`)."""
  dtype = jnp.dtype(dtype_name)
  if chunk is None:
    chunk = jax.default_backend() == "cpu"

  def fn(params_encoder, ids_BxL, mask_BxL):
    rows = rows_per_chunk(*ids_BxL.shape) if chunk else None
    qb = attention_query_block(rows, ids_BxL.shape[1], config.num_heads) if chunk else 0
    return pooled_embeddings(params_encoder, ids_BxL, mask_BxL, config=config, dtype=dtype, normalize=normalize,
                             chunk_rows=rows, query_block=qb)

  if chunk and jax.device_count() > 1:
    from jax.sharding import Mesh, PartitionSpec as P
    mesh = Mesh(np.array(jax.devices()), ("data",))
    fn = jax.shard_map(fn, mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=P("data"))
  return jax.jit(fn)
