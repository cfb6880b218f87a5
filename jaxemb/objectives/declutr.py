"""DeCLUTR (Giorgi et al. 2021): contrastive learning between spans of the same document, + MLM on anchors.

One pass over the MLM-masked anchors gives both the anchor embeddings and the MLM loss; the P clean
positives of each anchor are embedded and averaged into one positive. NT-Xent runs over the 2N rows of the
GLOBAL batch: under jit with the batch sharded over the mesh, XLA all-gathers the embeddings, so every
device's spans are negatives for every other's (the original's per-GPU loss with a 1/n_gpu gradient scale
is not reproduced).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import ml_collections

from jaxemb.data import batching
from jaxemb.models.encoder import encode, gather_rows, mean_pool
from jaxemb.objectives import Objective
from jaxemb.objectives.cached import chunked_rows
from jaxemb.objectives.losses import nt_xent
from jaxemb.objectives.mlm import mlm_loss_from_rows


def defaults() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.anchors = 2
  c.positives = 2
  c.max_span = 256
  c.min_span = 8
  c.short_docs = "skip"     # skip (counted) or shrink max_span for that document
  c.temperature = 0.05
  c.use_mlm = True
  c.mlm_weight = 1.0        # total = contrastive + mlm_weight * MLM (the original: 1.0)
  # Pad the shorter and the longer half of the (Beta(2,4)-short) positives to separate lengths: ~17% fewer
  # padded tokens per step (docs/PERFORMANCE.md). Same loss; off when a half cannot split over the devices.
  c.split_positives = True
  return c


def loss_fn(params, batch, rng: jax.Array, *, config, dtype, remat: bool | str = False, attention: str = "xla",
            temperature: float = 0.05, use_mlm: bool = True, positives: int = 2, mlm_weight: float = 1.0,
            return_pooled: bool = False, gradcache_chunks: int = 0, gradcache_policy: str = "nothing_saveable"):
  """Returns (contrastive + mlm_weight * MLM, metrics), and with return_pooled the anchors' (embeddings_NxD,
  ids, mask) as a third element. With use_mlm=False: the contrastive-only ablation. gradcache_chunks > 1:
  each encoder pass runs in that many chunks keeping only their inputs (GradCache, objectives/cached.py); the
  anchors' pass hands back their mean-pooled rows and the hidden rows at the MLM slots, so the MLM head and
  both losses still see the whole global batch."""
  rng_a, rng_p = jax.random.split(rng)
  run = partial(chunked_rows, chunks=gradcache_chunks, policy=gradcache_policy)
  enc = partial(encode, config=config, dtype=dtype, remat=remat, attention=attention)

  def anchor_pass(p, rows, key):
    hidden_NxLxD = enc(p, rows["ids"], rows["mask"], dropout_rng=key)
    out = {"pooled": mean_pool(hidden_NxLxD, rows["mask"])}
    if use_mlm:
      out["masked_NxMxD"] = gather_rows(hidden_NxLxD, rows["positions"])
    return out

  def positive_pass(p, rows, key):
    return mean_pool(enc(p, rows["ids"], rows["mask"], dropout_rng=key), rows["mask"])

  rows = {"ids": batch["anchor_ids"], "mask": batch["anchor_mask"]}
  if use_mlm:
    rows["positions"] = batch["mlm_positions"]
  anchors = run(anchor_pass, params["encoder"], rows, rng_a)
  anchors_NxD = anchors["pooled"]
  pos_NPxD = run(positive_pass, params["encoder"], {"ids": batch["positive_ids"], "mask": batch["positive_mask"]},
                 rng_p)
  if "positive_index" in batch:
    # Length-split positives (DeclutrBatches(split_positives=True)): the longer half in its own padded
    # shape, then rows put back in anchor order. Dropout of the second pass uses its own key.
    long_NPxD = run(positive_pass, params["encoder"],
                    {"ids": batch["positive_long_ids"], "mask": batch["positive_long_mask"]},
                    jax.random.fold_in(rng_p, 1))
    pos_NPxD = jnp.concatenate([pos_NPxD, long_NPxD], axis=0)[batch["positive_index"]]
  n, d = anchors_NxD.shape
  positives_NxD = pos_NPxD.reshape(n, positives, d).mean(axis=1)
  contrastive = nt_xent(anchors_NxD, positives_NxD, temperature)
  metrics = {"contrastive_loss": contrastive}
  loss = contrastive
  if use_mlm:
    mlm, n_pred = mlm_loss_from_rows(params, anchors["masked_NxMxD"], batch["mlm_labels"], batch["mlm_weights"],
                                     config=config, dtype=dtype)
    metrics.update(mlm_loss=mlm, n_predictions=n_pred)
    loss = loss + mlm_weight * mlm
  if return_pooled:
    return loss, metrics, (anchors_NxD, batch["anchor_ids"], batch["anchor_mask"])
  return loss, metrics


def _batches(cfg, prepared, common):
  d = cfg.declutr
  # Two length groups of positives need each half of a host's rows to split evenly over its devices.
  half = cfg.batch_size // jax.process_count() * d.anchors * d.positives // 2
  split = bool(d.split_positives) and half > 0 and half % jax.local_device_count() == 0
  return batching.DeclutrBatches(prepared, anchors=d.anchors, positives=d.positives, max_span=d.max_span,
                                 min_span=d.min_span, short_docs=d.short_docs, split_positives=split,
                                 mask_prob=cfg.data.mask_prob if d.use_mlm else 0.0, **common)


def _loss(cfg, config, dtype, remat):
  d = cfg.declutr
  return partial(loss_fn, config=config, dtype=dtype, remat=remat, attention=cfg.model.attention,
                 temperature=d.temperature, use_mlm=d.use_mlm, positives=d.positives, mlm_weight=d.mlm_weight,
                 return_pooled=True, gradcache_chunks=int(cfg.gradcache.chunks),
                 gradcache_policy=cfg.gradcache.policy)


def _pad_lengths(cfg) -> dict[str, int]:
  n = cfg.declutr.max_span + 2  # a span's tokens plus [CLS] and [SEP]
  return {k: n for k in ("anchor_ids", "anchor_mask", "positive_ids", "positive_mask", "positive_long_ids",
                         "positive_long_mask")}


OBJECTIVE = Objective(name="declutr", defaults=defaults, batches=_batches, loss=_loss, pad_lengths=_pad_lengths,
                      uses_mlm_head=lambda cfg: bool(cfg.declutr.use_mlm))



