"""Accelerator readiness from CPU compiles (issue 23): what the first TPU/GPU run's train step asks of a device.

  python bench/readiness.py step --objective simcse --model bert-base --batch 1024 --seq-len 128
      [--devices 8] [--dtype bfloat16] [--gradcache-chunks 8] [--attention xla] [--remat] [--json]
  python bench/readiness.py host [--objectives mlm,simcse,declutr,metadata] [--json]

`step` lowers and compiles the training program's own step (loop.make_train_step with the objective's loss,
AdamW + clipping, the batch sharded over a "data" mesh of --devices simulated CPU devices, the state
replicated) on abstract arrays: nothing is run and no parameter is copied to the devices. It reports
- the share of dot FLOPs by operand dtypes in the HLO before optimisation (train/hlo.py);
- XLA's FLOP count of the partitioned program (`compiled.cost_analysis()`, per device, x devices; x chunks
  with GradCache, as XLA counts a loop body once) against the analytic count (bench/harness.py: 3 x forward
  matmul FLOPs, +1 forward with GradCache); the dot dtype shares count a loop body once too (shares, not sums);
- XLA's buffer plan per device (`compiled.memory_analysis()`): arguments (replicated state + batch shard),
  outputs, aliased (the donated state), temporaries. CPU's plan is not a GPU's or a TPU's (other fusions, no
  rematerialisation pass), so read it as an estimate of the same program, not a measurement.
`host` times the host batch builders (the real quick-start corpus) at the shapes of the first runs, for the
step time they must keep up with.

--devices sets XLA_FLAGS=--xla_force_host_platform_device_count before jax is imported. With --json the last
stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {
    "bert-base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536),
}


def _abstract_batch(objective: str, batch: int, length: int):
  import jax
  import jax.numpy as jnp
  from jaxemb.data.batching import mlm_max_predictions
  ids = jax.ShapeDtypeStruct((batch, length), jnp.int32)
  if objective == "simcse":
    return {"input_ids": ids, "attention_mask": ids, "positive_ids": ids, "positive_mask": ids,
            "dup": jax.ShapeDtypeStruct((batch,), jnp.int32)}
  if objective == "mlm":
    m = mlm_max_predictions(length)
    slots = jax.ShapeDtypeStruct((batch, m), jnp.int32)
    return {"input_ids": ids, "attention_mask": ids, "mlm_positions": slots, "mlm_labels": slots,
            "mlm_weights": jax.ShapeDtypeStruct((batch, m), jnp.float32)}
  raise SystemExit(f"step: --objective {objective!r} is not built here (simcse, mlm)")


def step_report(objective: str, model: str, batch: int, seq_len: int, devices: int, dtype: str,
                chunks: int, attention: str, remat: bool) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from bench import harness
  from jaxemb.models.config import EncoderConfig
  from jaxemb.models.encoder import BertEncoder, MLMHead
  from jaxemb.train import hlo, loop
  from jaxemb.train.config import base_config
  from jaxemb.train.optim import make_optimizer

  config = EncoderConfig(family="bert", vocab_size=30522, max_position_embeddings=max(512, seq_len),
                         type_vocab_size=2, **SHAPES[model])
  cfg = base_config(objective)
  cfg.batch_size, cfg.data.max_length = batch, seq_len
  cfg.model.dtype, cfg.model.attention, cfg.model.remat = dtype, attention, remat
  cfg.gradcache.chunks = chunks

  class _Shapes:  # what make_loss_fn reads of an Encoder
    pass
  enc = _Shapes()
  enc.config = config
  mesh = Mesh(np.array(jax.devices()[:devices]), ("data",))
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  tx, schedule = make_optimizer(cfg.optim, cfg.total_steps)
  ids = jnp.zeros((1, 4), jnp.int32)
  params = jax.eval_shape(lambda: {
      "encoder": BertEncoder(config).init(jax.random.PRNGKey(0), ids, ids)["params"],
      "mlm_head": MLMHead(config).init(jax.random.PRNGKey(1), jnp.zeros((1, config.hidden_size)),
                                       jnp.zeros((config.vocab_size, config.hidden_size)))["params"]})
  state = jax.eval_shape(lambda p: loop.TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p),
                                                   rng=jax.random.PRNGKey(0)), params)
  state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), state)
  batch_abs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharded)
               for k, v in _abstract_batch(objective, batch, seq_len).items()}
  step = loop.make_train_step(loop.make_loss_fn(cfg, enc), tx, schedule, 1)
  jitted = jax.jit(step, in_shardings=(replicated, sharded), out_shardings=(replicated, replicated),
                   donate_argnums=(0,))
  t0 = time.perf_counter()
  lowered = jitted.lower(state, batch_abs)
  shares = hlo.dtype_shares(lowered.as_text(dialect="hlo"))
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  mem = compiled.memory_analysis()
  dims = {"hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size,
          "num_layers": config.num_layers, "vocab_size": config.vocab_size, "num_heads": config.num_heads}
  rows = 2 * batch if objective == "simcse" else batch
  fwd = harness.encoder_forward_flops(rows, seq_len, dims)
  if objective == "mlm":
    from jaxemb.data.batching import mlm_max_predictions
    fwd += harness.mlm_head_flops(batch * mlm_max_predictions(seq_len), dims)
  analytic = (4.0 if chunks > 1 else 3.0) * fwd  # GradCache runs the forward twice
  # XLA's cost analysis counts a while loop's body once: with GradCache nearly every FLOP is in the chunk
  # loops (forward scan, backward scan), so the count is scaled by the trip count (the loss outside the loops
  # is < 0.1% of the step).
  xla_flops = float(cost.get("flops", 0.0)) * devices * (chunks if chunks > 1 else 1)
  per_device = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
                + mem.temp_size_in_bytes)
  return {"objective": objective, "model": model, "global_batch": batch, "rows": rows, "seq_len": seq_len,
          "devices": devices, "dtype": dtype, "gradcache_chunks": chunks, "attention": attention, "remat": remat,
          "dot_shares": shares, "xla_flops": xla_flops, "analytic_flops": analytic,
          "xla_over_analytic": xla_flops / analytic,
          "memory_gb_per_device": {"arguments": mem.argument_size_in_bytes / 1e9,
                                   "outputs": mem.output_size_in_bytes / 1e9,
                                   "aliased": mem.alias_size_in_bytes / 1e9,
                                   "temporaries": mem.temp_size_in_bytes / 1e9, "total": per_device / 1e9},
          "compile_s": compile_s, "backend": jax.default_backend()}


# Shapes of the first accelerator runs, per objective: (global batch, max_length); DeCLUTR: 64 documents x 2
# anchors x 2 positives at its default max_span 256 (the quick-start notes are too short for longer spans).
HOST_SHAPES = {"mlm": (256, 512), "simcse": (1024, 128), "declutr": (64, 512), "metadata": (256, 512)}


def host_report(objectives: list[str], repeats: int = 5) -> dict:
  sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
  from test_train import _config
  from jaxemb import Encoder
  from jaxemb.train.loop import open_corpus
  enc = Encoder.from_pretrained("minilm")
  out = {}
  for objective in objectives:
    cfg = _config(objective, "")
    cfg.batch_size, cfg.data.max_length = HOST_SHAPES[objective]
    _, _, batches = open_corpus(cfg, enc.tokenizer)
    batches.batch(0)
    secs = []
    for i in range(1, repeats + 1):
      t0 = time.perf_counter()
      b = batches.batch(i)
      secs.append(time.perf_counter() - t0)
    out[objective] = {"batch": cfg.batch_size, "max_length": cfg.data.max_length,
                      "host_batch_ms": 1e3 * sorted(secs)[len(secs) // 2],
                      "shapes": {k: list(v.shape) for k, v in b.items()}}
  return out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = ap.add_subparsers(dest="cmd", required=True)
  s = sub.add_parser("step")
  s.add_argument("--objective", default="simcse")
  s.add_argument("--model", default="bert-base", choices=sorted(SHAPES))
  s.add_argument("--batch", type=int, default=1024, help="GLOBAL batch (pairs for simcse)")
  s.add_argument("--seq-len", type=int, default=128)
  s.add_argument("--devices", type=int, default=8)
  s.add_argument("--dtype", default="bfloat16")
  s.add_argument("--gradcache-chunks", type=int, default=0)
  s.add_argument("--attention", default="xla")
  s.add_argument("--remat", action="store_true")
  h = sub.add_parser("host")
  h.add_argument("--objectives", default="mlm,simcse,declutr,metadata")
  for p in (s, h):
    p.add_argument("--json", action="store_true")
  args = ap.parse_args()
  if args.cmd == "step":
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.devices}").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    rep = step_report(args.objective, args.model, args.batch, args.seq_len, args.devices, args.dtype,
                      args.gradcache_chunks, args.attention, args.remat)
  else:
    rep = host_report(args.objectives.split(","))
  print(json.dumps(rep, indent=None if args.json else 2))


if __name__ == "__main__":
  main()
