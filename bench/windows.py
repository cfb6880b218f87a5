"""Cost of whole-document embeddings: tokens/s of windowed vs truncated `Encoder.embed` on MTSamples notes.

  python bench/windows.py [--docs 200] [--windows 128,256] [--repeats 3] [--dtype float32] [--json]

A seeded subset of --docs MTSamples notes (../shared/data), all-MiniLM-L6-v2. For each window size W two
variants take turns (harness.interleave, order reversed every other repetition): `truncate W` =
`embed(texts, max_length=W)` (each note's first W tokens) and `windows W` = `embed(texts, window=W,
pooling="mean")` (every W-token window of every note; windows of many notes share length-sorted batches).
tokens/s = tokens the encoder read (special tokens included, padding not) / median seconds of a whole pass;
the ratio windows / truncate is the one number to read (the goal: within 10%, i.e. >= 0.9, because windows
are batched like documents). Total time per corpus = the corpus's windowed tokens / the measured tokens/s.
With --json the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPORA = ("mtsamples_notes", "fda_device_recalls", "medquad_answers")


def read_texts(name: str) -> list[str]:
  with gzip.open(DATA / f"{name}.jsonl.gz", "rt") as f:
    return [t for t in (json.loads(line).get("text") or "" for line in f) if t.strip()]


def tokens_read(enc, texts: list[str], window: int, truncate: bool) -> int:
  """Tokens the encoder reads, special tokens included: per note min(n + 2, W) truncated, else the sum of its
  windows (jaxemb.models.windows.Windowing.spans)."""
  from jaxemb.models.windows import Windowing
  w = Windowing(window, 0, "mean")
  total = 0
  for ids in enc.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]:
    total += min(len(ids) + 2, window) if truncate else sum(b - a + 2 for a, b in w.spans(len(ids)))
  return total


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--docs", type=int, default=200)
  p.add_argument("--windows", default="128,256")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--json", action="store_true")
  args = p.parse_args(argv)
  if not (DATA / "mtsamples_notes.jsonl.gz").exists():
    print(f"{DATA} is absent: this benchmark needs the MTSamples corpus", file=sys.stderr)
    return 2
  from jaxemb.eval.embed import use_every_cpu_core_as_a_device
  use_every_cpu_core_as_a_device()  # as eval.py and python -m jaxemb.eval.embed run
  import time

  import numpy as np

  from jaxemb.models.api import Encoder

  enc = Encoder.from_pretrained("minilm")
  notes = read_texts("mtsamples_notes")
  rng = np.random.default_rng(0)
  texts = [notes[i] for i in np.sort(rng.choice(len(notes), min(args.docs, len(notes)), replace=False))]
  windows = [int(w) for w in args.windows.split(",")]
  runs, tokens = {}, {}
  for w in windows:
    for name, kw, trunc in ((f"truncate {w}", {"max_length": w}, True),
                            (f"windows {w}", {"window": w, "pooling": "mean"}, False)):
      def run(kw=kw):
        t0 = time.perf_counter()
        enc.embed(texts, batch_size=args.batch_size, dtype=args.dtype, **kw)
        return [time.perf_counter() - t0]
      run()  # compile every (rows, length) shape once, outside the timings
      runs[name], tokens[name] = run, tokens_read(enc, texts, w, trunc)
  secs, loads = harness.interleave(runs, args.repeats)
  rows, out = [], {"machine": harness.machine_info(), "docs": len(texts), "dtype": args.dtype, "loads": loads,
                   "variants": {}, "ratios": {}, "corpus_minutes": {}}
  for name in runs:
    med = harness.median(secs[name])
    out["variants"][name] = {"tokens": tokens[name], "median_s": med, "tokens_per_s": tokens[name] / med,
                             "seconds": secs[name]}
    rows.append([name, tokens[name], med, harness.spread(secs[name]), tokens[name] / med])
  print(harness.table(["variant", "tokens", "median s", "min-max", "tokens/s"], rows))
  for w in windows:
    r = out["variants"][f"windows {w}"]["tokens_per_s"] / out["variants"][f"truncate {w}"]["tokens_per_s"]
    out["ratios"][str(w)] = r
    print(f"window {w}: windowed / truncated tokens/s = {r:.2f}")
  for name in CORPORA:
    if (DATA / f"{name}.jsonl.gz").exists():
      corpus = read_texts(name)
      for w in windows:
        for kind, trunc in (("truncate", True), ("windows", False)):
          n = tokens_read(enc, corpus, w, trunc)
          minutes = n / out["variants"][f"{kind} {w}"]["tokens_per_s"] / 60
          out["corpus_minutes"][f"{name} {kind} {w}"] = {"tokens": n, "minutes": minutes}
          print(f"{name} ({len(corpus)} docs) {kind} {w}: {n:,} tokens, ~{minutes:.1f} min at the rate above")
  print(f"load average before each repetition: {loads}")
  if args.json:
    print(json.dumps(out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
