"""Masked language modelling (objective 1). `python train.py --config configs/mlm.py --workdir DIR`.

Original defaults (the authors' code): lr 2e-5, wd 0.01, warmup 200 then linear decay, batch 12,
512-token blocks (concatenate + chunk), up to 100k steps. The default here is a CPU-sized run on the
quick-start corpus; override with e.g. --config.data.path=notes.jsonl.gz --config.total_steps=100000.
Argument `:smoke` -> a few steps with a tiny batch.
"""

from jaxemb.train.config import base_config, smoke


def get_config(arg: str = ""):
  c = base_config("mlm")
  c.optim.lr = 2e-5
  c.optim.weight_decay = 0.01
  c.optim.schedule = "linear"
  c.optim.warmup_steps = 200
  c.batch_size = 12
  c.data.max_length = 256       # the original used 512; 256 keeps a CPU step around a second
  c.data.mlm_packing = "chunk"
  c.total_steps = 300
  if arg == "smoke":
    smoke(c)
  elif arg:
    raise ValueError(f"unknown config argument {arg!r} (expected '' or 'smoke')")
  return c
