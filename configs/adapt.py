"""The recommended adaptation recipe: `python train.py --config configs/adapt.py --workdir DIR
--config.data.path=notes.jsonl.gz` (unlabelled text is enough; add --config.data.label_field=FIELD to let the
validation split's labels choose the interpolation weight).

What it does, and why (measured in docs/RESULTS.md "Recipes"; sources in docs/ADAPTATION.md):
- Contrastive training between two independent random crops (windows of <= 128 tokens) of the same document,
  through the pooled vector the probe reads (objective simcse, positive=windows): every document trains, short
  reports too (crops of >= 1/4 of the text); duplicates are not negatives. Dropout positives alone give MiniLM
  a ~1e-3 loss, i.e. nothing to learn. No MLM: MLM pulls a sentence encoder away from what made it good.
- The embeddings and the lowest 3 layers stay frozen (fewer weights to drift; a cheaper backward pass).
- At the end, the exported model (DIR/model) is the weight-space interpolation (1-a)*theta0 + a*theta with a
  from {0, 0.25, 0.5, 0.75, 1} chosen on the validation split (up to 1,024 documents): by a cross-validated
  probe when a label field is named (a = 0, the base, when nothing beats it), else the default a = 0.5 (the
  best weight in the sweep where anything helped). DIR itself (its checkpoints) keeps the trained weights.
What it gives on the shared corpora, against the base and the other settings tried: docs/RESULTS.md "Recipes".
Argument `:smoke` -> a few steps with a tiny batch.
"""

from jaxemb.train.config import base_config, variant


def get_config(arg: str = ""):
  c = base_config("simcse")
  c.simcse.positive = "windows"
  c.simcse.crop = 0.25          # short reports: views of >= 1/4 of the text (FDA at 0.5: loss 2e-4, no signal)
  c.optim.lr = 5e-5
  c.optim.warmup_steps = 10
  c.data.max_length = 128
  c.freeze.embeddings = True
  c.freeze.layers = 3
  c.interpolate.alphas = "0,0.25,0.5,0.75,1.0"  # 0 = the base: the validation split may reject the adaptation
  c.validation.max_docs = 1024   # the whole validation split of a ~3,000-document corpus (256: too noisy to choose a)
  c.total_steps = 150
  c.checkpoint.every = 50

  def smoke_extra(c):
    c.validation.max_docs = 32
    c.validation.max_length = 64
    c.interpolate.alphas = "0.5,1.0"
  return variant(c, arg, smoke_extra)
