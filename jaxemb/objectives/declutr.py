"""DeCLUTR (Giorgi et al. 2021): contrastive learning between spans of the same document, + MLM on anchors.

One pass over the MLM-masked anchors gives both the anchor embeddings and the MLM loss; the P clean
positives of each anchor are embedded and averaged into one positive. NT-Xent runs over the 2N rows of the
GLOBAL batch: under jit with the batch sharded over the mesh, XLA all-gathers the embeddings, so every
device's spans are negatives for every other's (the original's per-GPU loss with a 1/n_gpu gradient scale
is not reproduced).
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxemb.data.batching import DEFAULT_EXCLUDE_SPLITS, Batches, bucket_length, pad_rows
from jaxemb.data.spans import SpanSample, effective_max_span, sample_spans
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


def loss_fn(params, batch, rng: jax.Array, *, config, dtype, remat: bool | str, attention: str,
            temperature: float, use_mlm: bool, positives: int, mlm_weight: float,
            return_pooled: bool = False, gradcache_chunks: int, gradcache_policy: str):
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


class DeclutrBatches(Batches):
  """DeCLUTR batches (N = B * A anchors; P positives per anchor), see docs/ARCHITECTURE.md.

  anchor_ids NxLa (MLM-masked), anchor_mask NxLa, mlm_positions/labels/weights NxM, positive_ids (N*P)xLp,
  positive_mask (N*P)xLp; anchors of document b are rows b*A .. b*A+A-1, positives of anchor i are rows
  i*P .. i*P+P-1. La and Lp are buckets (capped at max_span + 2) of the longest span in the global batch.
  Spans are slices of the document's token ids wrapped in [CLS] .. [SEP] (a deviation from the original,
  which re-tokenises span text; docs/ARCHITECTURE.md "Deviations from the paper"). Span randomness comes from
  numpy Generator((seed, epoch, doc_index)), fresh every epoch.

  split_positives=True (when every host's N*P rows are even): positives are Beta(2,4)-short, and padding all
  of them to the longest wastes most of their tokens. Each host sorts its positive rows by length and pads
  the shorter half and the longer half to their own buckets: positive_ids / positive_mask (R/2 x Ls, shorter
  half) and positive_long_ids / positive_long_mask (R/2 x Ll), plus positive_index [R] int32: row r of the
  layout above is row positive_index[r] of the GLOBAL concatenation [all hosts' short rows; all hosts' long
  rows]. Ls and Ll are the global maxima of the halves, so every host has the same shapes.

  Documents shorter than 2 * A * max_span tokens: short_docs="skip" leaves them out (`n_short_skipped`);
  "shrink" samples them with max_span = n // (2A) (`n_shrunk`), skipping only those below min_span.
  """

  def __init__(self, prepared, *, batch_size: int, seed: int, anchors: int, positives: int,
               max_span: int, min_span: int, short_docs: str, mask_prob: float,
               splits: Sequence[str] | None = None, exclude_splits: Sequence[str] = DEFAULT_EXCLUDE_SPLITS,
               process_index: int = 0, process_count: int = 1, split_positives: bool):
    super().__init__(prepared, batch_size=batch_size, seed=seed, mask_prob=mask_prob, splits=splits,
                     exclude_splits=exclude_splits, process_index=process_index, process_count=process_count)
    self.split_positives = bool(split_positives) and (self.host_batch_size * anchors * positives) % 2 == 0
    if anchors < 1 or positives < 1 or not 1 <= min_span <= max_span:
      raise ValueError(f"need anchors, positives >= 1 and 1 <= min_span <= max_span; got {anchors}, {positives}, "
                       f"{min_span}, {max_span}")
    self.anchors, self.positives, self.max_span, self.min_span = anchors, positives, max_span, min_span
    self.short_docs = short_docs
    self.max_length = max_span + 2
    spans = np.array([effective_max_span(int(n), anchors=anchors, max_span=max_span, min_span=min_span,
                                         short_docs=short_docs) or 0 for n in prepared.lengths[self.doc_indices]],
                     np.int64)
    self.n_short_skipped = int((spans == 0).sum())
    self.n_shrunk = int(((spans > 0) & (spans < max_span)).sum())
    self.doc_indices = self.doc_indices[spans > 0]
    self._doc_max_span = dict(zip(self.doc_indices.tolist(), spans[spans > 0].tolist()))
    self._check_nonempty(len(self.doc_indices), f"documents long enough for DeCLUTR (A={anchors}, max_span="
                         f"{max_span}, short_docs={short_docs!r}; {self.n_short_skipped} too short)")

  @property
  def steps_per_epoch(self) -> int:
    return len(self.doc_indices) // self.batch_size

  def drop_counts(self) -> dict[str, int]:
    # Shrunk documents are used, with shorter spans than max_span; counted because they change the task.
    return {"declutr/short_skipped": self.n_short_skipped, "declutr/shrunk": self.n_shrunk}

  def spans(self, doc_index: int, epoch: int) -> SpanSample:
    """The spans of one document in one epoch (a pure function of seed, epoch and doc_index)."""
    rng = np.random.default_rng([self.seed, epoch, int(doc_index)])
    return sample_spans(int(self.prepared.lengths[doc_index]), rng, anchors=self.anchors, positives=self.positives,
                        max_span=self._doc_max_span[int(doc_index)], min_span=self.min_span)

  def plan(self, step: int) -> np.ndarray:
    """Document indices of global batch `step`, int64 [B]."""
    return self._shuffled_plan(step)

  def batch(self, step: int) -> dict[str, np.ndarray]:
    epoch = step // self.steps_per_epoch
    docs_B = self.plan(step)
    # Spans of the whole global batch (cheap: token counts only) fix the shared padded lengths.
    samples = [self.spans(int(d), epoch) for d in docs_B]
    La = bucket_length(max(e - s for sm in samples for s, e in sm.anchors) + 2, self.max_length)
    # Positive span lengths (with [CLS]/[SEP]) per host, in row order: [process_count, R_h].
    plen_HxR = np.array([[e - s + 2 for sm in samples[h * self.host_batch_size:(h + 1) * self.host_batch_size]
                          for row in sm.positives for s, e in row] for h in range(self.process_count)])

    host_samples = samples[self.host_rows]
    anchor_rows, positive_rows = [], []
    for toks, sm in zip(self.prepared.tokens_many(docs_B[self.host_rows]), host_samples):
      for (s, e), row in zip(sm.anchors, sm.positives):
        anchor_rows.append(toks[s:e])
        positive_rows.extend(toks[ps:pe] for ps, pe in row)
    anchor_ids, anchor_mask = pad_rows(anchor_rows, La, self.special)
    A = self.anchors
    host_anchor_rows = slice(self.host_rows.start * A, self.host_rows.stop * A)
    out = self._mask(anchor_ids, anchor_mask, step, self.batch_size * A, host_anchor_rows)
    batch = {"anchor_ids": out["input_ids"], "anchor_mask": anchor_mask, "mlm_positions": out["mlm_positions"],
             "mlm_labels": out["mlm_labels"], "mlm_weights": out["mlm_weights"]}
    if not self.split_positives:
      Lp = bucket_length(int(plen_HxR.max()), self.max_length)
      batch["positive_ids"], batch["positive_mask"] = pad_rows(positive_rows, Lp, self.special)
      return batch
    # Shorter / longer half of each host's rows (stable sort: ties keep row order, so the split is a pure
    # function of the batch); the buckets are the global maxima of each half.
    order_HxR = np.argsort(plen_HxR, axis=1, kind="stable")
    half = plen_HxR.shape[1] // 2
    sorted_HxR = np.sort(plen_HxR, axis=1)
    Ls = bucket_length(int(sorted_HxR[:, :half].max()), self.max_length)
    Ll = bucket_length(int(sorted_HxR[:, half:].max()), self.max_length)
    order_R = order_HxR[self.process_index]
    batch["positive_ids"], batch["positive_mask"] = pad_rows([positive_rows[i] for i in order_R[:half]], Ls,
                                                              self.special)
    batch["positive_long_ids"], batch["positive_long_mask"] = pad_rows(
        [positive_rows[i] for i in order_R[half:]], Ll, self.special)
    # Row order_R[k] sits at k (k < half: this host's block of the global short array) or at k - half of its
    # block of the global long array, which follows all hosts' short rows.
    h, H = self.process_index, self.process_count
    slot_R = np.arange(len(order_R))
    global_R = np.where(slot_R < half, h * half + slot_R, H * half + h * half + (slot_R - half))
    index_R = np.empty(len(order_R), np.int32)
    index_R[order_R] = global_R
    batch["positive_index"] = index_R
    return batch


def _batches(cfg, prepared, common):
  d = cfg.declutr
  # Two length groups of positives need each half of a host's rows to split evenly over its devices.
  half = cfg.batch_size // jax.process_count() * d.anchors * d.positives // 2
  split = bool(d.split_positives) and half > 0 and half % jax.local_device_count() == 0
  return DeclutrBatches(prepared, anchors=d.anchors, positives=d.positives, max_span=d.max_span,
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



