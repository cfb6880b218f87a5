"""Adaptation from the pairs a corpus already has: query -> document contrastive training (MedQuAD question ->
answer, MTSamples description -> note, a title -> its abstract).

Each row is one TRAINING-split pair (validation and test rows never train, whatever data.exclude_splits says):
the query (`pairs.query_field`, up to `pairs.query_max_length` tokens) and its document (data.text_field, the
first data.max_length tokens, as the evaluator embeds). The loss is InfoNCE from each query to its document
over the GLOBAL batch (every other document of the batch, on every device, is a negative; tau 0.05), with
`symmetric` also from each document to its query (losses.query_document_nce). Rows whose documents are the
same text (equal token ids), or whose queries are, are not each other's negatives.

Hard negatives (`pairs.hard_negatives=True`): for every training query, BM25 (the evaluator's bm25s settings)
over the training documents gives its top `pairs.hard_negative_depth` documents, leaving out its positive,
every exact duplicate of it and every document whose own query is the same text (they answer it too); each
step draws one of them per row (seeded by seed, epoch and document), encoded with the batch's documents.

The recipe's levers work unchanged (freeze.*, interpolate.*: configs/pairs.py freezes the embeddings and the
lowest layers as configs/adapt.py does, and chooses the interpolation weight by validation retrieval over the
same query field: `validation.metric = "retrieval"`, jaxemb/train/validation.py). `python train.py --config configs/pairs.py --workdir DIR
--config.data.path=medquad_answers.jsonl.gz --config.pairs.query_field=question`.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxemb.data.prepare import tokenize
from jaxemb.data.batching import Batches, pad_rows, seeded_rng, bucket_length, duplicate_ids
from jaxemb.models.encoder import encode, mean_pool
from jaxemb.objectives import Objective
from jaxemb.objectives.losses import query_document_nce

_SALT_HARD = 13   # distinct from the other builders' salts: hard-negative draws never reuse a stream


def defaults() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.query_field = "question"   # the corpus field holding each document's query
  c.query_max_length = 64      # tokens per query (with [CLS]/[SEP])
  c.temperature = 0.05         # all-MiniLM-L6-v2's own contrastive scale (20 = 1 / 0.05)
  c.symmetric = True           # also document -> query
  c.hard_negatives = False     # one BM25-mined negative per row from the training pool
  c.hard_negative_depth = 20   # drawn from the query's BM25 top this many (positive and duplicates left out)
  return c


def read_queries(prepared, query_field: str) -> dict[str, str]:
  """source ("file:line") -> query text of every corpus row whose query field is a non-empty string; the same
  reader and cleaning as the prepared corpus, so a row's source names the same record on both sides."""
  from jaxemb.data import corpus as corpus_lib
  s = prepared.settings
  fields = corpus_lib.Fields(**{**s["fields"], "label": query_field, "metadata": None})
  out = {}
  for doc in corpus_lib.iter_documents(prepared.corpus_path, fields, clean=s["clean"]):
    if isinstance(doc.label, str) and doc.label.strip():
      out[doc.source] = doc.label.strip()
  return out


class PairsBatches(Batches):
  """Rows = training pairs. query_ids BxLq / query_mask BxLq, input_ids BxL / attention_mask BxL (the
  document), pair_dup_B / query_dup_B (int32: the global row index of the first row with the same document /
  query token ids), and with hard negatives hard_ids BxL / hard_mask BxL / hard_dup_B (ids in the document
  id space: pair_dup and hard_dup index the 2B rows [documents; hard negatives]). L = the bucket of the
  longest global document row (hard negatives included), capped at max_length; Lq likewise."""

  def __init__(self, prepared, *, batch_size: int, query_field: str, tokenizer, max_length: int,
               query_max_length: int, hard_negatives: bool, hard_negative_depth: int,
               seed: int, exclude_splits: Sequence[str] = ("test",), process_index: int = 0,
               process_count: int = 1):
    super().__init__(prepared, batch_size=batch_size, seed=seed, mask_prob=0.0, splits=("train",),
                     exclude_splits=exclude_splits, process_index=process_index, process_count=process_count)
    if max_length < 3 or query_max_length < 3:
      raise ValueError(f"config.data.max_length and config.pairs.query_max_length must be >= 3; got {max_length}, "
                       f"{query_max_length}")
    self.max_length, self.query_max_length = max_length, query_max_length
    queries = read_queries(prepared, query_field)
    records = prepared.records(self.doc_indices)
    keep = [i for i, r in enumerate(records) if r["source"] in queries]
    self.n_without_query = len(records) - len(keep)
    self.doc_indices = self.doc_indices[keep]
    records = [records[i] for i in keep]
    self._check_nonempty(len(self.doc_indices), f"training pairs with a {query_field!r} query")
    texts = [queries[r["source"]] for r in records]
    self.query_tokens = [np.asarray(t, np.int32) for t in tokenize(tokenizer, texts)]
    self._row_of = {int(d): k for k, d in enumerate(self.doc_indices)}
    self.hard_KxM = None
    if hard_negatives:
      self.hard_KxM = mine_hard_negatives(texts, [r["text"] for r in records], hard_negative_depth)

  def drop_counts(self) -> dict[str, int]:
    return {"pairs/train_rows_without_query": self.n_without_query}

  @property
  def steps_per_epoch(self) -> int:
    return len(self.doc_indices) // self.batch_size

  def batch(self, step: int) -> dict[str, np.ndarray]:
    epoch = step // self.steps_per_epoch
    docs_B = self._shuffled_plan(step)
    rows_B = [self._row_of[int(d)] for d in docs_B]
    doc_toks = [t[:self.max_length - 2] for t in self.prepared.tokens_many(docs_B)]
    q_toks = [self.query_tokens[k][:self.query_max_length - 2] for k in rows_B]
    all_doc_toks = doc_toks
    if self.hard_KxM is not None:
      cand = [self.hard_KxM[k][self.hard_KxM[k] >= 0] for k in rows_B]
      picks = [c[seeded_rng(self.seed, epoch, int(d), _SALT_HARD).integers(len(c))] if len(c) else k
               for c, d, k in zip(cand, docs_B, rows_B)]   # no candidate: its own document (masked as a duplicate)
      hard_docs = self.doc_indices[np.asarray(picks, np.int64)]
      all_doc_toks = doc_toks + [t[:self.max_length - 2] for t in self.prepared.tokens_many(hard_docs)]
    L = bucket_length(max(len(t) for t in all_doc_toks) + 2, self.max_length)
    Lq = bucket_length(max(len(t) for t in q_toks) + 2, self.query_max_length)
    groups = duplicate_ids(all_doc_toks)   # over the global [documents; hard negatives]
    b = len(docs_B)
    h = self.host_rows
    out = {"pair_dup": groups[:b][h], "query_dup": duplicate_ids(q_toks)[h]}
    out["query_ids"], out["query_mask"] = pad_rows(q_toks[h], Lq, self.special)
    out["input_ids"], out["attention_mask"] = pad_rows(doc_toks[h], L, self.special)
    if self.hard_KxM is not None:
      out["hard_ids"], out["hard_mask"] = pad_rows(all_doc_toks[b:][h], L, self.special)
      out["hard_dup"] = groups[b:][h]
    return out


