"""Unsupervised SimCSE (dropout positives). `python train.py --config configs/simcse.py --workdir DIR`.

Each document window and itself under another dropout mask are a positive pair; every other row of the global
batch is a negative (tau 0.05), duplicates excepted. Works on short documents, which DeCLUTR skips. SimCSE's
own setting: lr 3e-5, batch 64, 32 tokens for sentences; here whole-document windows of up to 128 tokens.
Argument `:smoke` -> a few steps with a tiny batch.
"""

from jaxemb.train.config import base_config, variant


def get_config(arg: str = ""):
  c = base_config("simcse")
  c.simcse.positive = "dropout"  # the objective's default is the recipe's window crops; this file is SimCSE
  c.optim.lr = 3e-5
  c.optim.warmup_steps = 10
  c.batch_size = 32
  c.data.max_length = 128
  c.total_steps = 200
  return variant(c, arg)
