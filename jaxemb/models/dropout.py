"""Dropout from a counter-based integer hash: keep/drop bits are a pure function of (seed, element position),
cheap on a CPU (one 32-bit hash yields several decisions) and free of jax.random's per-element cost, and
valid past 2^32 elements (positions above it hash two 32-bit words). Used by the encoder, the probe heads and
fine-tuning alike, so there is one dropout in the house."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def mix32(h: jax.Array) -> jax.Array:
  """murmur3's 32-bit finaliser: a bijection of uint32 in which every input bit flips each output bit with
  probability ~1/2."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


# Added to seed1 once per 2^32 elements of a hash (the golden-ratio constant: consecutive blocks get seeds far
# apart). Block 0 adds nothing, so every array of fewer than 2^32 elements hashes as it always did.
_BLOCK_STEP = 0x9E3779B9


def mul_wide(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(high, low) uint32 words of the 64-bit product of uint32 arrays, from 16-bit halves (no uint64 needed:
  jax runs without x64)."""
  a_lo, a_hi, b_lo, b_hi = a & 0xFFFF, a >> 16, b & 0xFFFF, b >> 16
  ll, lh, hl, hh = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
  mid = (ll >> 16) + (lh & 0xFFFF) + (hl & 0xFFFF)  # < 3 * 2^16: no wrap
  return hh + (lh >> 16) + (hl >> 16) + (mid >> 16), (mid << 16) | (ll & 0xFFFF)


def hash_bits(shape: tuple[int, ...], seed0: jax.Array, seed1: jax.Array, *, wide_from: int = 2**32) -> jax.Array:
  """uint32 words mix(mix(lo ^ seed0) + seed1 + hi * 0x9E3779B9) of each element's flat index i = hi * 2^32 + lo:
  a pure function of the two uint32 seeds and the element's global position, one fused elementwise pass, the
  same on every device layout (the index is global).

  Below `wide_from` (2^32) elements hi is 0 and the index is one uint32 iota. At or above it (attention dropout
  of 8192 x 256 rows: 6.4e9 elements) the index is split as row r over the leading axes times the size T of the
  trailing axes, plus the column: i = r * T + c, formed as (hi, lo) words with `mul_wide`, so there is no limit
  short of 2^64 elements. Both forms give the same bits wherever both apply (tests/test_accel.py)."""
  size = math.prod(shape)
  if size < wide_from:
    counter = jax.lax.iota(jnp.uint32, size).reshape(shape)
    return mix32(mix32(counter ^ seed0) + seed1)
  # The trailing axes that stay under 2^32 elements between them are the columns; the rest are rows.
  split, tail = len(shape), 1
  while split > 0 and tail * shape[split - 1] < 2**32:
    split, tail = split - 1, tail * shape[split - 1]
  rows = math.prod(shape[:split])
  if split == len(shape) or rows >= 2**32:
    raise ValueError(f"hash over shape {shape}: an axis of >= 2^32 elements, or >= 2^64 elements in all")
  ones = (1,) * (len(shape) - split)
  row = jax.lax.iota(jnp.uint32, rows).reshape(shape[:split] + ones)
  col = jax.lax.iota(jnp.uint32, tail).reshape((1,) * split + shape[split:])
  hi_r, lo_r = mul_wide(row, jnp.uint32(tail))
  lo = lo_r + col  # wraps mod 2^32; a wrap carries one into hi
  hi = hi_r + (lo < col).astype(jnp.uint32)
  return mix32(mix32(lo ^ seed0) + seed1 + hi * jnp.uint32(_BLOCK_STEP))


def hash_dropout(x: jax.Array, rate: float, seed0: jax.Array, seed1: jax.Array) -> jax.Array:
  """Inverted dropout whose keep/drop decisions are `hash_bits` of the uint32 seeds. The threshold has 32-bit
  resolution; kept values are scaled by 1 / keep_prob. The probe heads call this with seeds hashed from
  (seed, step), so no jax.random call runs in their vmapped loop."""
  threshold = min(int(round(rate * 2**32)), 2**32 - 1)
  keep_prob = 1.0 - threshold / 2**32
  bits = hash_bits(x.shape, seed0, seed1)
  return jnp.where(bits >= jnp.uint32(threshold), x / keep_prob, jnp.zeros_like(x))


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Inverted dropout; identity when rng is None or rate == 0.

  The keep/drop decisions are `hash_dropout`'s counter-based hash, with the two 32-bit seeds drawn from
  `rng` (threefry): 4.6x cheaper on CPU than drawing threefry bits for every element (a 4 x 12 x 512 x 512
  attention dropout: 28 vs 126 ms, docs/PERFORMANCE.md).
  """
  if rng is None or rate <= 0.0:
    return x
  seed = jax.random.bits(rng, (2,), jnp.uint32)
  return hash_dropout(x, rate, seed[0], seed[1])
