"""Embedding throughput: jaxemb `Encoder.embed` vs a sentence-transformers-style PyTorch encode.

  python bench/embed.py [--n 500] [--batch-size 32] [--max-length 256] [--repeats 3] [--torch-python PY] [--json]

Texts: the first --n MTSamples notes (../shared/data/mtsamples_notes.jsonl.gz; the quick-start corpus when
absent). jaxemb: `Encoder.from_pretrained("minilm").embed(texts, batch_size, max_length)` (tokenise, sort by
length, pad each batch to a length bucket, jitted forward + mean pooling; the first call compiles one program
per bucket, through the persistent cache, and is reported apart). PyTorch: what sentence-transformers'
`encode` does for this model, without the library: texts sorted by character length (longest first), batches
tokenised with padding to their longest row, HF BertModel under torch.inference_mode, masked mean pooling.
Both include tokenisation. One worker process per framework; they take turns, order alternating. tokens/s
counts the real (non-pad, truncated) tokens of the texts. The two outputs are compared (max abs difference).
With --json the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402


def load_texts(n: int) -> tuple[str, list[str]]:
  path = harness.MTSAMPLES
  if not path.exists():
    sys.path.insert(0, str(harness.REPO))
    from jaxemb.data.synthetic import quickstart_corpus_path
    path = Path(quickstart_corpus_path())
  texts = []
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "rt") as f:
    for line in f:
      t = json.loads(line).get("text")
      if isinstance(t, str) and t.strip():
        texts.append(t)
      if len(texts) == n:
        break
  return str(path), texts


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--n", type=int, default=500)
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--max-length", type=int, default=256)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--torch-python", default=None)
  p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
  p.add_argument("--cpu-devices", default="auto",
                 help="CPU devices of the jax worker: auto = one per core, as eval.py and `python -m "
                 "jaxemb.eval.embed` set it; 1 = a plain process's default")
  p.add_argument("--json", action="store_true")
  args = p.parse_args(argv)
  cpu_devices = str(os.cpu_count() or 1) if args.cpu_devices == "auto" else args.cpu_devices
  import numpy as np

  corpus, texts = load_texts(args.n)
  torch_py, torch_threads = harness.torch_python(args.torch_python), args.torch_threads
  log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
  with tempfile.TemporaryDirectory(prefix="jaxemb-bench-") as tmp, \
       harness.Worker("jax", sys.executable, env={"JAX_NUM_CPU_DEVICES": cpu_devices}) as jx, \
       harness.Worker("torch", torch_py, torch_threads=torch_threads) as pt:
    texts_file = Path(tmp) / "texts.json"
    texts_file.write_text(json.dumps(texts))
    setup = dict(texts_file=str(texts_file), batch_size=args.batch_size, max_length=args.max_length)
    js = jx.call("embed_setup", **setup)
    ts = pt.call("embed_setup", **setup)
    log(f"{len(texts)} texts, {js['tokens']} tokens; jax first call {js['first_call_s']:.1f} s (compiles), "
        f"torch first call {ts['first_call_s']:.1f} s")
    outs = {"jax": str(Path(tmp) / "jax.npy"), "torch": str(Path(tmp) / "torch.npy")}

    def runner(w):
      return lambda: w.call("embed_time", n=1, out=outs[w.framework])["secs"]

    secs, loads = harness.interleave({"jax": runner(jx), "torch": runner(pt)}, args.repeats)
    rss = {"jax": jx.call("drop", key="-")["maxrss_mb"], "torch": pt.call("drop", key="-")["maxrss_mb"]}
    diff = float(np.abs(np.load(outs["jax"]) - np.load(outs["torch"])).max())

  tokens = js["tokens"]
  res = {"corpus": corpus, "n": len(texts), "jax_cpu_devices": int(cpu_devices), "batch_size": args.batch_size,
         "max_length": args.max_length,
         "tokens": tokens, "jax_padded_tokens": js["padded_tokens_buckets"], "machine": harness.machine_info(),
         "loadavg_per_repeat": loads, "jax_first_call_s": js["first_call_s"], "torch_first_call_s": ts["first_call_s"],
         "max_abs_diff": diff}
  for fw in ("jax", "torch"):
    med = harness.median(secs[fw])
    res.update({f"{fw}_s": med, f"{fw}_s_all": secs[fw], f"{fw}_tokens_per_sec": tokens / med,
                f"{fw}_texts_per_sec": len(texts) / med, f"{fw}_peak_rss_mb": rss[fw]})
  res["ratio"] = res["jax_tokens_per_sec"] / res["torch_tokens_per_sec"]
  print(f"embed {len(texts)} texts ({tokens} tokens, max_length {args.max_length}, batch {args.batch_size}) from "
        f"{Path(corpus).name}; {res['machine']['nproc']} cores {res['machine']['cpu']}; jax on {cpu_devices} CPU "
        "device(s)")
  print(harness.table(
      ["framework", "median s", "min-max", "texts/s", "tokens/s", "first call s", "peak RSS MB"],
      [[fw, res[f"{fw}_s"], harness.spread(secs[fw]), res[f"{fw}_texts_per_sec"], res[f"{fw}_tokens_per_sec"],
        res[f"{fw}_first_call_s"], res[f"{fw}_peak_rss_mb"]] for fw in ("jax", "torch")]))
  print(f"ratio jax/torch tokens/s = {res['ratio']:.2f}; max |jax - torch| = {diff:.1e}; jax computes "
        f"{res['jax_padded_tokens']} padded tokens for {tokens} real ones")
  print(f"load average (1 min) per repetition: {', '.join(f'{x:.1f}' for x in loads)}")
  if args.json:
    print(json.dumps(res))
  return 0


if __name__ == "__main__":
  sys.exit(main())
