"""The pairs objective: its loss against a NumPy recomputation, and its batches (training-split pairs only,
hard negatives never the positive, a duplicate of it, or a document of the same query)."""

import gzip
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxemb.objectives.losses import query_document_nce


def _np_ce_rows(logits, mask):
  """Mean over rows i of -log softmax(logits[i] with mask[i] entries removed)[i] (NumPy, float64)."""
  out = []
  for i in range(len(logits)):
    keep = ~mask[i]
    row = logits[i][keep]
    target = int(keep[:i].sum())   # the target column's position among the kept ones
    out.append(np.log(np.exp(row - row.max()).sum()) + row.max() - row[target])
  return float(np.mean(out))


def _np_loss(q, d, h, tau, pair_g, query_g, hard_g, symmetric):
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  q, d = unit(q.astype(np.float64)), unit(d.astype(np.float64))
  b = len(q)
  same = (pair_g[:, None] == pair_g[None, :]) | (query_g[:, None] == query_g[None, :])
  same &= ~np.eye(b, dtype=bool)
  logits = q @ d.T / tau
  mask = same
  if h is not None:
    logits = np.concatenate([logits, q @ unit(h.astype(np.float64)).T / tau], 1)
    mask = np.concatenate([same, pair_g[:, None] == hard_g[None, :]], 1)
  loss = _np_ce_rows(logits, mask)
  if symmetric:
    loss = 0.5 * (loss + _np_ce_rows(d @ q.T / tau, same))
  return loss


@pytest.mark.parametrize("symmetric,hard", [(False, False), (True, False), (True, True)])
def test_loss_matches_numpy(symmetric, hard):
  rng = np.random.default_rng(0)
  b, dim = 6, 5
  q, d, h = rng.normal(size=(b, dim)), rng.normal(size=(b, dim)), rng.normal(size=(b, dim))
  pair_g = np.array([0, 1, 0, 3, 4, 5])     # rows 0 and 2: the same document text
  query_g = np.array([0, 1, 2, 3, 3, 5])    # rows 3 and 4: the same query
  hard_g = np.array([6, 7, 1, 9, 10, 11])   # row 2's hard negative is row 1's document
  got = query_document_nce(jnp.asarray(q), jnp.asarray(d), 0.1, pair_groups_B=jnp.asarray(pair_g),
                           query_groups_B=jnp.asarray(query_g), hard_HxD=jnp.asarray(h) if hard else None,
                           hard_groups_H=jnp.asarray(hard_g) if hard else None, symmetric=symmetric)
  want = _np_loss(q, d, h if hard else None, 0.1, pair_g, query_g, hard_g, symmetric)
  assert float(got) == pytest.approx(want, rel=1e-5)


def test_loss_gradient_is_finite_with_masked_entries():
  q = jnp.ones((3, 4))
  g = jax.grad(lambda x: query_document_nce(x, x, 0.05, pair_groups_B=jnp.zeros(3, jnp.int32), symmetric=True))(q)
  assert np.isfinite(np.asarray(g)).all()


def test_batches_use_training_pairs_and_clean_hard_negatives(tmp_path):
  from jaxemb.data.corpus import Fields
  from jaxemb.data.prepare import prepare
  from jaxemb.objectives.pairs import PairsBatches, mine_hard_negatives
  from jaxemb.resolve import load_tokenizer
  topics = ["heart failure", "kidney stones", "asthma attack", "migraine aura", "knee injury", "skin rash"]
  rows = []
  for i in range(24):
    t = topics[i % 6]
    rows.append({"id": f"r{i}", "text": f"{t} answer {i}: treatment and symptoms of {t} case {i}",
                 "question": f"what about {t} {i}?", "split": "test" if i >= 18 else "train"})
  rows.append({"id": "dup", "text": rows[0]["text"], "question": "a second question?", "split": "train"})
  rows.append({"id": "sameq", "text": "unrelated text on heart failure", "question": rows[0]["question"],
               "split": "train"})
  path = tmp_path / "c.jsonl.gz"
  with gzip.open(path, "wt") as f:
    f.write("\n".join(json.dumps(r) for r in rows))
  tok = load_tokenizer()
  prepared = prepare(path, Fields(text="text", split="split", id="id"), tok, cache_dir=tmp_path / "cache",
                     val_fraction=0.0)
  batches = PairsBatches(prepared, batch_size=4, query_field="question", tokenizer=tok, max_length=32,
                         query_max_length=16, hard_negatives=True, hard_negative_depth=5, seed=0)
  train_ids = {prepared.record(int(i))["id"] for i in batches.doc_indices}
  assert train_ids == {f"r{i}" for i in range(18)} | {"dup", "sameq"}
  ids = [prepared.record(int(i))["id"] for i in batches.doc_indices]
  texts = [prepared.record(int(i))["text"] for i in batches.doc_indices]
  queries = [dict((r["id"], r["question"]) for r in rows)[k] for k in ids]
  hard = mine_hard_negatives(queries, texts, 5)
  k0 = ids.index("r0")
  # r0's positive, its exact duplicate and the document of the same question are never its negatives
  assert not {ids[j] for j in hard[k0] if j >= 0} & {"r0", "dup", "sameq"}
  b = batches.batch(0)
  assert b["query_ids"].shape[0] == b["input_ids"].shape[0] == b["hard_ids"].shape[0] == 4
  assert b["input_ids"].shape[1] <= 32 and b["query_ids"].shape[1] <= 16
  # the query row is the tokenised question of the document row
  docs0 = batches._shuffled_plan(0)
  q_text = dict((r["id"], r["question"]) for r in rows)[prepared.record(int(docs0[0]))["id"]]
  expect = tok(q_text, add_special_tokens=False)["input_ids"]
  assert b["query_ids"][0, 1:1 + len(expect)].tolist() == expect
