"""The metadata-category objective (the paper's novel one): MLM + w * note_loss in one pass.

One forward pass over the MLM-masked note gives the MLM loss and the mean-pooled embedding; note_loss is
SupCon over the global batch (tau 0.1) with the metadata category as label, or cross-entropy of a linear
head (hidden -> K categories) on the embedding. Flags: MLM only, note loss only.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxemb.data.batching import DEFAULT_EXCLUDE_SPLITS, Batches, duplicate_ids, epoch_batches, seeded_rng
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


def loss_fn(params, batch, rng: jax.Array, *, config, dtype, remat: bool | str, attention: str,
            note_loss: str, weight: float, temperature: float, use_mlm: bool,
            use_note: bool, dedup: bool, return_pooled: bool = False, gradcache_chunks: int,
            gradcache_policy: str):
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


METADATA_SAMPLERS = ("random", "length_bucketed", "balanced")
_SALT_BALANCED = 3  # distinct from the data module's salts (1-2)


class MetadataBatches(Batches):
  """Metadata-objective batches: the truncated MLM batch plus `category` B (int32 index into `categories`).

  Documents without a metadata category are left out (`n_without_category`).
  sampler="random": plain shuffled batches (the original; positives only by chance): a seeded permutation
  per epoch cut into batches, so a batch's rows (and SupCon's positives and negatives) have unrelated
  lengths. sampler="length_bucketed": as "random", but each window of `window_batches` batches is sorted by
  length before it is cut (as MLM's truncate packing), so a batch pads to a bucket that fits most rows;
  its positives and negatives are then length-matched, which SupCon can exploit, so it is not the default.
  sampler="balanced": each batch draws B // per_category categories uniformly (among those with
  >= per_category documents) and per_category documents of each (the first B % per_category categories get
  one more), so every sampled category has >= 2 rows; rows of a category are adjacent. `steps_per_epoch` is
  then nominal (documents // B). Categories with fewer than per_category documents are counted
  (`too_small_categories`): the balanced sampler never draws them.
  """

  def __init__(self, prepared, *, batch_size: int, max_length: int, seed: int, sampler: str,
               mask_prob: float, window_batches: int = 50, per_category: int = 2,
               splits: Sequence[str] | None = None, exclude_splits: Sequence[str] = DEFAULT_EXCLUDE_SPLITS,
               process_index: int = 0, process_count: int = 1):
    super().__init__(prepared, batch_size=batch_size, seed=seed, mask_prob=mask_prob, splits=splits,
                     exclude_splits=exclude_splits, process_index=process_index, process_count=process_count)
    if sampler not in METADATA_SAMPLERS:
      raise ValueError(f"sampler must be one of {METADATA_SAMPLERS}, got {sampler!r}")
    if per_category < 2:
      raise ValueError(f"per_category must be >= 2 (SupCon needs a positive), got {per_category}")
    self.sampler, self.max_length, self.window_batches = sampler, max_length, window_batches
    self.per_category = per_category
    self.categories: list[str] = list(prepared.categories)
    has_cat = prepared.category_index[self.doc_indices] >= 0
    self.n_without_category = int((~has_cat).sum())
    self.doc_indices = self.doc_indices[has_cat]
    self._check_nonempty(len(self.doc_indices), "documents with a metadata category")
    cats = prepared.category_index[self.doc_indices]
    self._by_category = {int(c): self.doc_indices[cats == c] for c in np.unique(cats)}
    self.eligible_categories = np.array(sorted(c for c, d in self._by_category.items() if len(d) >= per_category),
                                        np.int64)
    # Categories too small for a guaranteed positive cannot be drawn by the balanced sampler: report them.
    self.too_small_categories = [self.categories[c] for c, d in self._by_category.items() if len(d) < per_category]
    self.n_in_too_small_categories = int(sum(len(d) for d in self._by_category.values() if len(d) < per_category))
    if sampler == "balanced" and len(self.eligible_categories) == 0:
      raise ValueError(f"no metadata category has >= {per_category} documents")

  @property
  def steps_per_epoch(self) -> int:
    return len(self.doc_indices) // self.batch_size

  def plan(self, step: int) -> np.ndarray:
    """Document indices of global batch `step`, int64 [B]."""
    if self.sampler == "balanced":
      return self._balanced(step)
    epoch, b = divmod(step, self.steps_per_epoch)
    if self._epoch_cache is None or self._epoch_cache[0] != epoch:
      window = self.window_batches if self.sampler == "length_bucketed" else 1
      order = epoch_batches(self.doc_indices, self.prepared.lengths, batch_size=self.batch_size, seed=self.seed,
                            epoch=epoch, window_batches=window)
      self._epoch_cache = (epoch, order)
    return self._epoch_cache[1][b]

  def drop_counts(self) -> dict[str, int]:
    out = {"metadata/without_category": self.n_without_category}
    if self.sampler == "balanced":  # the other samplers still use these documents (without a sure positive)
      out["metadata/too_small_categories"] = len(self.too_small_categories)
      out["metadata/in_too_small_categories"] = self.n_in_too_small_categories
    return out

  def _balanced(self, step: int) -> np.ndarray:
    rng = seeded_rng(self.seed, step, _SALT_BALANCED)
    n_groups = self.batch_size // self.per_category
    eligible = self.eligible_categories
    chosen = rng.choice(eligible, size=n_groups, replace=n_groups > len(eligible))
    sizes = np.full(n_groups, self.per_category)
    sizes[:self.batch_size - n_groups * self.per_category] += 1
    # A category drawn twice (more groups than categories) gets its documents drawn together, without repeats.
    need: dict[int, int] = {}
    for c, s in zip(chosen, sizes):
      need[int(c)] = need.get(int(c), 0) + int(s)
    picked = {c: list(rng.choice(self._by_category[c], size=n, replace=n > len(self._by_category[c])))
              for c, n in need.items()}
    rows = []
    for c, s in zip(chosen, sizes):
      rows.extend(picked[int(c)][:s])
      del picked[int(c)][:s]
    return np.asarray(rows, np.int64)

  def batch(self, step: int) -> dict[str, np.ndarray]:
    docs_B = self.plan(step)
    # SupCon's duplicate ids are over the GLOBAL batch (every host computes the same ids from the unmasked
    # rows), so every host reads the global batch's tokens once, and keeps its own rows for the batch.
    toks_B = self.prepared.tokens_many(docs_B)
    out = self._truncated_batch(docs_B, step, self.max_length, global_tokens=toks_B)
    out["category"] = self.prepared.category_index[docs_B[self.host_rows]].astype(np.int32)
    L = out["input_ids"].shape[1]  # the rows as the model sees them: equal there = duplicates
    out["dup"] = duplicate_ids([t[:L - 2] for t in toks_B])[self.host_rows]
    return out


def _batches(cfg, prepared, common):
  return MetadataBatches(prepared, max_length=cfg.data.max_length, sampler=cfg.metadata.sampler,
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
