"""Model FLOPs utilisation of jaxemb's MLM train step on the local devices (the accelerator goal of issue #6).

  python bench/mfu.py [--model bert-base|minilm|tiny|HF_FOLDER] [--batch 32 (per device)] [--seq-len 512]
      [--dtype bfloat16] [--remat] [--attention xla|dot_product_attention] [--steps 10] [--peak-tflops X]
      [--trace DIR] [--json]

The step is the training program's own (`loop.build_state_and_step`: AdamW + clipping, donated state, the
batch sharded over every local device on a "data" mesh, the masked-only LM head). `bert-base` is a randomly
initialised BERT-base-shaped encoder (hidden 768, 12 layers, 12 heads, FFN 3072, vocab 30522): MFU depends on
shapes, not on weights, so no download is needed. Batches are synthetic full rows with 15% prediction slots.

MFU = analytic model FLOPs per step / step time / peak FLOP/s of all local devices. Model FLOPs are
3 x the forward matmul FLOPs (bench/harness.train_step_flops: Q/K/V/output, FFN, QK^T and PV, the LM head on
the prediction slots); remat's recomputation is NOT counted (MaxText / PaLM convention). Peak: --peak-tflops
(per device), else the dense bf16/fp16 datasheet figure of a known accelerator (PEAK_TFLOPS below), else
-- on CPU -- the best jitted 2048^2 matmul of the step's dtype measured in this process.
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

# Dense bf16 TFLOP/s per device (vendor datasheets, without sparsity), matched as substrings of device_kind.
PEAK_TFLOPS = {
    "H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "A10G": 125.0,
    "TPU v6": 918.0, "TPU v5p": 459.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v4": 275.0,
}

SHAPES = {
    "bert-base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536),
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128),
}


def datasheet_peak(device_kind: str) -> float | None:
  for key, tflops in PEAK_TFLOPS.items():
    if key.lower() in device_kind.lower():
      return tflops * 1e12
  return None


def measured_matmul_peak(dtype: str, n: int = 2048, repeats: int = 5) -> float:
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
  mm = jax.jit(lambda x: jnp.matmul(x, x, preferred_element_type=jnp.float32))
  mm(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    mm(a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n**3 / best


def synthetic_mlm_batch(batch: int, length: int, vocab: int, seed: int = 0) -> dict:
  import numpy as np
  from jaxemb.data.batching import mlm_max_predictions
  rng = np.random.default_rng(seed)
  m = mlm_max_predictions(length)
  ids = rng.integers(1000, vocab, (batch, length)).astype(np.int32)
  pos = np.sort(np.stack([rng.choice(np.arange(1, length - 1), m, replace=False) for _ in range(batch)]), 1)
  return {"input_ids": ids, "attention_mask": np.ones((batch, length), np.int32),
          "mlm_positions": pos.astype(np.int32), "mlm_labels": np.take_along_axis(ids, pos, 1).astype(np.int32),
          "mlm_weights": np.ones((batch, m), np.float32)}


def run(model: str, batch_per_device: int, seq_len: int, dtype: str, remat: bool, steps: int,
        peak_tflops: float | None, attention: str = "xla", trace: str = "") -> dict:
  import jax
  import numpy as np
  from jax.sharding import Mesh
  from jaxemb.models.api import Encoder
  from jaxemb.models.config import EncoderConfig
  from jaxemb.train import loop
  from jaxemb.train.config import base_config

  if model in SHAPES:
    config = EncoderConfig(family="bert", vocab_size=30522, max_position_embeddings=max(512, seq_len),
                           type_vocab_size=2, **SHAPES[model])
    encoder = Encoder.from_config(config, seed=0, name=model)
  else:
    encoder = Encoder.from_pretrained(model)
  c = encoder.config
  devices = jax.devices()
  batch = batch_per_device * len(devices)  # global: the same work per device on 1 or 8 chips
  cfg = base_config("mlm")
  cfg.batch_size = batch
  cfg.data.max_length = seq_len
  cfg.model.dtype = dtype
  cfg.model.remat = remat
  cfg.model.attention = attention
  mesh = Mesh(np.array(devices), ("data",))
  host_batch = synthetic_mlm_batch(batch, seq_len, c.vocab_size)
  state, step_fn = loop.build_state_and_step(cfg, encoder, None, mesh)
  t0 = time.perf_counter()
  compiled = step_fn.lower(state, host_batch).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(2):  # warm-up
    state, metrics = compiled(state, host_batch)
  jax.block_until_ready((state, metrics))
  secs = []
  if trace:  # a profiler trace of the timed steps (TensorBoard / Perfetto), for where the time goes
    jax.profiler.start_trace(trace)
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, host_batch)
    jax.block_until_ready((state, metrics))
    secs.append(time.perf_counter() - t0)
  if trace:
    jax.profiler.stop_trace()
  step_s = statistics.median(secs)
  shapes = {k: list(v.shape) for k, v in host_batch.items()}
  dims = {"hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size, "num_layers": c.num_layers,
          "vocab_size": c.vocab_size, "num_heads": c.num_heads}
  flops = harness.train_step_flops("mlm", shapes, dims, "jax")
  kind = devices[0].device_kind
  sheet = datasheet_peak(kind)
  if peak_tflops:
    peak, peak_source = peak_tflops * 1e12, "--peak-tflops"
  elif sheet:
    peak, peak_source = sheet, f"datasheet dense bf16 for {kind!r}"
  else:
    peak, peak_source = measured_matmul_peak(dtype), f"measured 2048^2 {dtype} jit matmul (no datasheet entry)"
  total_peak = peak * len(devices)
  mem = compiled.memory_analysis()
  return {"model": model, "dims": dims, "batch": batch, "batch_per_device": batch_per_device, "seq_len": seq_len,
          "dtype": dtype, "remat": remat, "attention": attention,
          "backend": jax.default_backend(), "device_kind": kind, "devices": len(devices),
          "compile_s": compile_s, "step_s": step_s, "step_s_all": secs, "tokens_per_sec": batch * seq_len / step_s,
          "model_tflop_per_step": flops / 1e12, "achieved_tflops": flops / step_s / 1e12,
          "peak_tflops_per_device": peak / 1e12, "peak_source": peak_source,
          "mfu": flops / step_s / total_peak, "loss": float(metrics["loss"]),
          "temp_bytes": getattr(mem, "temp_size_in_bytes", None), "machine": harness.machine_info()}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", default="bert-base", help="bert-base, minilm, tiny (random weights) or an HF folder")
  p.add_argument("--batch", type=int, default=32, help="rows PER DEVICE (the global batch is this x devices)")
  p.add_argument("--seq-len", type=int, default=512)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
  p.add_argument("--remat", action="store_true", help="config.model.remat: recompute layers in the backward")
  p.add_argument("--attention", default="xla", help="config.model.attention: xla or dot_product_attention")
  p.add_argument("--trace", default="", help="write a jax.profiler trace of the timed steps to this folder")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s of ONE device (overrides the table)")
  p.add_argument("--json", action="store_true")
  args = p.parse_args(argv)
  res = run(args.model, args.batch, args.seq_len, args.dtype, args.remat, args.steps, args.peak_tflops,
            args.attention, args.trace)
  print(f"{res['model']} MLM {res['batch']} x {res['seq_len']} {res['dtype']}{' remat' if res['remat'] else ''} on "
        f"{res['devices']} x {res['device_kind']} ({res['backend']})")
  print(harness.table(
      ["median s/step", "min-max", "tokens/s", "model TFLOP/step", "achieved TFLOP/s", "peak TFLOP/s/device",
       "MFU", "compile s"],
      [[res["step_s"], harness.spread(res["step_s_all"]), res["tokens_per_sec"], res["model_tflop_per_step"],
        res["achieved_tflops"], res["peak_tflops_per_device"], f"{100 * res['mfu']:.1f}%", res["compile_s"]]]))
  print(f"peak: {res['peak_source']}; loss {res['loss']:.3f}")
  if args.json:
    print(json.dumps(res))
  return 0


if __name__ == "__main__":
  sys.exit(main())
