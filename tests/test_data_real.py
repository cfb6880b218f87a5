"""The readers and the pipeline on the first rows of a real corpus (MTSamples), when ../shared/data exists."""

import itertools
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxemb.data.corpus import Fields, SkipReport, iter_documents  # noqa: E402
from jaxemb.data.splits import split_documents  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MTSAMPLES = SHARED_DATA / "mtsamples_notes.jsonl.gz"
FIELDS = Fields(label="specialty", metadata="note_type", split="split", id="id")

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def docs():
  if not MTSAMPLES.exists():
    pytest.skip(f"real corpus {MTSAMPLES} is absent (../shared/data sits beside the repo only in CI and dev checkouts)")
  report = SkipReport()
  docs = list(itertools.islice(iter_documents(MTSAMPLES, FIELDS, require=("label", "metadata"), report=report), 300))
  return docs, report


def test_first_300_mtsamples_rows(docs):
  docs, report = docs
  assert len(docs) == 300 and report.rows_seen == 300 and not report.counts
  assert docs[0].id == "mts-29" and docs[0].source == "mtsamples_notes.jsonl.gz:1"
  assert {d.split for d in docs} == {"train", "test"}
  assert len({d.metadata for d in docs}) >= 5 and len({d.label for d in docs}) >= 10
  out = split_documents(docs, seed=0)
  assert {d.id for d in out["test"]} == {d.id for d in docs if d.split == "test"}
  assert out["validation"] and len(out["train"]) > len(out["validation"])


def test_real_notes_tokenise_and_span_sample(docs):
  from jaxemb.data.prepare import load_tokenizer, tokenize
  from jaxemb.data.spans import effective_max_span, sample_spans
  docs, _ = docs
  lengths = np.array([len(ids) for ids in tokenize(load_tokenizer(), [d.text for d in docs[:100]])])
  assert 200 < np.median(lengths) < 1500  # MTSamples: ~500 words per note
  rng = np.random.default_rng(0)
  for n in lengths:
    span = effective_max_span(int(n), anchors=2, max_span=256, min_span=8, short_docs="shrink")
    if span is not None:
      sample = sample_spans(int(n), rng, anchors=2, positives=2, max_span=span, min_span=8)
      assert all(0 <= s < e <= n for s, e in sample.anchors)