def mine_hard_negatives(queries: list[str], documents: list[str], depth: int) -> np.ndarray:
  """int64 [K, depth]: for pair k, rows of BM25's top documents for query k (best first, -1 = none), leaving
  out row k, every document with the same text as row k's (exact duplicates) and every row whose query is
  the same text as query k's."""
  from jaxemb.data.splits import text_key
  from jaxemb.eval.retrieval import BM25
  doc_key = np.array([text_key(t) for t in documents], np.uint64)
  query_key = np.array([text_key(t) for t in queries], np.uint64)
  idx_KxN, _ = BM25(documents).search(queries, depth + 16)
  out = np.full((len(queries), depth), -1, np.int64)
  for k in range(len(queries)):
    ok = [j for j in idx_KxN[k] if doc_key[j] != doc_key[k] and query_key[j] != query_key[k]][:depth]
    out[k, :len(ok)] = ok
  return out


def loss_fn(params, batch, rng: jax.Array, *, config, dtype, remat: bool, temperature: float,
            symmetric: bool, return_pooled: bool = False):
  """query_document_nce over the batch's pairs. Returns (loss, metrics[, (document embeddings, ids, mask)])."""
  q_rng, d_rng = jax.random.split(rng)
  qmask = batch["query_mask"]
  z_q = mean_pool(encode(params["encoder"], batch["query_ids"], qmask, config=config, dropout_rng=q_rng,
                         dtype=dtype, remat=remat), qmask)
  ids, mask = batch["input_ids"], batch["attention_mask"]
  b = ids.shape[0]
  hard = "hard_ids" in batch
  if hard:   # documents and hard negatives share one pass (same padded length)
    ids, mask = jnp.concatenate([ids, batch["hard_ids"]]), jnp.concatenate([mask, batch["hard_mask"]])
  z_all = mean_pool(encode(params["encoder"], ids, mask, config=config, dropout_rng=d_rng, dtype=dtype,
                           remat=remat), mask)
  z_d = z_all[:b]
  loss = query_document_nce(z_q, z_d, temperature, pair_groups_B=batch["pair_dup"],
                            query_groups_B=batch["query_dup"], hard_HxD=z_all[b:] if hard else None,
                            hard_groups_H=batch.get("hard_dup"), symmetric=symmetric)
  metrics = {"contrastive_loss": loss}
  if return_pooled:
    return loss, metrics, (z_d, batch["input_ids"], batch["attention_mask"])
  return loss, metrics


def _batches(cfg, prepared, common):
  from jaxemb.resolve import load_tokenizer
  p = cfg.pairs
  return PairsBatches(prepared, query_field=p.query_field, tokenizer=load_tokenizer(prepared.tokenizer_name),
                      max_length=cfg.data.max_length, query_max_length=p.query_max_length,
                      hard_negatives=p.hard_negatives, hard_negative_depth=p.hard_negative_depth, **common)


def _loss(cfg, config, dtype, remat):
  if int(cfg.gradcache.get("chunks", 0)) > 1:
    # an ignored setting would look like a memory saving that is not there
    raise ValueError("config.gradcache.chunks: the pairs objective has no GradCache passes yet; set it to 0")
  return partial(loss_fn, config=config, dtype=dtype, remat=remat, temperature=cfg.pairs.temperature,
                 symmetric=cfg.pairs.symmetric, return_pooled=True)


def _pad_lengths(cfg) -> dict[str, int]:
  n, nq = cfg.data.max_length, cfg.pairs.query_max_length
  return {"input_ids": n, "attention_mask": n, "hard_ids": n, "hard_mask": n, "query_ids": nq, "query_mask": nq}


OBJECTIVE = Objective(name="pairs", defaults=defaults, batches=_batches, loss=_loss, pad_lengths=_pad_lengths,
                      uses_mlm_head=lambda cfg: False)
