"""docs/RESULTS.md from the reproduction sweep's results.json files (used by scripts/reproduce.py)."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"   # ../shared beside the repository

ROW_NAMES = {"base": "1 base (all-MiniLM-L6-v2)", "mlm": "2 MLM", "declutr": "3 DeCLUTR + MLM",
             "declutr_only": "4 DeCLUTR contrastive-only", "meta_supcon": "5 metadata + SupCon",
             "meta_classify": "6 metadata + classification head", "mlm_declutr": "7 MLM then DeCLUTR (staged)",
             "tfidf": "TF-IDF + logistic regression",
             "tfidf_balanced": "TF-IDF + logistic regression, balanced class weights"}
TFIDF_MODES = ("tfidf", "tfidf_balanced")


def _name(model: str, base: str) -> str:
  if model in ("minilm", base) or model == "tfidf":
    return "base" if model != "tfidf" else "tfidf"
  return Path(model.split("@")[0]).name


def _fmt(values) -> str:
  if not values:
    return "–"
  v = np.asarray(values, float)
  return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def _shots_order(s) -> float:
  return float("inf") if s == "all" else float(s)


def corpus_tables(results: dict, base: str) -> tuple[str, str]:
  test = [r for r in results["runs"] if r.get("split") == "test"]
  by = defaultdict(list)
  for r in test:
    mode = r["mode"]
    name = mode if mode in TFIDF_MODES else _name(r["model"], base)
    by[(name, mode, r["shots"])].append(r)
  shots = sorted({r["shots"] for r in test}, key=_shots_order)
  modes = [m for m in ("probe", "probe_logreg", "finetune") if any(k[1] == m for k in by)]
  header = ["model"] + [f"{m} F1@{s}" for m in modes for s in shots if any(k[1] == m and k[2] == s for k in by)]
  cols = [(m, s) for m in modes for s in shots if any(k[1] == m and k[2] == s for k in by)]
  auroc_modes = [m for m in modes if any(k[1] == m and k[2] == "all" for k in by)]
  header += [f"{m} AUROC@all" for m in auroc_modes]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name in ROW_NAMES:
    if name in TFIDF_MODES:  # shown in the probe columns
      if not any(k[0] == name for k in by):
        continue
      cells = []
      for m, s in cols:
        cells.append(_fmt([r["macro_f1"] for r in by.get((name, name, s), [])]) if m == "probe" else "–")
      cells += [_fmt([r["auroc"] for r in by.get((name, name, "all"), [])]) if m == "probe" else "–"
                for m in auroc_modes]
    else:
      if not any(k[0] == name for k in by):
        continue
      cells = [_fmt([r["macro_f1"] for r in by.get((name, m, s), [])]) for m, s in cols]
      cells += [_fmt([r["auroc"] for r in by.get((name, m, "all"), [])]) for m in auroc_modes]
    lines.append(f"| {ROW_NAMES[name]} | " + " | ".join(cells) + " |")
  geo = ["| model | field | alignment | uniformity | silhouette | kNN acc | k-means NMI | k-means ARI |",
         "|---|---|---|---|---|---|---|---|"]
  for g in sorted(results.get("geometry", []), key=lambda g: (list(ROW_NAMES).index(_name(g["model"], base))
                                                                if _name(g["model"], base) in ROW_NAMES else 99,
                                                                g["field"])):
    geo.append(f"| {ROW_NAMES.get(_name(g['model'], base), g['model'])} | {g['field']} | {g['alignment']:.3f} | "
               f"{g['uniformity']:.3f} | {g['silhouette']:.3f} | {g['knn_accuracy']:.3f} | {g['kmeans_nmi']:.3f} | "
               f"{g['kmeans_ari']:.3f} |")
  return "\n".join(lines), "\n".join(geo)


def verdict_table(results: dict, base: str) -> str:
  """eval.py's verdict (each model against the base: paired test macro-F1 difference, 95% bootstrap interval
  over test documents, spread over seeds) as one row per model and mode, one column per shot count."""
  verdict = results["verdict"]
  shots = sorted({v["shots"] for v in verdict}, key=_shots_order)
  cells = {(_name(v["model"], base), v["mode"], v["shots"]): v for v in verdict}
  rows = list(dict.fromkeys((_name(v["model"], base), v["mode"]) for v in verdict))
  lines = [f"Verdict against the base (test macro-F1 difference, {round(100 * verdict[0]['level'])}% paired-bootstrap "
           "interval over test documents, std over seeds):", "",
           "| model | mode | " + " | ".join(f"Δ F1@{s}" for s in shots) + " |", "|---|---|" + "---|" * len(shots)]
  for name, mode in rows:
    out = []
    for s in shots:
      v = cells.get((name, mode, s))
      out.append("–" if v is None else f"{v['diff']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}] "
                                       f"±{v['seed_std']:.3f} {v['verdict']}")
    lines.append(f"| {ROW_NAMES.get(name, name)} | {mode} | " + " | ".join(out) + " |")
  return "\n".join(lines)


def _versions() -> str:
  import importlib.metadata as md
  pkgs = ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "transformers", "tokenizers", "scikit-learn",
          "numpy"]
  out = []
  for p in pkgs:
    try:
      out.append(f"{p} {md.version(p)}")
    except md.PackageNotFoundError:
      pass
  return ", ".join(out) + f"; Python {platform.python_version()}"


def write_results_md(out: Path, md_path: Path, corpora, budget, train_runs, eval_argv) -> None:
  repo = md_path.resolve().parents[1]
  commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                          text=True).stdout.strip()
  res_dir = md_path.parent / "results"
  parts = ["# Reproduction on open healthcare corpora", "",
           "Generated by `python scripts/reproduce.py --out runs/repro --stage report` from the sweep's "
           "`results.json` files (copied next to this file under `docs/results/<corpus>/`).", "",
           f"- git commit: `{commit}`", f"- versions: {_versions()}",
           f"- machine: {platform.machine()}, {_cpu()}",
           f"- pre-training budgets (optimizer steps): {budget}", ""]
  discussion = md_path.parent / "results" / "DISCUSSION.md"
  if discussion.exists():
    parts += [discussion.read_text().strip(), ""]
  # Hand-written sections with their own runs: the adaptation recipe (scripts/recipes.py), whole-document
  # embeddings (docs/results/whole_docs/run.sh) and retrieval (reproduce.py --stage retrieval).
  for section in ("RECIPES.md", "WHOLE_DOCS.md", "RETRIEVAL.md"):
    path = md_path.parent / "results" / section
    if path.exists():
      parts += [path.read_text().strip(), ""]
  for name, c in corpora.items():
    cdir = out / name
    rj = cdir / "eval" / "results.json"
    parts += [f"## {name}: label `{c.label_field}`, metadata `{c.metadata_field}`", ""]
    if not rj.exists():
      parts += ["Not run yet (no results.json): the sweep resumes with "
                f"`python scripts/reproduce.py --out runs/repro --corpus {name}`.", ""]
      continue
    results = json.loads(rj.read_text())
    dst = res_dir / name
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(rj, dst / "results.json")
    for png in sorted((cdir / "eval").rglob("*.png")):
      shutil.copyfile(png, dst / png.name)
    table, geo = corpus_tables(results, "minilm")
    ds = results.get("dataset", {})
    parts += [f"Dataset: {json.dumps({k: ds[k] for k in ds if k in ('split_sizes', 'num_classes', 'n_docs')})}", "",
              "Macro-F1 on the test split (mean ± std over seeds) and macro one-vs-rest AUROC with all labels:", "",
              table, ""]
    if results.get("verdict"):
      parts += [verdict_table(results, "minilm"), ""]
    parts += ["Embedding geometry on the test split:", "", geo, ""]
    for png in sorted(dst.glob("*.png")):
      parts.append(f"![{png.stem}](results/{name}/{png.name})")
    parts += ["", "Commands:", "", "```"]
    data_path = f"../shared/data/{c.file}"
    for _, argv in train_runs(c, data_path, Path("runs/repro") / name, False, "minilm"):
      parts.append("python " + " ".join(argv))
    cmd = cdir / "eval" / "command.json"   # what actually ran (written by reproduce.py), paths made relative
    argv = (json.loads(cmd.read_text()) if cmd.exists() else
            eval_argv(c, data_path, Path("runs/repro") / name, False, "minilm"))
    parts.append("python " + " ".join(_relative(a, out, SHARED) for a in argv))
    parts += ["```", ""]
  md_path.write_text("\n".join(parts) + "\n")
  print(f"wrote {md_path}")


def _relative(arg: str, out: Path, shared: Path) -> str:
  """The sweep's absolute paths as the documented ones (runs/repro/..., ../shared/...)."""
  return arg.replace(str(out), "runs/repro").replace(str(shared), "../shared")


def _cpu() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        import os
        return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
  except OSError:
    pass
  return platform.processor()
