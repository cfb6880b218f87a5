"""Contrastive adaptation on windows of documents: unsupervised SimCSE (Gao et al. 2021; a window and itself
under another dropout mask) or two independent random windows of the same document (`positive="windows"`).

DeCLUTR needs 2 * A * max_span tokens per document and skips (or shrinks) the rest; a dropout positive
needs one token, so every document trains, short reports included. Each row is a window of one document
(at most max_length tokens with [CLS]/[SEP]; `window="random"` takes a fresh seeded window every epoch, so
long notes are seen whole over epochs; `"start"` always the beginning). With `positive="windows"` the
positive is a second window drawn independently (the same tokens when the document fits in one window: then
only dropout differs). Measured on MiniLM: with dropout positives the loss is ~1e-3 from the first steps (the
two views are nearly the same vector), so there is almost no signal; two windows of a note are a real task.
Anchors and positives go through the encoder in one pass (2B rows: the hash dropout gives every row its own
mask); NT-Xent (tau 0.05) runs over the
GLOBAL batch. Rows of documents with the same text (after whitespace and case normalisation, the split planner's
duplicate key) are left out of each other's denominators (`dup_B`), so a duplicated note is never a false
negative, whichever windows of it the two rows show.

`python train.py --config configs/simcse.py --workdir DIR`; the recommended recipe (configs/adapt.py) uses it.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxemb.data.batching import (DEFAULT_EXCLUDE_SPLITS, Batches, pad_rows, seeded_rng, bucket_length,
                                  document_text_keys, first_of_equal_keys)
from jaxemb.models.encoder import encode, mean_pool
from jaxemb.objectives import Objective
from jaxemb.objectives.cached import chunked_embeddings
from jaxemb.objectives.losses import nt_xent

WINDOWS = ("random", "start")
POSITIVES = ("dropout", "windows")
_SALT_WINDOW = 11  # distinct from the data module's salts (1-3): window draws never reuse a mask stream


def defaults() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.temperature = 0.05      # SimCSE's tau (= all-MiniLM-L6-v2's own contrastive scale 20)
  c.window = "random"       # random (a fresh window of each document every epoch) or start
  # dropout: the positive is the same window under another dropout mask (SimCSE); windows: a second, independent
  # random window of the same document (a span positive, as DeCLUTR's, for any length: a document shorter than
  # one window gives the same tokens twice, i.e. a dropout positive)
  c.positive = "windows"
  c.crop = 0.5              # with windows: each view covers at least this fraction of a short document
  c.dedup = True            # identical rows are not each other's negatives
  return c


class SimCSEBatches(Batches):
  """Rows = one window of one document: input_ids BxL, attention_mask BxL, dup_B int32 (the global row index of
  the first row in the batch whose DOCUMENT has the same text after whitespace and case normalisation). L = the bucket of the longest
  global row, capped at max_length. Every document with >= 1 token is used (no length requirement)."""

  def __init__(self, prepared, *, batch_size: int, max_length: int, seed: int, window: str,
               positive: str, crop: float, splits: Sequence[str] | None = None,
               exclude_splits: Sequence[str] = DEFAULT_EXCLUDE_SPLITS,
               process_index: int = 0, process_count: int = 1):
    super().__init__(prepared, batch_size=batch_size, seed=seed, mask_prob=0.0, splits=splits,
                     exclude_splits=exclude_splits, process_index=process_index, process_count=process_count)
    if window not in WINDOWS:
      raise ValueError(f"config.simcse.window must be one of {WINDOWS}, got {window!r}")
    if positive not in POSITIVES:
      raise ValueError(f"config.simcse.positive must be one of {POSITIVES}, got {positive!r}")
    if positive == "windows" and window != "random":
      raise ValueError("config.simcse.positive='windows' needs config.simcse.window='random'")
    if not 0.0 < crop <= 1.0:
      raise ValueError(f"config.simcse.crop must be in (0, 1], got {crop}")
    self.positive, self.crop = positive, float(crop)
    if max_length < 3:
      raise ValueError(f"config.data.max_length must be >= 3 for SimCSE rows, got {max_length}")
    self.max_length, self.window = max_length, window
    lengths = prepared.lengths[self.doc_indices]
    self.n_empty_skipped = int((lengths == 0).sum())
    self.doc_indices = self.doc_indices[lengths > 0]
    self._check_nonempty(len(self.doc_indices), "documents")
    self.doc_keys = document_text_keys(prepared, self.doc_indices)

  def drop_counts(self) -> dict[str, int]:
    return {"simcse/empty_skipped": self.n_empty_skipped}

  @property
  def steps_per_epoch(self) -> int:
    return len(self.doc_indices) // self.batch_size

  def plan(self, step: int) -> np.ndarray:
    """Document indices of global batch `step`, int64 [B] (a seeded shuffle per epoch)."""
    return self._shuffled_plan(step)

  def _windows(self, docs_B: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) [2, B] of each document's windows in this epoch (row 0: the row, row 1: the positive
    when positive="windows"): the whole room (max_length - 2 tokens) or the whole document when shorter; with
    positive="windows" each view is an independent crop of at least `crop` of the document (Contriever's
    independent cropping), so a short report still gives two different views."""
    room = self.max_length - 2
    n_B = self.prepared.lengths[docs_B].astype(np.int64)
    if self.window == "start":
      zeros = np.zeros((2, len(docs_B)), np.int64)
      return zeros, zeros + np.minimum(n_B, room)
    u_4xB = np.array([seeded_rng(self.seed, epoch, int(d), _SALT_WINDOW).random(4) for d in docs_B]).T
    length_2xB = np.broadcast_to(np.minimum(n_B, room), (2, len(docs_B)))
    if self.positive == "windows":
      frac_2xB = self.crop + (1.0 - self.crop) * u_4xB[2:]
      length_2xB = np.clip(np.ceil(frac_2xB * n_B).astype(np.int64), 1, room)
    starts_2xB = np.floor(u_4xB[:2] * (n_B - length_2xB + 1)).astype(np.int64)
    return starts_2xB, length_2xB

  def batch(self, step: int) -> dict[str, np.ndarray]:
    epoch = step // self.steps_per_epoch
    docs_B = self.plan(step)
    (starts_B, starts2_B), (lengths_B, lengths2_B) = self._windows(docs_B, epoch)
    L = bucket_length(int(max(lengths_B.max(), lengths2_B.max() if self.positive == "windows" else 0)) + 2,
                      self.max_length)
    # Duplicate ids over the GLOBAL batch, by document: two copies of a note cut into different windows are
    # still each other's positive material, not negatives (every host computes the same ids).
    dup_B = first_of_equal_keys([self.doc_keys[int(d)] for d in docs_B])
    toks_B = self.prepared.tokens_many(docs_B)
    rows = [t[s:s + n] for t, s, n in zip(toks_B, starts_B, lengths_B)]
    ids_BxL, mask_BxL = pad_rows(rows[self.host_rows], L, self.special)
    out = {"input_ids": ids_BxL, "attention_mask": mask_BxL, "dup": dup_B[self.host_rows]}
    if self.positive == "windows":
      rows2 = [t[s:s + n] for t, s, n in zip(toks_B, starts2_B, lengths2_B)][self.host_rows]
      out["positive_ids"], out["positive_mask"] = pad_rows(rows2, L, self.special)
    return out


