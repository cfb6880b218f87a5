"""Dataset report: what a corpus file holds and what the data pipeline would make of it.

  python -m jaxemb.data FILE [--text-field F] [--label-field F] [--metadata-field F] [--max-span N] [--anchors A]
                             [--json]

Streams the file once (memory does not grow with its size beyond one int per document for the length
percentiles). A bad file or an unknown field prints one line `python -m jaxemb.data: error: ...` to stderr and
exits with status 2 (jaxemb/cli.py).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

from jaxemb import cli
from jaxemb.data import corpus as corpus_lib
from jaxemb.data import readers
from jaxemb.data import splits
from jaxemb.data.splits import SplitPlanner
from jaxemb.data.corpus import Fields, SkipReport


PROG = "python -m jaxemb.data"


def _parse(argv: list[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog=PROG, description="Report on a corpus file.")
  p.add_argument("file", help=".jsonl, .jsonl.gz, .csv, .csv.gz or .parquet")
  p.add_argument("--text-field", default="text")
  p.add_argument("--label-field", default=None)
  p.add_argument("--metadata-field", default=None)
  p.add_argument("--group-field", default=None)
  p.add_argument("--split-field", default=None)
  p.add_argument("--id-field", default=None)
  p.add_argument("--max-span", type=int, default=256, help="DeCLUTR max_span (tokens)")
  p.add_argument("--min-span", type=int, default=8, help="DeCLUTR min_span (for the 'shrink' count)")
  p.add_argument("--anchors", type=int, default=2, help="DeCLUTR anchors per document")
  p.add_argument("--split-seed", type=int, default=splits.SPLIT_SEED, help="split seed (data.split_seed)")
  p.add_argument("--val-fraction", type=float, default=splits.VAL_FRACTION, help="data.val_fraction")
  p.add_argument("--test-fraction", type=float, default=splits.TEST_FRACTION, help="data.test_fraction")
  p.add_argument("--tokenizer", default=None, help="HF tokenizer folder or name (default: all-MiniLM-L6-v2)")
  p.add_argument("--no-clean", action="store_true", help="skip whitespace / MIMIC placeholder cleaning")
  p.add_argument("--limit", type=int, default=None, help="read at most this many documents")
  p.add_argument("--json", action="store_true", help="one JSON object on stdout")
  p.add_argument("--verbose", action="store_true", help="show library logs and error tracebacks")
  return p.parse_args(argv)


def build_report(path: Path, fields: Fields, *, tokenizer, clean: bool = True, max_span: int = 256, min_span: int = 8,
                 anchors: int = 2, limit: int | None = None, split_seed: int = splits.SPLIT_SEED,
                 val_fraction: float = splits.VAL_FRACTION, test_fraction: float = splits.TEST_FRACTION) -> dict:
  """The report as a JSON-serialisable dict (the --json output).

  Skips are counted by the rules `prepare` applies (a text that tokenises to nothing is `no_tokens`, not
  kept); "unset" counts kept documents without a label / metadata value by reason; "duplicates" and
  "split_sizes" come from the same split plan as `prepare` and the evaluator (`splits.SplitPlanner`).
  """
  from jaxemb.data.prepare import skip_no_tokens, tokenize  # Lazy: pulls in TFDS.
  from jaxemb.data.spans import effective_max_span

  skips = SkipReport()
  planner = SplitPlanner(seed=split_seed, val_fraction=val_fraction, test_fraction=test_fraction)
  lengths: list[int] = []
  plan_index: list[int] = []
  labels: collections.Counter = collections.Counter()
  metadata: collections.Counter = collections.Counter()
  splits: collections.Counter = collections.Counter()
  chunk: list[tuple[corpus_lib.Document, int]] = []

  def flush() -> None:
    for (doc, k), ids in zip(chunk, tokenize(tokenizer, [d.text for d, _ in chunk])):
      if not ids:
        skip_no_tokens(skips, doc, strict=False, path=path, field=fields.text)
        continue
      lengths.append(len(ids))
      plan_index.append(k)
      if doc.label is not None:
        labels[doc.label] += 1
      if doc.metadata is not None:
        metadata[doc.metadata] += 1
      if doc.split is not None:
        splits[doc.split] += 1
    chunk.clear()

  for doc in corpus_lib.iter_documents(path, fields, clean=clean, report=skips, planner=planner):
    chunk.append((doc, len(planner) - 1))
    if len(chunk) == 256:
      flush()
    if limit is not None and skips.kept >= limit:
      break
  flush()
  plan = planner.plan()
  split_sizes = collections.Counter(plan.splits[k] for k in plan_index)

  n = np.asarray(lengths, np.int64)
  pct = (lambda q: int(np.percentile(n, q))) if len(n) else (lambda q: 0)
  def n_eligible(short_docs: str) -> int:
    return sum(effective_max_span(int(k), anchors=anchors, max_span=max_span, min_span=min_span,
                                  short_docs=short_docs) is not None for k in n)
  eligible, eligible_shrink = n_eligible("skip"), n_eligible("shrink")
  return {
    "file": str(path),
    "rows": skips.rows_seen,
    "kept": skips.kept,
    "skipped": dict(skips.counts),
    "skip_examples": {k: list(v) for k, v in skips.examples.items()},
    "unset": {k: dict(v) for k, v in skips.unset.items()},
    "labels": dict(sorted(labels.items())),
    "metadata": dict(sorted(metadata.items())),
    "splits": dict(sorted(splits.items())),
    "split_sizes": dict(sorted(split_sizes.items())),
    "split_settings": {"seed": split_seed, "val_fraction": val_fraction, "test_fraction": test_fraction},
    "duplicates": plan.duplicates,
    "carved_validation": plan.carved_validation,
    "tokens": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": int(n.max()) if len(n) else 0,
               "mean": float(n.mean()) if len(n) else 0.0, "total": int(n.sum())},
    "declutr": {"anchors": anchors, "max_span": max_span, "min_span": min_span, "min_tokens": 2 * anchors * max_span},
    "declutr_eligible": int(eligible),
    "declutr_eligible_shrink": int(eligible_shrink),
  }


def _print_text(r: dict) -> None:
  print(f"{r['file']}: {r['rows']} rows seen, {r['kept']} documents kept, {sum(r['skipped'].values())} skipped")
  for reason, count in sorted(r["skipped"].items(), key=lambda kv: -kv[1]):
    print(f"  skipped {reason} ({corpus_lib.REASONS.get(reason, reason)}): {count}, e.g. "
          f"{', '.join(r['skip_examples'].get(reason, []))}")
  for field, by_reason in sorted(r["unset"].items()):
    print(f"  kept without {field}: " + ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())))
  t = r["tokens"]
  print(f"tokens/document (no special tokens): p50 {t['p50']}, p90 {t['p90']}, p99 {t['p99']}, max {t['max']}, "
        f"mean {t['mean']:.1f}, total {t['total']}")
  for key in ("labels", "metadata", "splits"):
    if r[key]:
      counts = ", ".join(f"{k} {v}" for k, v in sorted(r[key].items(), key=lambda kv: -kv[1]))
      print(f"{key} ({len(r[key])}): {counts}")
  dup = r["duplicates"]
  print(f"duplicates (same text after whitespace/case normalisation): {dup['documents']} documents repeat one of "
        f"{dup['texts']} texts; {dup['crossing_texts']} texts would cross splits by group hash alone, "
        f"{dup['moved']} documents moved so each text is in one split")
  sizes = ", ".join(f"{k} {v}" for k, v in r["split_sizes"].items())
  print(f"assigned splits (seed {r['split_settings']['seed']}"
        f"{', validation carved from train' if r['carved_validation'] else ''}): {sizes}")
  d = r["declutr"]
  print(f"DeCLUTR (A={d['anchors']}, max_span={d['max_span']}, needs >= {d['min_tokens']} tokens): "
        f"{r['declutr_eligible']} of {r['kept']} documents eligible; with short_docs='shrink' (min_span "
        f"{d['min_span']}): {r['declutr_eligible_shrink']}")


def main(argv: list[str] | None = None) -> int:
  cli.set_environment_defaults()  # before transformers is imported
  args = _parse(argv)
  cli.quiet_library_logs(args.verbose)
  return cli.run_main(PROG, _report, args, verbose=args.verbose)


def _report(args: argparse.Namespace) -> int:
  path = Path(args.file)
  fields = Fields(text=args.text_field, label=args.label_field, metadata=args.metadata_field, group=args.group_field,
                  split=args.split_field, id=args.id_field)
  try:
    readers.corpus_format(path)
    if not path.is_file():
      raise FileNotFoundError(f"{path}: no such file")
    if args.anchors < 1 or not 1 <= args.min_span <= args.max_span:
      raise ValueError("need --anchors >= 1 and 1 <= --min-span <= --max-span")
    if readers.corpus_format(path) == "jsonl":
      # CSV/Parquet readers check their header; for JSONL an unknown field would only show as all rows skipped.
      seen = readers.peek_fields(path)
      for flag, name in (("--text-field", fields.text), ("--label-field", fields.label),
                         ("--metadata-field", fields.metadata), ("--group-field", fields.group),
                         ("--split-field", fields.split), ("--id-field", fields.id)):
        if name is not None and seen and name not in seen:
          raise readers.FieldNotFoundError(f"{path}: {flag} {name!r} is not a field of the first records "
                                              f"(fields: {', '.join(sorted(seen))})")
    from jaxemb.data.prepare import load_tokenizer
    tokenizer = load_tokenizer(args.tokenizer)
    report = build_report(path, fields, tokenizer=tokenizer, clean=not args.no_clean, max_span=args.max_span,
                          min_span=args.min_span, anchors=args.anchors, limit=args.limit, split_seed=args.split_seed,
                          val_fraction=args.val_fraction, test_fraction=args.test_fraction)
  except cli.EXPECTED_ERRORS as e:  # gzip.BadGzipFile is an OSError; BadRowError a ValueError.
    # The first line names the file: the report is about one file, so every message starts with it.
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise cli.UserError(msg if str(path) in msg else f"{path}: {msg}") from e
  if args.json:
    print(json.dumps(report))
  else:
    _print_text(report)
  return 0


if __name__ == "__main__":
  sys.exit(main())
