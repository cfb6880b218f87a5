"""What one implementation lever is worth: jaxemb's train step with the lever toggled off, bench-locally.

  python bench/levers.py [--objective mlm] [--batch 16] [--seq-len 128] [--variants default,full_vocab,...]
      [--repeats 4] [--steps-per-repeat 1] [--json]

Variants (bench/worker.py `_variant`, patched into the package only inside the bench process while the step
is traced; the package is unchanged):
- default: the package as it is.
- full_vocab: LM head transform + vocabulary projection + CE on every position (B*L rows, as HF does), not
  on the M gathered prediction slots.
- bernoulli_dropout: `jax.random.bernoulli` per element instead of two 16-bit decisions per random word.
- no_attention_dropout: no dropout on the B x H x L x L attention probabilities (a diagnostic, not equivalent
  training: it bounds what a cheaper attention dropout could save).
- single_positive_group (DeCLUTR): the batch's positives merged back into one array padded to the longest,
  instead of the shorter / longer halves at their own lengths (`declutr.split_positives`, the default).
- softmax_probs: attention normalised over the L x L probabilities (jax.nn.softmax, then PV), as before the
  package divided the Q x d context by the softmax sum.
- threefry_dropout: the dropout masks from threefry bits, as before the hashed counter.
All variants run in one jax worker on the same real MTSamples batch, taking turns (order alternating).
Reported: median s/step, the delta against default, compile time. With --json the last line is one JSON object.
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


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--objective", choices=("mlm", "declutr", "metadata"), default="mlm")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--seq-len", type=int, default=128)
  p.add_argument("--variants", default="default,full_vocab,bernoulli_dropout")
  p.add_argument("--repeats", type=int, default=4)
  p.add_argument("--steps-per-repeat", type=int, default=1)
  p.add_argument("--json", action="store_true")
  args = p.parse_args(argv)
  variants = [v for v in args.variants.split(",") if v]
  log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
  with tempfile.TemporaryDirectory(prefix="jaxemb-bench-") as tmp, harness.Worker("jax", sys.executable) as jx:
    batch_file = str(Path(tmp) / "batch.npz")
    info = jx.call("make_batch", objective=args.objective, batch=args.batch, seq_len=args.seq_len, out=batch_file)
    compile_s, losses = {}, {}
    for v in variants:
      r = jx.call("train_setup", key=v, objective=args.objective, batch_file=batch_file, batch=args.batch,
                  seq_len=args.seq_len, num_categories=info["num_categories"], variant=v)
      compile_s[v] = r["compile_s"]
      log(f"{v}: compile {r['compile_s']:.1f} s, first step {r['first_step_s']:.2f} s")

    def runner(v):
      def go():
        r = jx.call("train_time", key=v, n=args.steps_per_repeat)
        losses[v] = r["loss"]
        return r["secs"]
      return go

    secs, loads = harness.interleave({v: runner(v) for v in variants}, args.repeats)
  med = {v: harness.median(secs[v]) for v in variants}
  base = med.get("default", med[variants[0]])
  machine = harness.machine_info()
  print(f"{args.objective} train step, batch {info['shapes']}, {machine['nproc']} cores {machine['cpu']}")
  print(harness.table(["variant", "median s/step", "min-max", "delta vs default s", "tokens/s", "compile s"],
                      [[v, med[v], harness.spread(secs[v]), f"{med[v] - base:+.3f}", info["tokens"] / med[v],
                        f"{compile_s[v]:.1f}"] for v in variants]))
  print(f"load average (1 min) per repetition: {', '.join(f'{x:.1f}' for x in loads)} (mean "
        f"{statistics.mean(loads):.1f})")
  if args.json:
    print(json.dumps({"objective": args.objective, "shapes": info["shapes"], "tokens": info["tokens"],
                      "machine": machine, "loadavg_per_repeat": loads, "step_s": med, "step_s_all": secs,
                      "compile_s": compile_s, "losses": losses}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
