"""MLM train-step throughput vs sequence length and batch size, jaxemb vs the PyTorch reference.

  python bench/scaling.py [--seq-lens 64,128,256,512] [--seq-batch 8] [--batches 4,8,16,32] [--batch-len 128]
      [--repeats 3] [--steps-per-repeat 1] [--torch-python PY] [--json]

Two sweeps over real MTSamples MLM batches (batch 0 of jaxemb's MLMBatches, chunk packing, so rows are full):
sequence length at a fixed batch (--seq-batch), and batch size at a fixed length (--batch-len). One worker
process per framework for the whole sweep (bench/worker.py); per shape: jaxemb compiles (timed apart, persistent
cache) and both run one warm-up step, then the two take turns for --repeats repetitions of --steps-per-repeat
steps, order alternating. Reported per shape: median s/step, tokens/s, the ratio (jax / torch, > 1 = jaxemb
faster) and the 1-minute load average (mean over the repetitions). With --json the last stdout line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402


def sweep(shapes: list[tuple[int, int]], repeats: int, steps: int, torch_py: str, torch_threads: int | None = None,
          log=print) -> list[dict]:
  out = []
  with tempfile.TemporaryDirectory(prefix="jaxemb-bench-") as tmp, \
       harness.Worker("jax", sys.executable) as jx, harness.Worker("torch", torch_py, torch_threads=torch_threads) as pt:
    for b, length in shapes:
      key = f"{b}x{length}"
      batch_file = str(Path(tmp) / f"{key}.npz")
      info = jx.call("make_batch", objective="mlm", batch=b, seq_len=length, out=batch_file)
      setup = dict(key=key, objective="mlm", batch_file=batch_file, batch=b, seq_len=length)
      js = jx.call("train_setup", **setup)
      pt.call("train_setup", **setup)

      def runner(w):
        return lambda: w.call("train_time", key=key, n=steps)["secs"]

      secs, loads = harness.interleave({"jax": runner(jx), "torch": runner(pt)}, repeats)
      jx.call("drop", key=key), pt.call("drop", key=key)
      row = {"batch": b, "seq_len": length, "shape": info["shapes"]["input_ids"], "tokens": info["tokens"],
             "jax_compile_s": js["compile_s"], "loadavg": statistics.mean(loads)}
      for fw in ("jax", "torch"):
        row[f"{fw}_step_s"] = harness.median(secs[fw])
        row[f"{fw}_step_s_all"] = secs[fw]
        row[f"{fw}_tokens_per_sec"] = info["tokens"] / row[f"{fw}_step_s"]
      row["ratio"] = row["jax_tokens_per_sec"] / row["torch_tokens_per_sec"]
      log(f"{key}: jax {row['jax_step_s']:.3f} s, torch {row['torch_step_s']:.3f} s, ratio {row['ratio']:.2f}, "
          f"load {row['loadavg']:.1f}")
      out.append(row)
  return out


def render(rows: list[dict], vary: str) -> str:
  return harness.table(
      [vary, "shape", "tokens", "jax s/step", "torch s/step", "jax tok/s", "torch tok/s", "ratio", "jax compile s",
       "load (1 min)"],
      [[r[vary], "x".join(map(str, r["shape"])), r["tokens"], r["jax_step_s"], r["torch_step_s"],
        r["jax_tokens_per_sec"], r["torch_tokens_per_sec"], f"{r['ratio']:.2f}", f"{r['jax_compile_s']:.1f}",
        f"{r['loadavg']:.1f}"] for r in rows])


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--seq-lens", default="64,128,256,512")
  p.add_argument("--seq-batch", type=int, default=8)
  p.add_argument("--batches", default="4,8,16,32")
  p.add_argument("--batch-len", type=int, default=128)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--steps-per-repeat", type=int, default=1)
  p.add_argument("--torch-python", default=None)
  p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
  p.add_argument("--json", action="store_true")
  args = p.parse_args(argv)
  seq_shapes = [(args.seq_batch, int(x)) for x in args.seq_lens.split(",") if x]
  batch_shapes = [(int(x), args.batch_len) for x in args.batches.split(",") if x]
  shapes = list(dict.fromkeys(seq_shapes + batch_shapes))  # (8, 128) is in both sweeps: measure it once
  rows = sweep(shapes, args.repeats, args.steps_per_repeat, harness.torch_python(args.torch_python),
               torch_threads=args.torch_threads, log=lambda m: print(m, file=sys.stderr, flush=True))
  by_shape = {(r["batch"], r["seq_len"]): r for r in rows}
  machine = harness.machine_info()
  print(f"MLM train step, {machine['nproc']} cores {machine['cpu']}, {machine['date']}")
  print(f"\nsequence length (batch {args.seq_batch}):")
  print(render([by_shape[s] for s in seq_shapes], "seq_len"))
  print(f"\nbatch size (length {args.batch_len}):")
  print(render([by_shape[s] for s in batch_shapes], "batch"))
  if args.json:
    print(json.dumps({"machine": machine, "rows": rows}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
