"""Metadata-category objective (objective 3): MLM + w * note_loss on the documents' category.

Original (the authors' code): lr 2e-5, wd 0.01, warmup 200, 2 epochs, batch 8, w = 0.1 (0.6 and 1.0
also used), SupCon tau 0.1 on plain random batches. Options: --config.metadata.note_loss=classify (linear
head), --config.metadata.sampler=balanced, --config.metadata.use_mlm=False (note loss only),
--config.metadata.use_note=False (MLM only). The category field is --config.data.metadata_field.
Argument `:smoke` -> a few steps with a tiny batch.
"""

from jaxemb.train.config import base_config, smoke


def get_config(arg: str = ""):
  c = base_config("metadata")
  c.optim.lr = 2e-5
  c.optim.weight_decay = 0.01
  c.optim.schedule = "linear"
  c.optim.warmup_steps = 200
  c.batch_size = 8
  c.data.max_length = 256
  c.metadata.note_loss = "supcon"
  c.metadata.weight = 0.1
  c.metadata.temperature = 0.1
  c.metadata.sampler = "random"
  c.total_steps = 300
  if arg == "smoke":
    smoke(c)
    c.metadata.sampler = "balanced"
  elif arg:
    raise ValueError(f"unknown config argument {arg!r} (expected '' or 'smoke')")
  return c
