"""Masked language modelling (objective 1). `python train.py --config configs/mlm.py --workdir DIR`.

Original defaults (the authors' code): lr 2e-5, wd 0.01, warmup 200 then linear decay, batch 12,
512-token blocks (concatenate + chunk), up to 100k steps. The default here is a CPU-sized run on the
quick-start corpus; override with e.g. --config.data.path=notes.jsonl.gz --config.total_steps=100000.
Argument `:smoke` -> a few steps with a tiny batch.
"""

from jaxemb.train.config import base_config, variant


def get_config(arg: str = ""):
  c = base_config("mlm")     # the original's optimiser; 256-token chunks (the original: 512) keep a CPU step ~1 s
  c.batch_size = 12
  c.total_steps = 300
  return variant(c, arg)
