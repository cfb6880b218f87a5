"""Records the first training steps of every objective's `:smoke` config, for tests/test_recorded_losses.py.

A refactor of training that is meant to change no behaviour must give the same losses for the same seed.
This script runs each registered objective's `configs/<name>.py:smoke` (plus `configs/adapt.py:smoke`, the
recipe: SimCSE windows with frozen layers and validation excluded from training) for `STEPS` steps on a
quick-start corpus, and writes to `tests/fixtures/recorded_losses.json`, with the git commit it was recorded at:
the per-step `loss`, `grad_norm` and `lr` of `WORKDIR/metrics.jsonl`, and `update_norm`, the L2 distance of
the final encoder weights from the initial ones. The losses of 3 steps barely see the optimiser (the first
step's lr is 0 in warm-up); `update_norm` does: measured at 8f7cc00, Adam's eps 1e-8 -> 1e-6 moves it by 5%
(simcse), b2 0.999 -> 0.98 by 7e-4 (mlm), but doubling weight decay only by 5e-7, under the test's 1e-5
tolerance (2 steps at lr <= 1e-4 decay the weights by ~1e-8). The test reruns `run()` and compares. Rerecord only when a change is meant to change these numbers, and say why in the commit.

  python scripts/record_losses.py [--out tests/fixtures/recorded_losses.json] [--commit SHA]
  python scripts/record_losses.py --only NAME --why "..."   # a new objective: record its run, keep the others

`--only` records (or re-records) the named runs into the existing fixture and notes each in its "rerecorded"
entry with the commit and the reason, so adding an objective leaves every other run's baseline as it was.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "recorded_losses.json"
STEPS = 3
# A smaller quick-start corpus than the default 3,000 notes: tokenising it is the runs' shared fixed cost.
CORPUS_NOTES = 300
CORPUS_SEED = 0

# A tiny random BERT with all-MiniLM-L6-v2's tokenizer instead of the smoke config's MiniLM: the same code
# path, compiled in seconds rather than ~20 s per objective. 4 layers so that the recipe's freeze.layers = 3
# leaves one layer training.
TINY = dict(family="bert", vocab_size=30522, hidden_size=32, num_layers=4, num_heads=4, intermediate_size=64,
            max_position_embeddings=128, type_vocab_size=2)
TINY_SEED = 0


def tiny_model(out: Path) -> Path:
  """Writes the TINY encoder (weights from `Encoder.from_config(seed=TINY_SEED)`) as an HF folder."""
  from jaxemb.models.api import Encoder
  from jaxemb.models.config import EncoderConfig
  Encoder.from_config(EncoderConfig(**TINY), seed=TINY_SEED, name="tiny").save_pretrained(out)
  return out


# Objectives that need fields the quick-start corpus does not have: the pairs objective reads a query field
# (MedQuAD's question); its loss is checked against a NumPy recomputation in tests/test_pairs.py instead.
NEEDS_OTHER_CORPUS = ("pairs",)


def config_names() -> list[str]:
  """Every registered objective's config file that runs on a quick-start corpus, then the recipe built on one
  of them."""
  from jaxemb import objectives
  return [*(n for n in objectives.available() if n not in NEEDS_OTHER_CORPUS), "adapt"]


def smoke_config(name: str):
  """`configs/<name>.py:smoke` (64 tokens, batch 4) shortened to STEPS steps, nothing exported."""
  spec = importlib.util.spec_from_file_location(f"cfg_{name}", REPO / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config("smoke")
  cfg.total_steps = STEPS
  cfg.checkpoint.every = STEPS
  cfg.checkpoint.export_final = False  # the export does not change the losses and costs more than the steps
  cfg.compilation_cache = ""           # no writes outside the run's directories
  return cfg


STEP_METRICS = ("loss", "grad_norm", "lr")


def step_metrics(workdir: Path) -> dict[str, list[float]]:
  """STEP_METRICS of a run, each a list in step order (row 0 of metrics.jsonl holds drop counts, not a step)."""
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  rows = sorted((r for r in rows if "loss" in r), key=lambda r: r["step"])
  return {k: [r[k] for r in rows] for k in STEP_METRICS}


def update_norm(initial: Path, workdir: Path) -> float:
  """L2 norm over all encoder weights of (the workdir's last checkpoint - the initial model), float64."""
  import jax
  import numpy as np
  from jaxemb.models.api import Encoder
  a = jax.tree.leaves(Encoder.from_pretrained(initial).params["encoder"])
  b = jax.tree.leaves(Encoder.from_pretrained(workdir).params["encoder"])
  return float(np.sqrt(sum(np.sum((np.asarray(y, np.float64) - np.asarray(x, np.float64)) ** 2)
                           for x, y in zip(a, b))))


def run(names: list[str], root: Path) -> dict[str, dict]:
  """name -> {loss, grad_norm, lr: per-step lists; update_norm} of its shortened smoke run; the corpus, model
  and prepared cache under `root`."""
  from jaxemb.data.synthetic import write_corpus
  from jaxemb.train.loop import train
  corpus = write_corpus(root / "corpus.jsonl.gz", n_notes=CORPUS_NOTES, seed=CORPUS_SEED)
  model = tiny_model(root / "tiny")
  out = {}
  for name in names:
    cfg = smoke_config(name)
    cfg.data.path = str(corpus)
    cfg.data.cache_dir = str(root / "cache")
    cfg.model.init = str(model)
    train(cfg, root / name)
    out[name] = {**step_metrics(root / name), "update_norm": update_norm(model, root / name)}
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=str(FIXTURE))
  parser.add_argument("--commit", default="", help="the commit of this tree when it is not a git checkout "
                      "(e.g. a `git archive` of an older commit); default: HEAD, marked when jaxemb/ or configs/ "
                      "differ from it")
  parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                      help="record just these runs into the existing fixture (a new objective); the rest stay")
  parser.add_argument("--why", default="", help="with --only: why these runs are (re)recorded (kept in the file)")
  args = parser.parse_args(argv)
  if args.only is not None:
    unknown = sorted(set(args.only) - set(config_names()))
    if unknown or not args.why:
      parser.error(f"--only needs --why and names among {', '.join(config_names())}"
                   + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
  commit, dirty = args.commit, ""
  if not commit:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "jaxemb", "configs"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.strip()
  commit += "+uncommitted changes" if dirty else ""
  with tempfile.TemporaryDirectory() as tmp:
    result = run(args.only or config_names(), Path(tmp))
  if args.only is not None:
    record = json.loads(Path(args.out).read_text())
    record["runs"].update(result)
    record.setdefault("rerecorded", {}).update({n: {"commit": commit, "why": args.why} for n in result})
  else:
    record = {"commit": commit, "steps": STEPS, "corpus": {"n_notes": CORPUS_NOTES, "seed": CORPUS_SEED},
              "model": {**TINY, "seed": TINY_SEED}, "runs": result}
  Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
  for name, r in result.items():
    print(f"{name:10s} loss " + " ".join(f"{v:.6f}" for v in r["loss"]) + f"  update_norm {r['update_norm']:.6g}")
  return 0


if __name__ == "__main__":
  sys.path.insert(0, str(REPO))
  sys.exit(main())
