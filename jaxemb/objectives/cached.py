"""Cached contrastive embeddings (GradCache, Gao et al. 2021) for global batches whose activations do not fit.

A contrastive loss needs every row's embedding at once (the negatives span the global batch), but its
gradient with respect to the encoder is a sum over rows: d loss / d theta = sum_i (d loss / d z_i) d z_i / d theta.
So the encoder runs over the batch in chunks with nothing kept but each chunk's inputs; the loss and its
gradient with respect to the N x D embeddings are computed over the whole global batch; then each chunk is
recomputed and its VJP applied to its rows of that gradient. Peak activation memory is one chunk's, for one
more forward pass; the gradient is the full batch's.

Here this is `jax.lax.scan` over the chunks with a `jax.checkpoint`ed body: the scan's backward pass is exactly
the per-chunk recompute + VJP, all in one jitted step, and the step's `jax.value_and_grad` stays as it is.
The policy says what a chunk keeps from its forward pass (encoder.REMAT_POLICIES; nothing_saveable is
GradCache proper).

Chunks take rows strided through the batch (row i goes to chunk i mod C): with the batch sharded over the
"data" axis, every chunk holds rows of every device, so all devices work on every chunk and the similarity
matrix still spans every device's rows. Dropout: chunk c draws its masks from fold_in(rng, c), so they differ
from the unchunked pass's (the same distribution); with dropout off the loss and gradients are the
unchunked ones (tests/test_accel.py).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from jaxemb.models.encoder import remat_policy


def defaults(c: ml_collections.ConfigDict) -> None:
  """config.gradcache: chunks of the global batch (0 = off) and what each chunk keeps (a remat policy)."""
  c.gradcache = ml_collections.ConfigDict()
  c.gradcache.chunks = 0
  c.gradcache.policy = "nothing_saveable"


def chunked_rows(fn: Callable, params, rows: dict[str, jax.Array], rng: jax.Array | None, *, chunks: int,
                 policy: str = "nothing_saveable"):
  """fn(params, rows_chunk, rng) -> a pytree of per-row arrays (leading axis = the chunk's rows), run over
  `chunks` strided chunks of the N rows of `rows` (every value has N leading rows) with only each chunk's
  inputs kept for the backward pass (GradCache). Returns the pytree for all N rows in row order; chunks <= 1
  (or a single chunk's worth of rows) = one pass of fn over everything with `rng` itself."""
  n = next(iter(rows.values())).shape[0]
  if chunks <= 1:
    return fn(params, rows, rng)
  if n % chunks:
    raise ValueError(f"config.gradcache.chunks {chunks} must divide the {n} rows of a contrastive pass")
  r = n // chunks
  # row i = j * chunks + c -> chunk c, place j: with the rows sharded over devices, so is j within a chunk.
  split = lambda x: x.reshape((r, chunks) + x.shape[1:]).swapaxes(0, 1)  # noqa: E731
  merge = lambda x: x.swapaxes(0, 1).reshape((n,) + x.shape[2:])  # noqa: E731
  body = jax.checkpoint(fn, policy=remat_policy(policy))

  def one(carry, xs):
    c, chunk = xs
    key = None if rng is None else jax.random.fold_in(rng, c)
    return carry, body(params, chunk, key)

  _, out = jax.lax.scan(one, None, (jnp.arange(chunks), jax.tree.map(split, rows)))
  return jax.tree.map(merge, out)


def chunked_embeddings(embed: Callable, params, ids_NxL: jax.Array, mask_NxL: jax.Array, rng: jax.Array | None,
                       *, chunks: int, policy: str = "nothing_saveable") -> jax.Array:
  """`chunked_rows` of embed(params, ids, mask, rng) -> rows x D: N x D embeddings in row order."""
  return chunked_rows(lambda p, rows, key: embed(p, rows["ids"], rows["mask"], key), params,
                      {"ids": ids_NxL, "mask": mask_NxL}, rng, chunks=chunks, policy=policy)
