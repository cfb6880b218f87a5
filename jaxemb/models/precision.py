"""Matmuls in the compute dtype, forward and backward (mixed precision).

`einsum(spec, a, b, dtype)` is the one contraction the encoder uses for its dense layers, its attention and
the MLM decoder. In float32 it is the plain `jnp.einsum` (the float32 path's program is what it always was).
In a lower compute dtype (bfloat16) it is a custom VJP:
- forward: both operands cast to the compute dtype, float32 output (the accumulation stays in float32 inside
  the dot, as `preferred_element_type=float32` asks of the hardware);
- backward: the incoming float32 cotangent is cast to the compute dtype, and both gradient dots take
  compute-dtype operands with float32 output. JAX's own transpose of a bf16 x bf16 -> f32 dot would take the
  f32 cotangent as is and promote the other operand to f32: two thirds of a train step's dot FLOPs would run
  f32 x f32 (67% on mlm:smoke, counted by train/hlo.py). The residuals kept for the backward are the compute-dtype
  copies of the operands, so activation memory halves too.
Parameters, optimiser state, LayerNorm, softmax and the losses stay float32; only what enters a dot is cast.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp


def _parse(spec: str) -> tuple[str, str, str]:
  ins, out = spec.replace(" ", "").split("->")
  a, b = ins.split(",")
  return a, b, out


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def _lowp_einsum(spec: str, a, b, dtype):
  return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def _lowp_fwd(spec, a, b, dtype):
  a_c, b_c = a.astype(dtype), b.astype(dtype)
  y = jnp.einsum(spec, a_c, b_c, preferred_element_type=jnp.float32)
  # Only the compute-dtype copies are kept; the original dtypes (for the cotangents' dtype) ride as
  # zero-size arrays, which a custom VJP residual may hold.
  return y, (a_c, b_c, jnp.zeros((0,), a.dtype), jnp.zeros((0,), b.dtype))


def _lowp_bwd(spec, dtype, res, g):
  a_c, b_c, a_like, b_like = res
  sa, sb, so = _parse(spec)
  g_c = g.astype(dtype)
  da = jnp.einsum(f"{so},{sb}->{sa}", g_c, b_c, preferred_element_type=jnp.float32)
  db = jnp.einsum(f"{sa},{so}->{sb}", a_c, g_c, preferred_element_type=jnp.float32)
  return da.astype(a_like.dtype), db.astype(b_like.dtype)


_lowp_einsum.defvjp(_lowp_fwd, _lowp_bwd)


def einsum(spec: str, a: jax.Array, b: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
  """einsum(spec, a, b) with operands in `dtype` and a float32 result, in the forward and in both gradients.

  `spec` is an explicit two-operand einsum ("bld,od->blo") in which every index of an operand appears in the
  other operand or in the output (so each gradient is again one einsum); no ellipsis."""
  if jnp.dtype(dtype) == jnp.float32:
    return jnp.einsum(spec, a.astype(jnp.float32), b.astype(jnp.float32), preferred_element_type=jnp.float32)
  sa, sb, so = _parse(spec)
  for name, s, other in (("first", sa, sb + so), ("second", sb, sa + so)):
    if "." in s or any(ch not in other for ch in s):
      raise ValueError(f"einsum {spec!r}: every index of the {name} operand must appear elsewhere")
  return _lowp_einsum(spec, a, b, jnp.dtype(dtype))


def dense(x: jax.Array, w_OxI: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
  """x W^T for W stored (out, in) like PyTorch, contracted on x's last axis: ... x I -> ... x O, float32.

  In float32 this is the dot_general the encoder always ran (no transposes; bit-identical programs); in a
  lower dtype it is `einsum` above (compute-dtype operands in the forward and in both gradients)."""
  if jnp.dtype(dtype) == jnp.float32:
    return jax.lax.dot_general(x.astype(jnp.float32), w_OxI.astype(jnp.float32),
                               (((x.ndim - 1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
  lead = "abcdefgh"[:x.ndim - 1]
  return einsum(f"{lead}i,oi->{lead}o", x, w_OxI, dtype)
