"""Adaptation from natural pairs (query -> document InfoNCE, jaxemb/objectives/pairs.py):
`python train.py --config configs/pairs.py --workdir DIR --config.data.path=medquad_answers.jsonl.gz
--config.pairs.query_field=question` (MTSamples: --config.pairs.query_field=description).

Training-split pairs only; in-batch negatives over the global batch, symmetric; the recipe's levers as in
configs/adapt.py (embeddings and the lowest 3 layers frozen). The interpolation weight is not chosen here:
with no label field the export would be a fixed a, so `interpolate.alphas` is empty (the trained weights) and
the retrieval evaluator's validation rows are what to read (docs/RESULTS.md "Retrieval").
Argument `:smoke` -> a few steps with a tiny batch.
"""

from jaxemb.train.config import base_config, variant


def get_config(arg: str = ""):
  c = base_config("pairs")
  c.data.label_field = ""       # pairs need no label or category; the query field is config.pairs.query_field
  c.data.metadata_field = ""
  c.optim.lr = 5e-5
  c.optim.warmup_steps = 10
  c.batch_size = 32
  c.freeze.embeddings = True
  c.freeze.layers = 3
  c.total_steps = 150
  c.checkpoint.every = 50

  def smoke_extra(c):
    c.pairs.query_max_length = 32
  return variant(c, arg, smoke_extra)
