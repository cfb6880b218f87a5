"""Metadata-category objective (objective 3): MLM + w * note_loss on the documents' category.

Original (the authors' code): lr 2e-5, wd 0.01, warmup 200, 2 epochs, batch 8, w = 0.1 (0.6 and 1.0
also used), SupCon tau 0.1 on plain random batches. Options: --config.metadata.note_loss=classify (linear
head), --config.metadata.sampler=balanced, --config.metadata.use_mlm=False (note loss only),
--config.metadata.use_note=False (MLM only). The category field is --config.data.metadata_field.
Argument `:smoke` -> a few steps with a tiny batch.
"""

from jaxemb.train.config import base_config, variant


def get_config(arg: str = ""):
  c = base_config("metadata")
  c.batch_size = 8
  c.total_steps = 300

  def smoke_extra(c):
    c.metadata.sampler = "balanced"
  return variant(c, arg, smoke_extra)