def loss_fn(params, batch, rng: jax.Array, *, config, dtype, remat: bool | str, attention: str,
            temperature: float, dedup: bool, return_pooled: bool = False, gradcache_chunks: int,
            gradcache_policy: str):
  """NT-Xent between two dropout views of each row. Returns (loss, metrics[, (view-1 embeddings, ids, mask)]).
  gradcache_chunks > 1: the 2B rows are embedded in that many chunks keeping only their inputs (GradCache,
  objectives/cached.py); the loss and gradients are the full batch's."""
  ids_BxL, mask_BxL = batch["input_ids"], batch["attention_mask"]
  b = ids_BxL.shape[0]
  # The positive view: another window of the document when the batch has one, else the same rows (dropout).
  ids2_BxL, mask2_BxL = batch.get("positive_ids", ids_BxL), batch.get("positive_mask", mask_BxL)
  both_mask = jnp.concatenate([mask_BxL, mask2_BxL])

  def embed(p, ids_NxL, mask_NxL, key):
    hidden_NxLxD = encode(p, ids_NxL, mask_NxL, config=config, dropout_rng=key, dtype=dtype, remat=remat,
                          attention=attention)
    return mean_pool(hidden_NxLxD, mask_NxL)

  z_2BxD = chunked_embeddings(embed, params["encoder"], jnp.concatenate([ids_BxL, ids2_BxL]), both_mask, rng,
                              chunks=gradcache_chunks, policy=gradcache_policy)
  z1_BxD, z2_BxD = z_2BxD[:b], z_2BxD[b:]
  loss = nt_xent(z1_BxD, z2_BxD, temperature, groups_N=batch["dup"] if dedup else None)
  metrics = {"contrastive_loss": loss}
  if return_pooled:
    return loss, metrics, (z1_BxD, ids_BxL, mask_BxL)
  return loss, metrics


def _batches(cfg, prepared, common):
  return SimCSEBatches(prepared, max_length=cfg.data.max_length, window=cfg.simcse.window,
                       positive=cfg.simcse.positive, crop=cfg.simcse.crop, **common)


def _loss(cfg, config, dtype, remat):
  s = cfg.simcse
  return partial(loss_fn, config=config, dtype=dtype, remat=remat, attention=cfg.model.attention,
                 temperature=s.temperature, dedup=s.dedup, return_pooled=True,
                 gradcache_chunks=int(cfg.gradcache.chunks), gradcache_policy=cfg.gradcache.policy)


def _pad_lengths(cfg) -> dict[str, int]:
  n = cfg.data.max_length
  return {"input_ids": n, "attention_mask": n, "positive_ids": n, "positive_mask": n}


OBJECTIVE = Objective(name="simcse", defaults=defaults, batches=_batches, loss=_loss, pad_lengths=_pad_lengths,
                      uses_mlm_head=lambda cfg: False)
