"""Batch builders: formats of docs/ARCHITECTURE.md, determinism, resume, host sharding, split exclusion."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxemb.data.batching import LENGTH_BUCKETS, mlm_max_predictions  # noqa: E402
from jaxemb.objectives.declutr import DeclutrBatches  # noqa: E402
from jaxemb.objectives.metadata import MetadataBatches  # noqa: E402
from jaxemb.objectives.mlm import MLMBatches  # noqa: E402
from jaxemb.models.inference import inference_batch_sizes, inference_batches  # noqa: E402
from jaxemb.data.corpus import Fields  # noqa: E402

FIELDS = Fields(text="text", label="specialty", metadata="note_type", group="group", split="split", id="id")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  from jaxemb.data.prepare import prepare
  from jaxemb.data.synthetic import write_corpus
  root = tmp_path_factory.mktemp("batching")
  path = write_corpus(root / "notes.jsonl.gz", n_notes=160, seed=1)
  return prepare(path, FIELDS, cache_dir=root / "cache")


BUILDERS = {
  "mlm_chunk": lambda p, **kw: MLMBatches(p, batch_size=8, max_length=64, packing="chunk", seed=0, mask_prob=0.15,
                                          **kw),
  "mlm_truncate": lambda p, **kw: MLMBatches(p, batch_size=8, max_length=128, packing="truncate", seed=0,
                                             mask_prob=0.15, **kw),
  "metadata_random": lambda p, **kw: MetadataBatches(p, batch_size=8, max_length=128, sampler="random", seed=0,
                                                     mask_prob=0.15, **kw),
  "metadata_balanced": lambda p, **kw: MetadataBatches(p, batch_size=8, max_length=128, sampler="balanced", seed=0,
                                                       mask_prob=0.15, **kw),
  "declutr": lambda p, **kw: DeclutrBatches(p, batch_size=4, anchors=2, positives=2, max_span=32, min_span=4, seed=0,
                                            short_docs="skip", mask_prob=0.15, split_positives=False, **kw),
}
MLM_KEYS = {"input_ids", "attention_mask", "mlm_positions", "mlm_labels", "mlm_weights"}


def _assert_batches_equal(a: dict, b: dict) -> None:
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _valid_length(L: int, max_length: int) -> bool:
  return L == max_length or (L in LENGTH_BUCKETS and L < max_length)


@pytest.mark.parametrize("name", ["mlm_chunk", "mlm_truncate", "metadata_random", "metadata_balanced"])
def test_mlm_and_metadata_batch_format(prepared, name):
  it = BUILDERS[name](prepared)
  sp = prepared.special
  for step in range(3):
    b = it.batch(step)
    assert set(b) == MLM_KEYS | ({"category", "dup"} if name.startswith("metadata") else set())
    B, L = b["input_ids"].shape
    M = mlm_max_predictions(L)
    assert B == 8 and _valid_length(L, it.max_length)
    assert b["mlm_positions"].shape == b["mlm_labels"].shape == b["mlm_weights"].shape == (B, M)
    assert {k: v.dtype.name for k, v in b.items()} == {k: ("float32" if k == "mlm_weights" else "int32") for k in b}
    att = b["attention_mask"].astype(bool)
    assert (b["input_ids"][~att] == sp.pad).all() and att[:, 0].all()
    # Reconstruct the unmasked rows: [CLS] first for one-document rows; specials/pads never predicted.
    orig = b["input_ids"].copy()
    rows, slots = np.nonzero(b["mlm_weights"])
    orig[rows, b["mlm_positions"][rows, slots]] = b["mlm_labels"][rows, slots]
    assert not np.isin(b["mlm_labels"][rows, slots], sp.special_ids).any()
    if name != "mlm_chunk":
      assert (orig[:, 0] == sp.cls).all()
      lengths = att.sum(1)
      assert (orig[np.arange(B), lengths - 1] == sp.sep).all()
      docs = it.plan(step)
      for r, d in enumerate(docs):
        toks = prepared.tokens(d)[:L - 2]
        np.testing.assert_array_equal(orig[r, 1:1 + len(toks)], toks)
    if name.startswith("metadata"):
      np.testing.assert_array_equal(b["category"], prepared.category_index[it.plan(step)])
      assert it.categories == sorted(it.categories) == prepared.categories


def test_chunk_packing_reassembles_the_concatenated_stream(prepared):
  it = MLMBatches(prepared, batch_size=8, max_length=64, packing="chunk", seed=0, mask_prob=0.15)
  sp = prepared.special
  blocks = it._blocks(np.arange(it.n_units))
  stream = np.concatenate([np.concatenate([[sp.cls], prepared.tokens(d), [sp.sep]]) for d in it.doc_indices])
  np.testing.assert_array_equal(np.concatenate(blocks), stream)
  assert all(len(b) == 64 for b in blocks[:-1])


def test_balanced_sampler_gives_every_category_two_rows(prepared):
  it = BUILDERS["metadata_balanced"](prepared)
  for step in range(20):
    cats, counts = np.unique(it.batch(step)["category"], return_counts=True)
    assert counts.min() >= 2, (step, dict(zip(cats, counts)))


def test_declutr_batch_format_and_span_contents(prepared):
  it = BUILDERS["declutr"](prepared)
  sp = prepared.special
  A, P, B = 2, 2, 4
  b = it.batch(0)
  N = B * A
  assert set(b) == {"anchor_ids", "anchor_mask", "mlm_positions", "mlm_labels", "mlm_weights", "positive_ids",
                    "positive_mask"}
  La, Lp = b["anchor_ids"].shape[1], b["positive_ids"].shape[1]
  assert b["anchor_ids"].shape == b["anchor_mask"].shape == (N, La) and _valid_length(La, 34)
  assert b["positive_ids"].shape == b["positive_mask"].shape == (N * P, Lp) and _valid_length(Lp, 34)
  assert b["mlm_positions"].shape == (N, mlm_max_predictions(La))
  anchors = b["anchor_ids"].copy()
  rows, slots = np.nonzero(b["mlm_weights"])
  anchors[rows, b["mlm_positions"][rows, slots]] = b["mlm_labels"][rows, slots]
  assert (b["mlm_weights"].sum(1) >= 1).all()
  # Anchor i of document b is row b*A + i; positives of anchor j are rows j*P .. j*P+P-1.
  for d_row, doc in enumerate(it.plan(0)):
    toks = prepared.tokens(doc)
    sample = it.spans(doc, epoch=0)
    for i, (s, e) in enumerate(sample.anchors):
      j = d_row * A + i
      np.testing.assert_array_equal(anchors[j, :e - s + 2], np.concatenate([[sp.cls], toks[s:e], [sp.sep]]))
      assert b["anchor_mask"][j].sum() == e - s + 2
      for k, (ps, pe) in enumerate(sample.positives[i]):
        row = b["positive_ids"][j * P + k]
        np.testing.assert_array_equal(row[:pe - ps + 2], np.concatenate([[sp.cls], toks[ps:pe], [sp.sep]]))
        assert (row[pe - ps + 2:] == sp.pad).all()


def _unsplit(hosts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
  """Positives of length-split host batches back in the global anchor order, padded to the longer length."""
  L = max(b[k].shape[1] for b in hosts for k in ("positive_ids", "positive_long_ids"))
  pad = lambda a: np.pad(a, ((0, 0), (0, L - a.shape[1])))  # noqa: E731
  ids = np.concatenate([pad(b["positive_ids"]) for b in hosts] + [pad(b["positive_long_ids"]) for b in hosts])
  mask = np.concatenate([pad(b["positive_mask"]) for b in hosts] + [pad(b["positive_long_mask"]) for b in hosts])
  index = np.concatenate([b["positive_index"] for b in hosts])
  return ids[index], mask[index]


@pytest.mark.parametrize("hosts", [1, 2])
def test_declutr_split_positives_are_the_same_rows_with_less_padding(prepared, hosts):
  """split_positives=True carries exactly the rows of the plain batch (checked after undoing the split with
  positive_index, one and two hosts), the short half no longer than the long half, and fewer padded tokens."""
  make = lambda **kw: DeclutrBatches(prepared, batch_size=4, anchors=2, positives=2, max_span=62, min_span=4,  # noqa
                                     short_docs="shrink", seed=0, mask_prob=0.15,
                                     **{"split_positives": False, **kw})
  plain = make()
  split = [make(split_positives=True, process_index=h, process_count=hosts) for h in range(hosts)]
  padded_plain = padded_split = 0
  for step in range(4):
    p = plain.batch(step)
    bs = [it.batch(step) for it in split]
    for b in bs:
      for k in ("anchor_ids", "anchor_mask", "mlm_positions", "mlm_labels", "mlm_weights"):
        assert k in b
      assert b["positive_ids"].shape[0] == b["positive_long_ids"].shape[0] == len(b["positive_index"]) // 2
      assert b["positive_ids"].shape[1] <= b["positive_long_ids"].shape[1]
      assert b["positive_index"].dtype == np.int32
    ids, mask = _unsplit(bs)
    L = p["positive_ids"].shape[1]
    assert ids.shape[1] == L  # the longer half's bucket is the plain batch's bucket
    np.testing.assert_array_equal(ids, p["positive_ids"])
    np.testing.assert_array_equal(mask, p["positive_mask"])
    padded_plain += p["positive_ids"].size
    padded_split += sum(b["positive_ids"].size + b["positive_long_ids"].size for b in bs)
  assert padded_split < padded_plain


def test_declutr_short_documents_skip_or_shrink_and_are_counted(prepared):
  n = prepared.lengths[prepared.indices(exclude_splits=("test",))]
  skip = DeclutrBatches(prepared, batch_size=4, anchors=2, max_span=64, min_span=8, seed=0, positives=2,
                        short_docs='skip', mask_prob=0.15, split_positives=False)
  shrink = DeclutrBatches(prepared, batch_size=4, anchors=2, max_span=64, min_span=8, short_docs="shrink", seed=0,
                          positives=2, mask_prob=0.15, split_positives=False)
  assert skip.n_short_skipped == int((n < 256).sum()) > 0
  assert shrink.n_short_skipped == int((n // 4 < 8).sum())
  assert shrink.n_shrunk == int(((n < 256) & (n // 4 >= 8)).sum()) > 0
  for step in range(3):  # shrunk documents batch fine
    assert shrink.batch(step)["anchor_ids"].shape[0] == 8


@pytest.mark.parametrize("name", list(BUILDERS))
def test_resume_from_state_gives_identical_batches(prepared, name):
  it = BUILDERS[name](prepared)
  # Cross an epoch boundary on the way.
  for _ in range(it.steps_per_epoch - 1):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  expected = [next(it) for _ in range(3)]
  resumed = BUILDERS[name](prepared)
  resumed.set_state(state)
  assert state == {"step": it.steps_per_epoch - 1}
  for e in expected:
    _assert_batches_equal(next(resumed), e)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_two_hosts_slices_union_to_the_one_host_batch(prepared, name):
  one = BUILDERS[name](prepared)
  hosts = [BUILDERS[name](prepared, process_index=i, process_count=2) for i in range(2)]
  for step in (0, 5):
    full = one.batch(step)
    parts = [h.batch(step) for h in hosts]
    for k in full:
      np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), full[k], err_msg=k)
      assert parts[0][k].shape[0] == full[k].shape[0] // 2


def test_seeds_and_epochs(prepared):
  a, b = MLMBatches(prepared, batch_size=8, seed=0, max_length=512, packing='chunk',
                    mask_prob=0.15), MLMBatches(prepared, batch_size=8, seed=0, max_length=512, packing='chunk',
                                                mask_prob=0.15)
  c = MLMBatches(prepared, batch_size=8, seed=1, max_length=512, packing='chunk', mask_prob=0.15)
  _assert_batches_equal(a.batch(3), b.batch(3))
  assert not np.array_equal(a.batch(3)["input_ids"], c.batch(3)["input_ids"])
  # One epoch visits each selected document at most once; the next epoch is a different order.
  it = BUILDERS["mlm_truncate"](prepared)
  epoch0 = np.concatenate([it.plan(s) for s in range(it.steps_per_epoch)])
  assert len(set(epoch0.tolist())) == len(epoch0) == it.steps_per_epoch * 8
  assert not np.array_equal(it.plan(0), it.plan(it.steps_per_epoch))


def test_pretraining_excludes_the_test_split(prepared):
  test_docs = set(prepared.indices(splits=("test",)).tolist())
  assert test_docs
  for name, build in BUILDERS.items():
    it = build(prepared)
    if name != "mlm_chunk":
      seen = np.concatenate([it.plan(s) for s in range(it.steps_per_epoch)])
      assert not test_docs & set(seen.tolist()), name
    assert not test_docs & set(it.doc_indices.tolist()), name
  everything = MLMBatches(prepared, batch_size=8, exclude_splits=(), max_length=512, seed=0, packing='chunk',
                          mask_prob=0.15)
  assert test_docs <= set(everything.doc_indices.tolist())


def test_length_windows_reduce_padding(prepared):
  def pad_fraction(window):
    it = MLMBatches(prepared, batch_size=8, max_length=512, packing="truncate", window_batches=window, seed=0,
                    mask_prob=0.15)
    att = [it.batch(s)["attention_mask"] for s in range(it.steps_per_epoch)]
    return 1 - sum(a.sum() for a in att) / sum(a.size for a in att)
  # Measured on these 160 quick-start notes (~100-300 tokens each): 0.283 without windows, 0.233 with.
  assert pad_fraction(50) < pad_fraction(1) - 0.03


def test_invalid_settings_raise(prepared):
  with pytest.raises(ValueError, match="multiple of process_count"):
    MLMBatches(prepared, batch_size=6, process_count=4, max_length=512, seed=0, packing='chunk', mask_prob=0.15)
  with pytest.raises(ValueError, match="packing"):
    MLMBatches(prepared, batch_size=8, packing="pack", max_length=512, seed=0, mask_prob=0.15)
  with pytest.raises(ValueError, match="available"):
    MLMBatches(prepared, batch_size=10_000, packing="truncate", max_length=512, seed=0, mask_prob=0.15)


def test_inference_batch_sizes_split_the_tail_into_halvings():
  """Hand-worked: 500 rows in batches of 32 on 2 devices = 15 full batches + a 20-row tail = 16 + 4 (no padded
  row; padding the tail to 32 would compute 12 empty rows). Tails below the smallest allowed size (the
  device count) are padded up to it; sizes stay multiples of the device count."""
  assert inference_batch_sizes(500, 32, 2) == [32] * 15 + [16, 4]
  assert inference_batch_sizes(21, 32, 2) == [16, 4, 2]      # 1 padded row
  assert inference_batch_sizes(1, 32, 2) == [2]
  assert inference_batch_sizes(9, 4, 1) == [4, 4, 1]
  assert inference_batch_sizes(13, 8, 4) == [8, 4, 4]        # 3 padded rows: 4 is the smallest multiple of 4
  assert inference_batch_sizes(7, 6, 2) == [6, 6]            # 6 / 2 = 3 is no multiple of 2: full batches only
  assert inference_batch_sizes(0, 32, 1) == []
  for n in range(1, 70):
    sizes = inference_batch_sizes(n, 32, 2)
    assert all(s % 2 == 0 for s in sizes) and n <= sum(sizes) < n + 2
  with pytest.raises(ValueError, match="multiple of 2"):
    inference_batch_sizes(10, 5, 2)


def test_inference_batches_plan_by_hand():
  """Encoder.embed's plan for lengths [5, 40, 70, 33, 2], max_length 64: sorted longest first = rows 2, 1, 3,
  0, 4; each batch padded to the next multiple of 32 of its longest row, capped at 64. batch_size 3 on 2
  devices rounds up to 4: one full batch, then the 1-row tail computed as 2 rows (the smallest halving)."""
  lengths = [5, 40, 70, 33, 2]
  plan = [(list(r), size, length) for r, size, length in inference_batches(lengths, 2, 64)]
  assert plan == [([2, 1], 2, 64), ([3, 0], 2, 64), ([4], 1, 32)]
  plan = [(list(r), size, length) for r, size, length in inference_batches(lengths, 3, 64, devices=2)]
  assert plan == [([2, 1, 3, 0], 4, 64), ([4], 2, 32)]
  with pytest.raises(ValueError, match="batch_size must be >= 1"):
    inference_batches(lengths, 0, 64)


def test_metadata_random_sampler_is_a_plain_shuffle(prepared):
  """"random" = a seeded permutation cut into batches (no length sorting, so SupCon's positives and negatives
  are not length-matched); "length_bucketed" keeps the old length-sorted windows of 50 batches."""
  from jaxemb.data.batching import epoch_batches
  for sampler, window in (("random", 1), ("length_bucketed", 50)):
    it = MetadataBatches(prepared, batch_size=8, max_length=128, sampler=sampler, seed=0, mask_prob=0.15)
    expected = epoch_batches(it.doc_indices, prepared.lengths, batch_size=8, seed=0, epoch=0, window_batches=window)
    np.testing.assert_array_equal(np.stack([it.plan(s) for s in range(it.steps_per_epoch)]), expected)
  # Within a length-bucketed window rows are sorted by length, so batches are far more uniform in length.
  def mean_spread(sampler):
    it = MetadataBatches(prepared, batch_size=8, max_length=128, sampler=sampler, seed=0, mask_prob=0.15)
    return np.mean([np.ptp(prepared.lengths[it.plan(s)]) for s in range(it.steps_per_epoch)])
  assert mean_spread("length_bucketed") < 0.5 * mean_spread("random")


def test_metadata_batches_mark_duplicate_documents(prepared):
  """`dup` (SupCon's groups) = the index of the first row in the batch with the same token ids as the model sees
  them (cut to the batch's width): distinct rows get their own index; a repeated row its first one's."""
  from jaxemb.data.batching import duplicate_ids
  it = MetadataBatches(prepared, batch_size=8, max_length=128, seed=0, sampler='random', mask_prob=0.15)
  b = it.batch(0)
  docs = it.plan(0)
  width = b["input_ids"].shape[1] - 2
  toks = [tuple(t[:width]) for t in prepared.tokens_many(docs)]
  np.testing.assert_array_equal(b["dup"], [toks.index(t) for t in toks])  # by hand: first equal row
  assert duplicate_ids([[1, 2], [3], [1, 2], [3], [4]]).tolist() == [0, 1, 0, 1, 4]
