"""DeCLUTR + MLM (objective 2). `python train.py --config configs/declutr.py --workdir DIR`.

Original (the authors' code): AdamW lr 5e-5, eps 1e-6, wd 0.1 (not on bias/LayerNorm), clip 1.0,
slanted-triangular schedule (cut_frac 0.1, ratio 32); long notes A=2, P=2, max_span 256, min_span 8,
batch 6 documents; short reports max_span 16, batch 16. NT-Xent tau 0.05 over the global batch.
`--config.declutr.use_mlm=False` is the contrastive-only ablation; `--config.model.init=WORKDIR` stages
DeCLUTR on an MLM run. Argument `:smoke` -> a few steps with short spans.
"""

from jaxemb.train.config import base_config, variant


def get_config(arg: str = ""):
  c = base_config("declutr")
  c.optim.lr = 5e-5
  c.optim.eps = 1e-6
  c.optim.weight_decay = 0.1
  c.optim.schedule = "slanted_triangular"
  c.batch_size = 6
  c.declutr.max_span = 128      # the original's 256 on MIMIC; the quick-start notes are shorter
  c.declutr.short_docs = "shrink"
  c.total_steps = 100           # the quick-start default: minutes on a CPU

  def smoke_extra(c):
    c.batch_size = 4
    c.declutr.max_span = 32
  return variant(c, arg, smoke_extra)
