"""One full train step of jaxemb vs the PyTorch reference, same objective, model, batch and real text.

  python bench/train_step.py --objective mlm|declutr|metadata [--batch B] [--seq-len L] [--repeats N]
      [--steps-per-repeat K] [--torch-python PY] [--json]

Defaults: MLM and metadata 16 x 128 tokens; DeCLUTR 8 documents x A=2 anchors x P=2 positives, max_span 64
(--seq-len sets max_span for DeCLUTR, --batch the documents). The batch is batch 0 of jaxemb's own batch
iterator for the objective (open_corpus) on MTSamples (../shared/data/mtsamples_notes.jsonl.gz; the
quick-start corpus when absent), saved once and fed to both frameworks.

jaxemb: loop.build_state_and_step (AdamW + clipping, donated state), AOT-lowered and compiled (timed apart,
through the persistent compilation cache in $JAXEMB_BENCH_CACHE or ~/.cache/jaxemb-bench), one warm-up step,
then timed steps ending in block_until_ready. PyTorch: bench/torch_reference.make_torch_step (HF
BertForMaskedLM + AdamW, forward/backward/step, float(loss) synchronises), one warm-up step. Each framework
runs in its own process (peak RSS = that process's ru_maxrss, model and optimiser included); the two take
turns, K steps at a time, N times, order alternating. Reported: median seconds per step, tokens/s (non-pad
tokens of the batch, positives included), ratio = jax tokens/s / torch tokens/s (> 1: jaxemb faster),
achieved GFLOP/s (analytic 3 x forward matmul FLOPs of what each framework computes) against the measured
2048^2 float32 matmul peak, and the 1-minute load average before each repetition.
With --json the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402

DEFAULTS = {"mlm": (16, 128), "metadata": (16, 128), "declutr": (8, 64)}


def run(objective: str, batch: int, seq_len: int, repeats: int, steps_per_repeat: int, torch_py: str,
        jax_py: str, peak: bool = True, torch_threads: int | None = None, dtype: str = "float32",
        log=print) -> dict:
  with tempfile.TemporaryDirectory(prefix="jaxemb-bench-") as tmp, \
       harness.Worker("jax", jax_py) as jx, harness.Worker("torch", torch_py, torch_threads=torch_threads) as pt:
    batch_file = str(Path(tmp) / "batch.npz")
    info = jx.call("make_batch", objective=objective, batch=batch, seq_len=seq_len, out=batch_file)
    log(f"batch from {info['corpus']}: {info['shapes']}, {info['tokens']} non-pad tokens, "
        f"{info['predictions']} MLM predictions")
    setup = dict(key="main", objective=objective, batch_file=batch_file, batch=batch, seq_len=seq_len,
                 num_categories=info["num_categories"], dtype=dtype)
    base = {"jax": jx.call("versions")["rss_mb"], "torch": pt.call("versions")["rss_mb"]}
    versions = {**jx.call("versions"), **pt.call("versions")}
    versions.pop("rss_mb", None), versions.pop("maxrss_mb", None), versions.pop("ok", None)
    js = jx.call("train_setup", **setup)
    ts = pt.call("train_setup", **setup)
    log(f"jax: lower {js['lower_s']:.2f} s, compile {js['compile_s']:.2f} s, first step {js['first_step_s']:.2f} s; "
        f"torch: first step {ts['first_step_s']:.2f} s")
    losses = {}

    def runner(w):
      def go():
        r = w.call("train_time", key="main", n=steps_per_repeat)
        losses[w.framework] = r["loss"]
        return r["secs"]
      return go

    secs, loads = harness.interleave({"jax": runner(jx), "torch": runner(pt)}, repeats)
    rss = {"jax": jx.call("drop", key="main"), "torch": pt.call("drop", key="main")}
    peaks = {}
    if peak:
      peaks = {**jx.call("peak"), **pt.call("peak")}
      for k in ("ok", "rss_mb", "maxrss_mb"):
        peaks.pop(k, None)

  tokens = info["tokens"]
  res = {"objective": objective, "dtype": dtype, "batch": batch, "seq_len": seq_len, "shapes": info["shapes"],
         "tokens": tokens, "corpus": info["corpus"], "repeats": repeats, "steps_per_repeat": steps_per_repeat,
         "machine": harness.machine_info(), "versions": versions, "loadavg_per_repeat": loads,
         "jax_compile_s": js["compile_s"], "jax_lower_s": js["lower_s"], "jax_first_step_s": js["first_step_s"],
         "torch_first_step_s": ts["first_step_s"], "losses": losses, **peaks}
  for fw in ("jax", "torch"):
    med = harness.median(secs[fw])
    flops = harness.train_step_flops(objective, info["shapes"], info["model"], fw)
    res.update({f"{fw}_step_s": med, f"{fw}_step_s_all": secs[fw], f"{fw}_tokens_per_sec": tokens / med,
                f"{fw}_train_gflop": flops / 1e9, f"{fw}_gflops": flops / med / 1e9,
                f"{fw}_peak_rss_mb": rss[fw]["maxrss_mb"], f"{fw}_base_rss_mb": base[fw]})
  res["ratio"] = res["jax_tokens_per_sec"] / res["torch_tokens_per_sec"]
  # The same useful work (jaxemb's FLOPs) over each framework's time: a like-for-like utilisation.
  res["torch_useful_gflops"] = res["jax_train_gflop"] / res["torch_step_s"]
  return res


def report(res: dict) -> str:
  peak = max(res.get("torch_matmul_gflops", 0), res.get("jax_matmul_gflops", 0), res.get("numpy_matmul_gflops", 0))
  rows = []
  for fw in ("jax", "torch"):
    g = res[f"{fw}_gflops"]
    rows.append([fw, res[f"{fw}_step_s"], harness.spread(res[f"{fw}_step_s_all"]), res[f"{fw}_tokens_per_sec"],
                 res[f"{fw}_train_gflop"], g, f"{100 * g / peak:.0f}%" if peak else "-",
                 res[f"{fw}_peak_rss_mb"]])
  out = [harness.table(["framework", "median s/step", "min-max", "tokens/s", "GFLOP/step", "GFLOP/s", "% of peak",
                        "peak RSS MB"], rows)]
  out.append(f"ratio jax/torch tokens/s = {res['ratio']:.2f}  (jax compile {res['jax_compile_s']:.1f} s, "
             f"lower {res['jax_lower_s']:.1f} s)")
  if peak:
    out.append("matmul 2048^2 fp32 GFLOP/s: " + ", ".join(
        f"{k.split('_')[0]} {res[k]:.0f}" for k in ("jax_matmul_gflops", "torch_matmul_gflops", "numpy_matmul_gflops")
        if k in res))
  out.append(f"load average (1 min) per repetition: {', '.join(f'{x:.1f}' for x in res['loadavg_per_repeat'])}")
  return "\n".join(out)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--objective", choices=tuple(DEFAULTS), default="mlm")
  p.add_argument("--batch", type=int, default=None, help="rows (DeCLUTR: documents); default 16 (DeCLUTR 8)")
  p.add_argument("--seq-len", type=int, default=None, help="max length (DeCLUTR: max_span); default 128 (64)")
  p.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
  p.add_argument("--steps-per-repeat", type=int, default=2)
  p.add_argument("--torch-python", default=None, help="python with torch (default: $JAXEMB_BENCH_TORCH_PYTHON)")
  p.add_argument("--torch-threads", type=int, default=None,
                 help="torch.set_num_threads for the reference (default: torch's own, = cores); on a loaded "
                 "machine 1 can be faster")
  p.add_argument("--no-peak", action="store_true", help="skip the matmul peak measurement")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="compute dtype of both sides: jaxemb `model.dtype` (bf16 matmuls, float32 parameters, "
                 "optimiser and softmax/LayerNorm statistics); PyTorch `torch.autocast('cpu', bfloat16)` around "
                 "the forward (its usual mixed precision). Both use AMX where the CPU has it")
  p.add_argument("--json", action="store_true")
  args = p.parse_args(argv)
  b, length = DEFAULTS[args.objective]
  res = run(args.objective, args.batch or b, args.seq_len or length, args.repeats, args.steps_per_repeat,
            harness.torch_python(args.torch_python), sys.executable, peak=not args.no_peak,
            torch_threads=args.torch_threads, dtype=args.dtype,
            log=lambda m: print(m, file=sys.stderr, flush=True))
  print(f"{args.objective} ({args.dtype}): batch {res['shapes']}, {res['tokens']} tokens, "
        f"{res['machine']['nproc']} cores, {res['machine']['cpu']}, torch threads {res['versions']['torch_threads']}")
  print(report(res))
  if args.json:
    print(json.dumps(res))
  return 0


if __name__ == "__main__":
  sys.exit(main())
