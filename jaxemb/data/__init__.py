"""Corpora, cleaning, splits, tokenisation cache, span sampling, masking and batches (see docs/ARCHITECTURE.md).

Light modules (corpus, splits, spans, masking, batching, synthetic) import without TensorFlow Datasets; `prepare`
(the TFDS array_record cache) is imported on first use of its names from here.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
  """Root of jaxemb's caches: $JAXEMB_CACHE_DIR, else ~/.cache/jaxemb (prepared corpora go in `prepared/`)."""
  return Path(os.environ.get("JAXEMB_CACHE_DIR", Path.home() / ".cache" / "jaxemb"))


_LAZY = {
  "Fields": "corpus", "Document": "corpus", "SkipReport": "corpus", "BadRowError": "corpus",
  "iter_documents": "corpus", "load_documents": "corpus", "clean_text": "corpus",
  "SplitPlanner": "splits", "plan_splits": "splits", "split_documents": "splits",
  "data_config": "spec", "corpus_path": "spec", "write_data_spec": "spec", "read_data_spec": "spec",
  "check_compatible": "spec",
  # (`prepare` itself is not re-exported: the name is taken by the submodule jaxemb.data.prepare.)
  "PreparedCorpus": "prepare", "load_tokenizer": "prepare",
  "SpecialTokens": "masking", "mask_tokens": "masking",
  "sample_spans": "spans",
  "bucket_length": "batching", "mlm_max_predictions": "batching", "LENGTH_BUCKETS": "batching",
  "quickstart_corpus_path": "synthetic",
}


def __getattr__(name: str):
  # Lazy so `import jaxemb.data.batching` (used inside the train step's process) does not import TFDS.
  if name in _LAZY:
    import importlib
    return getattr(importlib.import_module(f"jaxemb.data.{_LAZY[name]}"), name)
  raise AttributeError(name)


__all__ = ["default_cache_dir", *_LAZY]
