"""The training config's one set of defaults, shared by every file in configs/ but eval.py.

Every field a training run reads lives here (or in the block its objective, lever or validator module
declares) with its default; a config file sets only what differs for its objective and names its `:smoke`
extras (`variant`). The defaults are the original MLM code's (lr 2e-5, wd 0.01, warmup 200, linear decay).
"""

from __future__ import annotations

import ml_collections

from jaxemb.data.spec import data_config
from jaxemb.train import runtime


def base_config(objective: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.objective = objective
  c.seed = 0
  # Every step count here (total_steps, log_every, checkpoint.every, validation.every, warm-ups) counts optimiser
  # updates: with optim.accumulate = K, one step is K micro-batches.
  c.total_steps = 1000
  c.batch_size = 16           # GLOBAL batch (documents / blocks), sharded over the "data" mesh axis
  c.log_every = 10
  runtime.declare_compilation_cache(c)

  c.model = ml_collections.ConfigDict()
  c.model.init = "minilm"     # HF folder, "minilm", or a previous jaxemb workdir (staging, e.g. MLM -> DeCLUTR)
  # Compute dtype of matmuls, forward and backward: float32 or bfloat16 (parameters, optimiser state,
  # LayerNorm, softmax and losses stay float32; jaxemb/models/precision.py).
  c.model.dtype = "float32"
  c.model.head_seed = 0       # seed of a freshly initialised MLM head (all-MiniLM-L6-v2 ships none)
  # Recompute each encoder layer in the backward pass (jax.checkpoint): ~1/3 more compute, activation memory
  # of about one layer instead of all. For long sequences on accelerators; on this CPU it only costs time.
  c.model.remat = False
  # What remat keeps (jaxemb/models/encoder.py REMAT_POLICIES): nothing_saveable (recompute everything: the
  # least memory, +1/3 compute) or dots_with_no_batch_dims_saveable (keep the weight matmuls' outputs: the
  # attention and elementwise work is recomputed, the dense matmuls are not).
  c.model.remat_policy = "nothing_saveable"
  # xla: the hand-written attention (float32 softmax, attention-probability dropout). dot_product_attention:
  # jax.nn.dot_product_attention (cuDNN's fused kernel on GPU in bf16, XLA's implementation elsewhere); it has
  # no dropout, so on this path attention probabilities are not dropped (hidden dropout is unchanged).
  c.model.attention = "xla"

  # The data block shared with evaluation (jaxemb/data/spec.py: path, fields, split seed and fractions,
  # exclude_splits, max_docs, strict, clean), plus what only pre-training reads.
  c.data = data_config()
  c.data.cache_dir = ""       # the tokenised corpus cache; "" = ~/.cache/jaxemb (eval's embed.cache_dir: embeddings)
  c.data.max_length = 256     # tokens per training row (eval's max_length: tokens per document)
  c.data.mask_prob = 0.15
  c.data.mlm_packing = "chunk"     # chunk (concatenate + cut, the original) or truncate (one doc per row)
  c.data.pad_to_max = False   # pad every batch to max_length (one compiled shape; for tiny smoke runs)
  # Batches built and copied to the devices this many steps ahead, in a background thread (train/prefetch.py);
  # 0 = inline, before each step.
  c.data.prefetch = 2

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 2e-5
  c.optim.weight_decay = 0.01
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.schedule = "linear"       # linear (warmup + decay), slanted_triangular, constant
  c.optim.warmup_steps = 200
  c.optim.cut_frac = 0.1
  c.optim.ratio = 32.0
  c.optim.clip_norm = 1.0
  c.optim.accumulate = 1

  # The objective's own block (config.declutr, config.metadata, ...), declared by its module.
  from jaxemb import objectives
  block = objectives.get(objective).defaults()
  if block:
    c[objective] = block

  # Cached contrastive loss (GradCache: objectives/cached.py) for global batches whose activations do not fit:
  # the contrastive passes of simcse, declutr and metadata run in this many chunks, keeping only each chunk's
  # inputs.
  from jaxemb.objectives import cached
  cached.defaults(c)

  # Adaptation levers (freeze, LoRA, MLM head, penalties toward the initial weights): all off by default.
  from jaxemb.train import levers, validation
  levers.defaults(c)
  # Validation scores during training and the weight-space interpolation chosen on the validation split.
  validation.defaults(c)

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 200
  c.checkpoint.keep = 3
  c.checkpoint.export_final = True  # write DIR/model (an HF folder of the adapted weights) at the end

  c.distributed = ml_collections.ConfigDict()
  c.distributed.initialize = False  # call jax.distributed.initialize() (a TPU VM needs no other field)
  c.distributed.coordinator_address = ""
  c.distributed.num_processes = 0
  c.distributed.process_id = -1
  return c


def variant(c: ml_collections.ConfigDict, arg: str, smoke_extra=None) -> ml_collections.ConfigDict:
  """The config file's variant: "" as it is, "smoke" (`configs/x.py:smoke`) a CPU-minute run (`smoke`, then
  the file's own `smoke_extra(c)`)."""
  if arg == "smoke":
    smoke(c)
    if smoke_extra is not None:
      smoke_extra(c)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r} (expected '' or 'smoke')")
  return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A run of a few steps with a small batch and short sequences on CPU."""
  c.total_steps = 12
  c.batch_size = 4
  c.log_every = 1
  c.data.max_length = 64
  c.data.pad_to_max = True
  c.optim.lr = 1e-4
  c.optim.warmup_steps = 2
  c.checkpoint.every = 6
  c.checkpoint.keep = 2
  return c
