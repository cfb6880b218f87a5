"""The metadata-category objective (the paper's novel one): MLM + w * note_loss in one pass.

One forward pass over the MLM-masked note gives the MLM loss and the mean-pooled embedding; note_loss is
SupCon over the global batch (tau 0.1) with the metadata category as label, or cross-entropy of a linear
head (hidden -> K categories) on the embedding. Flags: MLM only, note loss only.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxemb.data import batching
from jaxemb.models.encoder import encode, gather_rows, mean_pool
from jaxemb.objectives import Objective
from jaxemb.objectives.cached import chunked_rows
from jaxemb.objectives.losses import classification_loss, supcon
from jaxemb.objectives.mlm import mlm_loss_from_rows

NOTE_LOSSES = ("supcon", "classify")


def defaults() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.note_loss = "supcon"   # supcon or classify
  c.weight = 0.1
  c.temperature = 0.1
  c.use_mlm = True
  c.use_note = True
  # True: rows with the same text are out of each other's SupCon positives and denominators. A lever, off by
  # default, so the paper's SupCon runs unchanged (docs/ADAPTATION.md).
  c.dedup = False
  # random (plain shuffled batches, the original), balanced (>= 2 docs per sampled category) or
  # length_bucketed (shuffled, then length-sorted windows of batches: less padding, length-matched rows)
  c.sampler = "random"
  return c


def init_note_head(hidden_size: int, num_categories: int, seed: int, std: float = 0.02) -> dict:
  """Linear head for note_loss="classify": weight K x D (out, in, like every jaxemb dense), bias K."""
  rng = np.random.default_rng(seed)
  return {"weight": (rng.standard_normal((num_categories, hidden_size)) * std).astype(np.float32),
          "bias": np.zeros((num_categories,), np.float32)}


def loss_fn(params, batch, rng: jax.Array, *, config, dtype, remat: bool | str = False, attention: str = "xla",
            note_loss: str = "supcon", weight: float = 0.1, temperature: float = 0.1, use_mlm: bool = True,
            use_note: bool = True, dedup: bool = True, return_pooled: bool = False, gradcache_chunks: int = 0,
            gradcache_policy: str = "nothing_saveable"):
  """Returns (mlm + weight * note_loss, metrics); note-only runs use the note loss unweighted. With
  return_pooled, the rows' (embeddings_BxD, ids, mask) as a third element. gradcache_chunks > 1: the encoder
  runs in that many chunks keeping only their inputs (GradCache, objectives/cached.py) and hands back the
  mean-pooled rows and the hidden rows at the MLM slots; both losses still see the whole global batch."""
  if note_loss not in NOTE_LOSSES:
    raise ValueError(f"note_loss must be one of {NOTE_LOSSES}, got {note_loss!r}")
  if not (use_mlm or use_note):
    raise ValueError("metadata objective with both MLM and the note loss switched off has nothing to train")

  def one_pass(p, rows, key):
    hidden_BxLxD = encode(p, rows["ids"], rows["mask"], config=config, dropout_rng=key, dtype=dtype, remat=remat,
                          attention=attention)
    out = {"pooled": mean_pool(hidden_BxLxD, rows["mask"])}
    if use_mlm:
      out["masked_BxMxD"] = gather_rows(hidden_BxLxD, rows["positions"])
    return out

  rows = {"ids": batch["input_ids"], "mask": batch["attention_mask"]}
  if use_mlm:
    rows["positions"] = batch["mlm_positions"]
  out = chunked_rows(one_pass, params["encoder"], rows, rng, chunks=gradcache_chunks, policy=gradcache_policy)
  metrics = {}
  loss = jnp.float32(0.0)
  if use_mlm:
    mlm, n_pred = mlm_loss_from_rows(params, out["masked_BxMxD"], batch["mlm_labels"], batch["mlm_weights"],
                                     config=config, dtype=dtype)
    metrics.update(mlm_loss=mlm, n_predictions=n_pred)
    loss = loss + mlm
  emb_BxD = out["pooled"]
  if use_note:
    if note_loss == "supcon":
      note = supcon(emb_BxD, batch["category"], temperature, groups_B=batch.get("dup") if dedup else None)
    else:
      head = params["note_head"]
      logits_BxK = emb_BxD @ head["weight"].T + head["bias"]
      note = classification_loss(logits_BxK, batch["category"])
    metrics["note_loss"] = note
    loss = loss + (weight * note if use_mlm else note)
  if return_pooled:
    return loss, metrics, (emb_BxD, batch["input_ids"], batch["attention_mask"])
  return loss, metrics


def _batches(cfg, prepared, common):
  return batching.MetadataBatches(prepared, max_length=cfg.data.max_length, sampler=cfg.metadata.sampler,
                                  mask_prob=cfg.data.mask_prob, **common)


def _loss(cfg, config, dtype, remat):
  m = cfg.metadata
  return partial(loss_fn, config=config, dtype=dtype, remat=remat, attention=cfg.model.attention,
                 note_loss=m.note_loss, weight=m.weight, temperature=m.temperature, use_mlm=m.use_mlm,
                 use_note=m.use_note, dedup=m.dedup, gradcache_chunks=int(cfg.gradcache.chunks),
                 gradcache_policy=cfg.gradcache.policy,
                 return_pooled=True)


def _extra_params(cfg, config, batches) -> dict:
  m = cfg.metadata
  if m.use_note and m.note_loss == "classify":
    return {"note_head": init_note_head(config.hidden_size, len(batches.categories), cfg.seed)}
  return {}


def _pad_lengths(cfg) -> dict[str, int]:
  n = cfg.data.max_length
  return {"input_ids": n, "attention_mask": n}


OBJECTIVE = Objective(name="metadata", defaults=defaults, batches=_batches, loss=_loss, pad_lengths=_pad_lengths,
                      extra_params=_extra_params, requires=("metadata",),
                      uses_mlm_head=lambda cfg: bool(cfg.metadata.use_mlm))
