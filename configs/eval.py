"""Evaluator config: `python eval.py --config configs/eval.py --workdir OUT` (override with --config.x=...).

Variants: `configs/eval.py` (full: quick-start corpus, minilm, probe + TF-IDF, 5 shot sizes x 5 seeds) and
`configs/eval.py:smoke` (a CPU-minute run: 300 documents, 2 shot sizes x 2 seeds, max_length 64, probe +
a short fine-tune + TF-IDF).

MTSamples specialty, say:
  python eval.py --config configs/eval.py --workdir out/mts \
    --config.data.path=mtsamples_notes.jsonl.gz --config.data.label_field=specialty \
    --config.data.metadata_field=note_type --config.data.group_field= \
    --config.models=minilm,workdirs/declutr@20000
"""

import ml_collections

from jaxemb.data.spec import data_config
from jaxemb.train import runtime


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # Comma-separated: HF folders, "minilm", jaxemb training workdirs (latest step) or DIR@STEP.
  config.models = "minilm"
  # "probe" (frozen encoder: the paper's head AND logistic regression), "finetune", or both.
  config.modes = "probe"
  config.tfidf = True              # the non-neural reference row (mode "tfidf")
  config.shots = "8,16,32,64,all"  # examples per class in the training set; "all" = the whole train split
  config.seeds = "0,1,2,3,4"
  # Tokens per document, embedding and fine-tuning (training's data.max_length is tokens per training row).
  config.max_length = 256
  # How the frozen encoder embeds a document (probe, geometry; fine-tuning reads the first max_length tokens).
  # window = 0: the first max_length tokens. window > 0: the whole document in windows of `window` tokens
  # (special tokens included) overlapping by `stride`, at most `max_windows` (0 = all), pooled per document:
  # "first" (= truncation at window), "mean" (token-weighted), "mean_unweighted", "max", "mean_max"
  # (jaxemb/models/windows.py). A model entry may override them, so one evaluation compares poolings side by
  # side with the paired verdict: --config.models=minilm,minilm#window=128#pooling=mean (the base of the
  # verdict is the first entry); the report names each row's embedding, and, for a model listed with
  # several embeddings, which one the validation split prefers.
  config.embed = ml_collections.ConfigDict()
  config.embed.window = 0
  config.embed.stride = 0
  config.embed.pooling = "first"
  config.embed.max_windows = 0
  config.embed_batch_size = 32
  # Compute dtype of the frozen encoder when embedding: "bfloat16" is ~2x faster on CPUs with AMX
  # (`grep amx /proc/cpuinfo`) and on accelerators, slower on CPUs without bf16 units (e.g. AMD Zen 3);
  # cosine >= 0.9999 to float32 on MTSamples (docs/PERFORMANCE.md).
  config.embed_dtype = "float32"
  # The embedding cache; "" = WORKDIR/cache (training's data.cache_dir is the tokenised corpus's cache).
  config.embed.cache_dir = ""
  runtime.declare_compilation_cache(config)  # the embedding, probe-grid and fine-tuning programs

  # The data block shared with pre-training (jaxemb/data/spec.py: path, fields, split seed and fractions,
  # exclude_splits, max_docs, strict, clean), plus what only evaluation reads.
  config.data = data_config()
  config.data.max_classes = 0               # > 0: keep only the K most frequent labels

  # Frozen-encoder heads trained on cached embeddings (full-batch AdamW, early stopping on val macro-F1).
  config.probe = ml_collections.ConfigDict()
  config.probe.heads = "probe,logreg"  # "probe" = the paper's head; "logreg" = logistic regression
  config.probe.lr = 1e-3           # the paper's head
  config.probe.logreg_lr = 3e-3    # convex: tolerates 3x (MTSamples: same macro-F1, about half the steps)
  config.probe.weight_decay = 1e-2
  config.probe.dropout = 0.1
  config.probe.max_steps = 500
  config.probe.eval_every = 10
  config.probe.patience = 5        # evaluations without improvement
  config.probe.batch_size = 128    # full batch up to this many rows, sampled rows above
  # "none", "balanced" (loss weights n / (K n_k), as scikit-learn) or "none,balanced": balanced rows get their
  # own modes (probe_balanced, probe_logreg_balanced)
  config.probe.class_weight = "none"

  config.finetune = ml_collections.ConfigDict()
  config.finetune.shots = ""       # "" = config.shots; fine-tuning costs far more, so it may use fewer
  config.finetune.lr = 5e-5
  config.finetune.head_lr = 1e-3
  config.finetune.weight_decay = 0.01
  config.finetune.warmup_frac = 0.1
  config.finetune.batch_size = 16
  config.finetune.eval_batch_size = 64
  config.finetune.max_epochs = 10
  config.finetune.eval_every = 0   # steps; 0 = once per epoch
  config.finetune.patience = 3
  config.finetune.freeze_layers = 0  # N >= 1: freeze the embeddings and the first N layers
  config.finetune.neftune_alpha = 0.0  # NEFTune noise during training (5, 10, 15 in the paper); 0 = off
  config.finetune.head_dropout = 0.1

  # C (inverse L2 strength) is picked on validation macro-F1; lbfgs converges at every C here (rows carry
  # n_iter / converged): the 6 fits of MedQuAD's 2,000-answer "all" take ~1 minute, <= 55 iterations each
  config.tfidf_c_grid = "0.01,0.1,1,10,100,1000"
  config.tfidf_class_weight = "none"  # as probe.class_weight; balanced rows get the mode tfidf_balanced

  # The verdict: each model against the first of config.models, per (mode, shots): the paired difference in
  # test macro-F1 with a bootstrap interval over test documents (jaxemb/metrics/compare.py).
  config.verdict = ml_collections.ConfigDict()
  config.verdict.n_boot = 1000     # resamples of the test documents
  config.verdict.seed = 0
  config.verdict.level = 0.95      # of the interval

  config.geometry = ml_collections.ConfigDict()
  config.geometry.enabled = True
  config.geometry.knn_k = 5
  config.geometry.kmeans_seed = 0
  config.geometry.maps = True      # 2-D map PNGs (UMAP if installed, else t-SNE)
  config.geometry.max_points = 2000  # seeded subset of the test split for geometry and maps

  if arg == "smoke":
    config.modes = "probe,finetune"
    config.shots = "4,all"
    config.seeds = "0,1"
    config.max_length = 64
    config.data.max_docs = 300
    config.probe.max_steps = 200
    config.finetune.shots = "4"
    config.finetune.max_epochs = 2
    config.finetune.batch_size = 8
    config.geometry.max_points = 300
    config.tfidf_c_grid = "1,10"
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r} (expected '' or 'smoke')")
  return config
