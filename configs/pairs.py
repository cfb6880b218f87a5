"""Adaptation from natural pairs (query -> document InfoNCE, jaxemb/objectives/pairs.py):
`python train.py --config configs/pairs.py --workdir DIR --config.data.path=medquad_answers.jsonl.gz
--config.pairs.query_field=question` (MTSamples: --config.pairs.query_field=description).

Training-split pairs only; in-batch negatives over the global batch, symmetric; the recipe's levers as in
configs/adapt.py (embeddings and the lowest 3 layers frozen, weight-space interpolation with the base). The
interpolation weight a of the export (1 - a) * theta0 + a * theta is chosen on validation retrieval
(`validation.metric = "retrieval"`, jaxemb/train/validation.py): each of `validation.max_docs` validation
documents' query (the same field as training's, pairs.query_field) searches those documents; the a in
`interpolate.alphas` with the best validation nDCG@10 is exported (ties: the smaller a; a = 0, the base itself,
is a candidate). export.json's `interpolation` holds every a's nDCG@10, MRR@10, R@10 and its paired bootstrap
against the base over the validation queries. The validation split is not trained on.
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
  c.validation.metric = "retrieval"   # the query field is pairs.query_field (validation.query_field = "")
  c.interpolate.alphas = "0,0.25,0.5,0.75,1"

  def smoke_extra(c):
    c.pairs.query_max_length = 32
    c.validation.max_docs = 32
    c.validation.max_length = 64
  return variant(c, arg, smoke_extra)
