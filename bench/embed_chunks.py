"""The row-chunk lever of the embedding path: one jitted forward + mean pooling of a B x L batch, whole or in
chunks of k rows (`jaxemb.models.encoder.pooled_embeddings(chunk_rows=k)`, lax.map over the chunks).

  python bench/embed_chunks.py [--batch 32] [--seq-len 256] [--chunks 0,1,2,4,8,16] [--repeats 5] [--json]

MiniLM weights, random token ids (rows 0..B/2 full, the rest 3/4 full: the forward's cost does not depend on
the ids). Chunk 0 = the whole batch in one program (what accelerators get); `auto` marks what
`rows_per_chunk` picks on one CPU device. Variants take turns (round-robin, order rotated every repetition);
reported: median seconds per batch, tokens/s and the max |difference| to the whole-batch embeddings.
With --json the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seq-len", type=int, default=256)
  p.add_argument("--chunks", default="0,1,2,4,8,16")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--json", action="store_true")
  args = p.parse_args(argv)
  import jax
  import numpy as np
  from jaxemb.models.api import Encoder
  from jaxemb.models.encoder import pooled_embeddings, rows_per_chunk

  enc = Encoder.from_pretrained("minilm")
  b, length = args.batch, args.seq_len
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, enc.config.vocab_size, (b, length)).astype(np.int32)
  mask = np.ones((b, length), np.int32)
  mask[b // 2:, (3 * length) // 4:] = 0
  params = jax.device_put(enc.params["encoder"])
  chunks = [int(x) for x in args.chunks.split(",") if int(x) == 0 or b % int(x) == 0]
  fns, outs = {}, {}
  for k in chunks:
    fns[k] = jax.jit(lambda q, i, m, k=k: pooled_embeddings(q, i, m, config=enc.config, chunk_rows=k or None))
    outs[k] = np.asarray(fns[k](params, ids, mask))  # compile + warm up
  secs = {k: [] for k in chunks}
  for r in range(args.repeats):
    order = chunks[r % len(chunks):] + chunks[:r % len(chunks)]
    for k in order:
      t0 = time.perf_counter()
      jax.block_until_ready(fns[k](params, ids, mask))
      secs[k].append(time.perf_counter() - t0)
  auto = rows_per_chunk(b, length)
  ref = outs[chunks[0]]
  rows = []
  res = {"batch": b, "seq_len": length, "auto_rows": auto, "machine": harness.machine_info(), "variants": {}}
  for k in chunks:
    med = statistics.median(secs[k])
    scores_mb = (k or b) * enc.config.num_heads * length * length * 4 / 2**20
    diff = float(np.abs(outs[k] - ref).max())
    res["variants"][str(k)] = {"median_s": med, "all_s": secs[k], "tokens_per_sec": b * length / med,
                               "scores_mib_per_layer": scores_mb, "max_abs_diff": diff}
    label = ("whole batch" if k == 0 else f"{k} rows") + (" (auto)" if (k or b) == auto else "")
    rows.append([label, f"{scores_mb:.1f}", med, harness.spread(secs[k]), b * length / med, f"{diff:.1e}"])
  print(f"MiniLM forward + mean pooling, batch {b} x {length}, {res['machine']['nproc']} cores "
        f"{res['machine']['cpu']}, jax {jax.__version__}")
  print(harness.table(["chunk", "scores MiB/layer", "median s", "min-max", "tokens/s", "max |diff|"], rows))
  if args.json:
    print(json.dumps(res))
  return 0


if __name__ == "__main__":
  sys.exit(main())
