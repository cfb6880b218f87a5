"""The adaptation sweep: train recipe variants on a corpus, then one evaluation of the base against each.

  python scripts/recipes.py --corpus mtsamples --out runs/recipes --variants adapt,simcse_raw --stage all
  python scripts/recipes.py --corpus fda --out runs/recipes --variants adapt --stage eval
  python scripts/recipes.py --corpus fda --variants adapt,adapt_lr2e-4 --stage validation   # the sweep table

The sweep (issue 13 item 7 and each lever alone) is judged on the VALIDATION split: every training run scores
the base (a = 0), its trained weights (a = 1) and the interpolations on the validation documents with a
cross-validated probe, paired with the base (export.json; train/validation.py). `--stage validation` tabulates that,
with the validation curve of runs that scored during training. The test split is read only by `--stage eval`,
for the recipe the sweep chose.

Each variant is a training config plus overrides (VARIANTS below); its exported model (`WORKDIR/model`: the
trained weights, or their interpolation with the base when the variant interpolates) is what the evaluator
compares with the base, with the corpus's evaluation settings (scripts/reproduce.py CORPORA: fields, subset,
max_length). Training minutes are recorded in WORKDIR/wall_seconds.json and copied into the results.
Per-corpus choices (the interpolation weight) are made by the training run on the validation split; nothing
here reads the test split.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scripts.reproduce import CORPORA, SHARED_DATA  # noqa: E402

# name -> (config file, overrides). "adapt" is the recommended recipe exactly as configs/adapt.py defines it.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "adapt": ("adapt.py", []),
    "adapt_no_interp": ("adapt.py", ["--config.interpolate.alphas="]),
    "adapt_no_distill": ("adapt.py", ["--config.toward_base.distill=0.0"]),
    "adapt_lora": ("adapt.py", ["--config.lora.rank=8", "--config.freeze.layers=0", "--config.optim.lr=3e-4"]),
    "adapt_l2sp": ("adapt.py", ["--config.toward_base.distill=0.0", "--config.toward_base.l2sp=0.01"]),
    "simcse_raw": ("simcse.py", []),
    "declutr_only": ("declutr.py", ["--config.declutr.use_mlm=False"]),
    "declutr_interp": ("declutr.py", ["--config.declutr.use_mlm=False", "--config.interpolate.alphas=0.25,0.5,0.75,1.0"]),
    # -- the sweep (issue 13 item 7), one change from the recipe each; judged on validation (--stage validation)
    "adapt_lr2e-5": ("adapt.py", ["--config.optim.lr=2e-5"]),
    "adapt_lr2e-4": ("adapt.py", ["--config.optim.lr=2e-4"]),
    "adapt_300": ("adapt.py", ["--config.total_steps=300", "--config.validation.every=50"]),  # + the steps curve
    "adapt_tau0.1": ("adapt.py", ["--config.simcse.temperature=0.1"]),
    "adapt_b32": ("adapt.py", ["--config.batch_size=32"]),
    # -- levers alone (on the recipe)
    "adapt_freeze0": ("adapt.py", ["--config.freeze.embeddings=False", "--config.freeze.layers=0"]),
    "adapt_distill": ("adapt.py", ["--config.toward_base.distill=1.0"]),
    "adapt_dropout": ("adapt.py", ["--config.simcse.positive=dropout"]),
    # the MLM lever: tied decoder (always), unigram output bias, 30 head-only warm-up steps; the recipe's
    # freezing and interpolation; lr 5e-5 as the recipe
    "mlm_lever": ("mlm.py", ["--config.mlm_head.bias_init=unigram", "--config.mlm_head.warmup_steps=30",
                             "--config.freeze.embeddings=True", "--config.freeze.layers=3", "--config.optim.lr=5e-5",
                             "--config.optim.warmup_steps=10", "--config.data.max_length=128",
                             "--config.total_steps=150", "--config.batch_size=16",
                             "--config.interpolate.alphas=0,0.25,0.5,0.75,1.0", "--config.validation.max_docs=1024",
                             "--config.validation.repeats=3"]),
    # the paper's objectives at the recipe's budget, scored (a = 1 against the base) on validation
    "mlm_paper": ("mlm.py", ["--config.total_steps=150", "--config.interpolate.alphas=1.0",
                             "--config.validation.max_docs=1024", "--config.validation.repeats=3"]),
}


def data_flags(corpus: str) -> list[str]:
  if corpus == "quickstart":
    return []
  c = CORPORA[corpus]
  return [f"--config.data.path={SHARED_DATA / c.file}", "--config.data.text_field=text",
          f"--config.data.metadata_field={c.metadata_field}", f"--config.data.label_field={c.label_field}",
          "--config.data.group_field=", "--config.data.split_field=split", "--config.data.exclude_splits=test"]


def train_variant(corpus: str, name: str, out: Path, extra: list[str]) -> float:
  cfg, overrides = VARIANTS[name]
  workdir = out / corpus / name
  argv = [sys.executable, "train.py", "--config", f"configs/{cfg}", "--workdir", str(workdir),
          *data_flags(corpus), *overrides, *extra]
  t0 = time.time()
  print("+", " ".join(argv[1:]), flush=True)
  subprocess.run(argv, cwd=REPO, check=True)
  seconds = time.time() - t0
  wall = workdir / "wall_seconds.json"
  previous = json.loads(wall.read_text())["seconds"] if wall.exists() else 0.0
  wall.write_text(json.dumps({"seconds": previous + seconds}) + "\n")
  return seconds


def eval_variants(corpus: str, names: list[str], out: Path, shots: str, seeds: str, extra: list[str]) -> None:
  # Each variant's export (WORKDIR/model) and, when it interpolated, its trained weights (WORKDIR: a = 1).
  models = ["minilm"]
  for n in names:
    models.append(str(out / corpus / n / "model"))
    export = out / corpus / n / "export.json"
    if export.exists() and "interpolation" in json.loads(export.read_text()):
      models.append(str(out / corpus / n))
  argv = [sys.executable, "eval.py", "--config", "configs/eval.py", "--workdir", str(out / corpus / "eval"),
          f"--config.models={','.join(models)}", f"--config.shots={shots}", f"--config.seeds={seeds}",
          "--config.modes=probe", "--config.tfidf=True"]
  if corpus != "quickstart":
    c = CORPORA[corpus]
    argv += [f"--config.data.path={SHARED_DATA / c.file}", "--config.data.text_field=text",
             f"--config.data.label_field={c.label_field}", f"--config.data.metadata_field={c.metadata_field}",
             "--config.data.group_field=", "--config.data.split_field=split",
             f"--config.data.max_docs={c.eval_max_docs}", f"--config.max_length={c.eval_max_length}",
             f"--config.embed_dtype={c.embed_dtype}"]
  print("+", " ".join(argv[1:]), flush=True)
  subprocess.run(argv + extra, cwd=REPO, check=True)


def _mean_std(runs: list[dict], model: str, mode: str, shots) -> str:
  from jaxemb.metrics.classification import mean_std  # the sample std (ddof=1), as every other table of RESULTS
  vals = [r["macro_f1"] for r in runs if r["model"] == model and r["mode"] == mode and r["shots"] == shots
          and r["split"] == "test"]
  if not vals:
    return "–"
  mean, std = mean_std(vals)
  return f"{mean:.3f} ± {std:.3f}"


def report(corpus: str, names: list[str], out: Path) -> str:
  """Markdown: one row per model (base, TF-IDF, each variant's export), probe macro-F1 per shot size, the
  verdict against the base, training minutes and the interpolation weight the run chose."""
  res = json.loads((out / corpus / "eval" / "results.json").read_text())
  runs, verdict = res["runs"], res.get("verdict", [])
  shots = list(dict.fromkeys(r["shots"] for r in runs if r["mode"] == "probe"))
  models = list(dict.fromkeys(r["model"] for r in runs if r["mode"] == "probe"))
  head = ["model"] + [f"probe F1@{s}" for s in shots] + [f"verdict@{s}" for s in shots] + ["train min", "a"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for m in models:
    name = "base (all-MiniLM-L6-v2)" if m == models[0] else m.replace(str(out / corpus) + "/", "")
    if Path(m).name == "model":
      name += " (export)"
    workdir = Path(m).parent if Path(m).name == "model" else Path(m)
    wall = workdir / "wall_seconds.json"
    export = workdir / "export.json"
    minutes = f"{json.loads(wall.read_text())['seconds'] / 60:.1f}" if wall.exists() and m != models[0] else "–"
    alpha = "–" if m == models[0] else "1 (trained weights)"
    if export.exists() and Path(m).name == "model":
      interp = json.loads(export.read_text()).get("interpolation")
      alpha = f"{interp['chosen_alpha']}" if interp else "1 (none)"
    cells = [_mean_std(runs, m, "probe", s) for s in shots]
    for s in shots:
      v = [x for x in verdict if x["model"] == m and x["mode"] == "probe" and x["shots"] == s]
      cells.append(f"{v[0]['diff']:+.3f} [{v[0]['ci_low']:+.3f}, {v[0]['ci_high']:+.3f}] **{v[0]['verdict']}**"
                   if v else "–")
    lines.append("| " + " | ".join([name] + cells + [minutes, alpha]) + " |")
  for mode in ("tfidf", "tfidf_balanced"):
    if any(r["mode"] == mode for r in runs):
      cells = [_mean_std(runs, "tfidf", mode, s) for s in shots]
      lines.append("| " + " | ".join([f"TF-IDF + logistic regression ({mode})"] + cells
                                     + ["–"] * len(shots) + ["–", "–"]) + " |")
  return "\n".join(lines) + "\n"


def validation_report(corpus: str, names: list[str], out: Path) -> str:
  """Markdown: per variant, the validation probe of the base and of the trained weights (a = 1), their paired
  difference with its interval and verdict, the weight a the run chose and that export's difference, training
  minutes, and the validation curve when the run scored during training. Reads only training outputs."""
  head = ["variant", "changes", "val F1 base", "val F1 a=1", "a=1 - base [95% CI]", "chosen a",
          "export - base [95% CI]", "curve (step: val F1)", "train min"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for n in names:
    workdir = out / corpus / n
    export = workdir / "export.json"
    if not export.exists():
      lines.append(f"| {n} | (not run) |" + " |" * (len(head) - 2))
      continue
    interp = json.loads(export.read_text()).get("interpolation", {})
    table = {r["alpha"]: r for r in interp.get("table", [])}
    cell = lambda r: (f"{r['val_diff']:+.3f} [{r['val_ci_low']:+.3f}, {r['val_ci_high']:+.3f}] {r['val_verdict']}"
                      if r and "val_diff" in r else "–")
    base, one = table.get(0.0), table.get(1.0)
    chosen = interp.get("chosen_alpha")
    curve = []
    metrics = workdir / "metrics.jsonl"
    if metrics.exists():
      for line in metrics.read_text().splitlines():
        row = json.loads(line)
        if "val_probe_f1" in row:
          curve.append(f"{row['step']}: {row['val_probe_f1']:.3f}")
    wall = workdir / "wall_seconds.json"
    minutes = f"{json.loads(wall.read_text())['seconds'] / 60:.1f}" if wall.exists() else "–"
    lines.append("| " + " | ".join([
        n, " ".join(VARIANTS[n][1]).replace("--config.", "") or "(the recipe)",
        f"{base['val_probe_f1']:.3f}" if base else "–", f"{one['val_probe_f1']:.3f}" if one else "–", cell(one),
        "–" if chosen is None else f"{chosen}", cell(table.get(chosen)) if chosen is not None else "–",
        ", ".join(curve) or "–", minutes]) + " |")
  return "\n".join(lines) + "\n"


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--corpus", required=True, choices=sorted(CORPORA) + ["quickstart"])
  ap.add_argument("--out", default="runs/recipes")
  ap.add_argument("--variants", default="adapt")
  ap.add_argument("--stage", default="all", choices=("train", "eval", "all", "report", "validation"))
  ap.add_argument("--shots", default="16,all")
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("--train-flag", action="append", default=[], help="extra train.py flag (repeatable)")
  ap.add_argument("--eval-flag", action="append", default=[], help="extra eval.py flag (repeatable)")
  args = ap.parse_args()
  names = [n for n in args.variants.split(",") if n]
  unknown = sorted(set(names) - set(VARIANTS))
  if unknown:
    ap.error(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
  out = Path(args.out).absolute()
  if args.stage in ("train", "all"):
    for n in names:
      print(f"{n}: trained in {train_variant(args.corpus, n, out, args.train_flag) / 60:.1f} min", flush=True)
  if args.stage in ("eval", "all"):
    eval_variants(args.corpus, names, out, args.shots, args.seeds, args.eval_flag)
  if args.stage in ("report", "all"):
    print(report(args.corpus, names, out))
  if args.stage == "validation":
    print(validation_report(args.corpus, names, out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
