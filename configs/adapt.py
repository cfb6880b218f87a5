"""The recommended adaptation recipe: `python train.py --config configs/adapt.py --workdir DIR
--config.data.path=notes.jsonl.gz` (unlabelled text is enough; add --config.data.label_field=FIELD to let the
validation split's labels choose the interpolation weight).

What it does, and why (measured in docs/RESULTS.md "Recipes"; sources in docs/ADAPTATION.md):
- SimCSE on windows of the user's documents (dropout positives: every document trains, short ones too;
  duplicates are not negatives), through the pooled vector the probe reads. No MLM: MLM pulls a sentence
  encoder away from what made it good.
- The embeddings and the lowest layers stay frozen (fewer weights to drift; a cheaper backward pass).
- Embedding self-distillation toward the initial encoder keeps the space close to the base's.
- At the end, the exported model (DIR/model) is the weight-space interpolation (1-a)*theta0 + a*theta with a
  chosen on the validation split: by a cross-validated probe when a label field is named, else the default
  a. DIR itself (its checkpoints) keeps the trained weights.
Argument `:smoke` -> a few steps with a tiny batch.
"""

from jaxemb.train.config import base_config, smoke


def get_config(arg: str = ""):
  c = base_config("simcse")
  c.optim.lr = 5e-5
  c.optim.weight_decay = 0.01
  c.optim.schedule = "linear"
  c.optim.warmup_steps = 10
  c.batch_size = 16
  c.data.max_length = 128
  c.simcse.temperature = 0.05
  c.freeze.embeddings = True
  c.freeze.layers = 3
  c.simcse.positive = "windows"
  c.simcse.crop = 0.25          # short reports: views of >= 1/4 of the text (FDA at 0.5: loss 2e-4, no signal)
  c.interpolate.alphas = "0,0.25,0.5,0.75,1.0"  # 0 = the base: the validation split may reject the adaptation
  c.interpolate.default_alpha = 0.5
  c.validation.max_docs = 256
  c.validation.max_length = 256
  c.total_steps = 150
  c.checkpoint.every = 50
  c.log_every = 10
  if arg == "smoke":
    smoke(c)
    c.validation.max_docs = 32
    c.validation.max_length = 64
    c.interpolate.alphas = "0.5,1.0"
  elif arg:
    raise ValueError(f"unknown config argument {arg!r} (expected '' or 'smoke')")
  return c
