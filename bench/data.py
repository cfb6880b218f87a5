"""Host data pipeline throughput: prepare time, then documents/s and tokens/s of each batch builder.

  python bench/data.py [--corpus FILE] [--steps 30] [--json]

Default corpus: ../shared/data/mtsamples_notes.jsonl.gz, else the synthetic quick-start corpus. `prepare` runs
into a fresh temporary cache (cold) unless --cache-dir is given. tokens/s counts real (non-pad) tokens of the
batches produced, special tokens included; docs/s counts documents per second (for chunk packing, where rows are
blocks, it is the document-equivalent: tokens/s divided by the mean document size in the stream). With --json
the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxemb import cli  # noqa: E402

cli.set_environment_defaults()  # before transformers is imported

import numpy as np  # noqa: E402

from jaxemb.objectives.declutr import DeclutrBatches  # noqa: E402
from jaxemb.objectives.metadata import MetadataBatches  # noqa: E402
from jaxemb.objectives.mlm import MLMBatches  # noqa: E402
from jaxemb.data.corpus import Fields  # noqa: E402
from jaxemb.data.readers import peek_fields  # noqa: E402
from jaxemb.data.prepare import load_tokenizer, prepare  # noqa: E402
from jaxemb.data.synthetic import quickstart_corpus_path  # noqa: E402

MTSAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mtsamples_notes.jsonl.gz"


def _fields_for(path: Path) -> Fields:
  """MTSamples / quick-start field names, where the file has them (label = specialty, metadata = note_type)."""
  seen = peek_fields(path)
  pick = lambda name: name if name in seen else None  # noqa: E731
  return Fields(label=pick("specialty"), metadata=pick("note_type"), group=pick("group"), split=pick("split"),
                id=pick("id"))


def _auto_max_span(lengths: np.ndarray, anchors: int) -> int:
  # The paper's long-note setting (256) where enough notes qualify, else shorter spans as for short reports.
  for span in (256, 128, 64, 32, 16):
    if (lengths >= 2 * anchors * span).mean() >= 0.3:
      return span
  return 16


def _real_tokens(batch: dict) -> int:
  return int(sum(v.sum() for k, v in batch.items() if k in ("attention_mask", "anchor_mask", "positive_mask",
                                                                "positive_long_mask")))


def _time(it, steps: int, docs_per_batch) -> dict:
  for _ in range(2):  # warm-up: first epoch permutation, page cache
    next(it)
  tokens, docs = 0, 0.0
  t0 = time.perf_counter()
  for _ in range(steps):
    b = next(it)
    tokens += _real_tokens(b)
    docs += docs_per_batch(b)
  dt = time.perf_counter() - t0
  return {"batches_per_s": steps / dt, "docs_per_s": docs / dt, "tokens_per_s": tokens / dt,
          "ms_per_batch": 1e3 * dt / steps}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--corpus", default=None)
  p.add_argument("--cache-dir", default=None, help="reuse this cache (default: a fresh temporary one, cold prepare)")
  p.add_argument("--steps", type=int, default=30)
  p.add_argument("--batch-size", type=int, default=16)
  p.add_argument("--max-length", type=int, default=512)
  p.add_argument("--max-span", type=int, default=None, help="DeCLUTR max_span (default: longest of 256..16 for "
                 "which >= 30%% of documents qualify)")
  p.add_argument("--json", action="store_true")
  args = p.parse_args(argv)

  corpus = Path(args.corpus) if args.corpus else MTSAMPLES if MTSAMPLES.exists() else quickstart_corpus_path()
  fields = _fields_for(corpus)
  tmp = None if args.cache_dir else tempfile.TemporaryDirectory(prefix="jaxemb-bench-")
  cache_dir = Path(args.cache_dir or tmp.name)

  tokenizer = load_tokenizer()
  t0 = time.perf_counter()
  pc = prepare(corpus, fields, tokenizer, cache_dir=cache_dir)
  prepare_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  pc = prepare(corpus, fields, tokenizer, cache_dir=cache_dir)
  reopen_s = time.perf_counter() - t0

  B, L, A = args.batch_size, args.max_length, 2
  span = args.max_span or _auto_max_span(pc.lengths, A)
  mean_doc = float(pc.lengths.mean() + 2)
  pipelines = {
    "mlm_chunk": (MLMBatches(pc, batch_size=B, max_length=L, packing="chunk", seed=0, mask_prob=0.15),
                  lambda b: b["attention_mask"].sum() / mean_doc),
    "mlm_truncate": (MLMBatches(pc, batch_size=B, max_length=L, packing="truncate", seed=0, mask_prob=0.15),
                     lambda b: B),
    "metadata_random": (MetadataBatches(pc, batch_size=B, max_length=L, seed=0, sampler='random', mask_prob=0.15),
                        lambda b: B),
    "metadata_balanced": (MetadataBatches(pc, batch_size=B, max_length=L, sampler="balanced", seed=0, mask_prob=0.15),
                          lambda b: B),
    f"declutr_span{span}": (DeclutrBatches(pc, batch_size=max(2, B // 2), anchors=A, positives=2, max_span=span,
                                           min_span=8, seed=0, short_docs='skip', mask_prob=0.15,
                                           split_positives=False), lambda b: b["anchor_ids"].shape[0] / A),
  }
  results = {name: _time(it, args.steps, per) for name, (it, per) in pipelines.items()}

  print(f"corpus {corpus.name}: {len(pc)} docs, {int(pc.lengths.sum())} tokens; prepare (cold) {prepare_s:.1f} s "
        f"= {pc.lengths.sum() / prepare_s:,.0f} tokens/s; reopen {reopen_s:.2f} s")
  print(f"{'pipeline':<20}{'ms/batch':>10}{'docs/s':>10}{'tokens/s':>12}")
  for name, r in results.items():
    print(f"{name:<20}{r['ms_per_batch']:>10.1f}{r['docs_per_s']:>10.0f}{r['tokens_per_s']:>12,.0f}")
  if args.json:
    print(json.dumps({"corpus": str(corpus), "docs": len(pc), "tokens": int(pc.lengths.sum()), "prepare_s": prepare_s,
                      "reopen_s": reopen_s, "batch_size": B, "max_length": L, "declutr_max_span": span,
                      "pipelines": results}))
  if tmp is not None:
    tmp.cleanup()
  return 0


if __name__ == "__main__":
  sys.exit(main())
