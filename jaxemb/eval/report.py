"""Writes results.json, results.csv, report.md and the few-shot curve PNG from the collected rows."""

from __future__ import annotations

import csv
import hashlib
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jaxemb import atomic
from jaxemb.metrics.classification import mean_std

RUN_KEYS = ("model", "mode", "shots", "seed", "split", "accuracy", "macro_f1", "weighted_f1",
            "macro_precision", "macro_recall", "auroc")
GEOMETRY_KEYS = ("model", "field", "alignment", "uniformity", "silhouette", "knn_accuracy", "kmeans_nmi",
                 "kmeans_ari")
METRICS = ("macro_f1", "accuracy", "weighted_f1", "macro_precision", "macro_recall", "auroc")
MODE_ORDER = ("tfidf", "tfidf_balanced", "probe_logreg", "probe_logreg_balanced", "probe", "probe_balanced",
              "finetune", "retrieval", "retrieval_rrf", "retrieval_minmax")
RETRIEVAL_METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "map@100")


def is_retrieval(row: dict) -> bool:
  return str(row.get("mode", "")).startswith("retrieval")


def model_slug(spec: str) -> str:
  """A short, file-name-safe, collision-resistant name for a model spec (for plot files and legends); an entry
  with embedding overrides ("minilm#window=128#pooling=mean") keeps them, shortened ("minilm#128-mean")."""
  if "#" in spec:
    model, *parts = spec.split("#")
    short = "-".join(p.partition("=")[2] for p in parts)
    return re.sub(r"[^A-Za-z0-9._#-]+", "_", f"{model_slug(model)}#{short}")[:60]
  path = Path(spec.split("@")[0].rstrip("/"))
  base = path.name or spec
  if base == "model" and path.parent.name:  # a training run's export WORKDIR/model: name it by its run
    base = f"{path.parent.name}_model"
  step = spec.rsplit("@", 1)[1] if "@" in spec else ""
  short = re.sub(r"[^A-Za-z0-9._-]+", "_", base + (f"@{step}" if step else ""))[:40]
  if spec.lower() in ("minilm", "tfidf", "bm25"):
    return short
  return f"{short}-{hashlib.sha1(spec.encode()).hexdigest()[:6]}"


def _shots_key(shots: Any) -> float:
  return math.inf if shots == "all" else float(shots)


def json_safe(x: Any) -> Any:
  """NaN/Inf -> None (strict JSON), numpy scalars -> Python."""
  if isinstance(x, dict):
    return {str(k): json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [json_safe(v) for v in x]
  if isinstance(x, np.generic):
    x = x.item()
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def summarize(runs: Sequence[dict], split: str = "test") -> list[dict]:
  """Mean and std over seeds per (model, mode, shots) on `split`, in a stable order."""
  groups: dict[tuple, list[dict]] = {}
  for r in runs:
    if r["split"] == split and not is_retrieval(r):
      groups.setdefault((r["model"], r["mode"], r["shots"]), []).append(r)
  out = []
  models = list(dict.fromkeys(r["model"] for r in runs))
  for key in sorted(groups, key=lambda k: (models.index(k[0]),
                                           MODE_ORDER.index(k[1]) if k[1] in MODE_ORDER else 99,
                                           _shots_key(k[2]))):
    rows = groups[key]
    s = {"model": key[0], "mode": key[1], "shots": key[2], "n_seeds": len(rows),
         "embedding": rows[0].get("embedding", "")}
    for m in METRICS:
      s[m], s[m + "_std"] = mean_std([r.get(m) for r in rows])
    out.append(s)
  return out


def retrieval_summary(runs: Sequence[dict], split: str = "test") -> list[dict]:
  """The retrieval rows of `split` (one per model and mode: no seeds), in the report's order: models as they
  ran (bm25 last), dense then hybrid rows."""
  rows = [r for r in runs if r["split"] == split and is_retrieval(r)]
  models = list(dict.fromkeys(r["model"] for r in rows))
  return sorted(rows, key=lambda r: (models.index(r["model"]), MODE_ORDER.index(r["mode"])))


def _fmt(mean: float, std: float | None = None) -> str:
  if mean is None or not math.isfinite(mean):
    return "n/a"
  return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def plot_fewshot_curves(summary: Sequence[dict], path: Path, metric: str = "macro_f1") -> bool:
  """macro-F1 (mean ± std over seeds) against shots, one line per (model, mode). False if nothing to plot."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  if not summary:
    return False
  shots = sorted({s["shots"] for s in summary}, key=_shots_key)
  pos = {sh: i for i, sh in enumerate(shots)}  # categorical axis: "all" has no numeric position
  fig, ax = plt.subplots(figsize=(7.5, 4.8))
  lines = list(dict.fromkeys((s["model"], s["mode"]) for s in summary))
  for k, (model, mode) in enumerate(lines):
    pts = sorted((s for s in summary if s["model"] == model and s["mode"] == mode),
                 key=lambda s: _shots_key(s["shots"]))
    xs = [pos[s["shots"]] + (k - (len(lines) - 1) / 2) * 0.03 for s in pts]  # dodge overlapping bars
    style = "--" if mode == "tfidf" else ":" if mode == "probe_logreg" else "-"
    ax.errorbar(xs, [s[metric] for s in pts], yerr=[s[metric + "_std"] for s in pts], marker="o",
                linestyle=style, capsize=3, label=f"{model_slug(model)} / {mode}")
  ax.set_xticks(range(len(shots)), [str(s) for s in shots])
  ax.set_xlabel("training examples per class (N)")
  ax.set_ylabel(f"test {metric.replace('_', '-')} (mean ± std over seeds)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="best")
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def verdict_md(verdict: Sequence[dict]) -> list[str]:
  """The report's first table: one line per (model, mode, shots) against the base model."""
  retrieval = [v for v in verdict if v["metric"] != "macro_f1"]
  verdict = [v for v in verdict if v["metric"] == "macro_f1"]
  md = []
  if retrieval:
    v0 = retrieval[0]
    md += ["## Verdict (retrieval)", "",
           f"Test {v0['metric']} of each row minus the reference row, paired over the {v0['n_test']} test queries: "
           f"mean difference and {round(100 * v0['level'])}% bootstrap interval over queries ({v0['n_boot']} "
           "resamples).", "", "| model | mode | against | Δ | interval | verdict |", "|---|---|---|---|---|---|"]
    md += [f"| {model_slug(v['model'])} | {v['mode']} | {model_slug(v['base'])} / {v['base_mode']} | {v['diff']:+.3f} | "
           f"[{v['ci_low']:+.3f}, {v['ci_high']:+.3f}] | **{v['verdict']}** |" for v in retrieval]
    md += [""]
  if not verdict:
    return md
  md += ["## Verdict", "",
        f"Test macro-F1 of each model minus the base `{model_slug(verdict[0]['base'])}` (first of config.models), "
        f"same mode and training samples: mean over seeds, {round(100 * verdict[0]['level'])}% interval from a "
        f"paired bootstrap over the {verdict[0]['n_test']} test documents ({verdict[0]['n_boot']} resamples), "
        "and the std over seeds of the per-seed differences.", "",
        f"| model | mode | shots | seeds | Δ macro-F1 | {round(100 * verdict[0]['level'])}% interval | seed std | "
        "verdict |",
        "|---|---|---|---|---|---|---|---|"]
  for v in verdict:
    md.append(f"| {model_slug(v['model'])} | {v['mode']} | {v['shots']} | {v['n_seeds']} | {v['diff']:+.3f} | "
              f"[{v['ci_low']:+.3f}, {v['ci_high']:+.3f}] | {v['seed_std']:.3f} | **{v['verdict']}** |")
  return md + [""]


def write_json(path: Path, doc: dict) -> None:
  """results.json as strict JSON, atomically: a temporary file beside it, then os.replace, so a reader (or
  a rerun after a crash) sees the previous file or the new one, whole."""
  atomic.write_json(path, json_safe(doc), indent=1)


def write_outputs(out_dir: Path, doc: dict) -> dict[str, Path]:
  """results.json (= `doc`) / results.csv / report.md (+ fewshot_macro_f1.png). Returns the written paths.

  doc: "dataset", "runs", "geometry" (a row's "map" is its 2-D map PNG, relative to out_dir), "config",
  "verdict" (compare.verdict_rows: the report's first table), "failed" (runs that stopped with a reason: a
  report section), and anything else results.json should hold."""
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = {"json": out_dir / "results.json", "csv": out_dir / "results.csv", "md": out_dir / "report.md",
           "curves": out_dir / "fewshot_macro_f1.png"}
  write_json(paths["json"], doc)
  dataset, runs, geometry = doc["dataset"], doc["runs"], doc["geometry"]
  verdict, failed = doc.get("verdict", []), doc.get("failed", [])
  maps = {(g["model"], g["field"]): g["map"] for g in geometry if g.get("map")}

  with open(paths["csv"], "w", newline="") as f:
    extra_keys = sorted({k for r in runs for k in r} - set(RUN_KEYS))
    w = csv.DictWriter(f, fieldnames=list(RUN_KEYS) + extra_keys, extrasaction="ignore")
    w.writeheader()
    for r in runs:
      w.writerow({k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v))
                      else ";".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
                  for k, v in r.items() if not isinstance(v, dict)})

  summary = summarize(runs, "test")
  has_curves = plot_fewshot_curves(summary, paths["curves"])
  md = ["# jaxemb evaluation report", ""] + verdict_md(verdict)
  seen = dataset.get("validation_trained_on") or []
  if seen:
    md += [f"**Validation seen in pre-training:** {', '.join(f'`{model_slug(m)}`' for m in seen)} trained on this "
           "corpus's validation documents, on which this evaluation chooses (early stopping, fusion weights, "
           "embeddings): its choices for them were made on text they had seen.", ""]
  retrieval = retrieval_summary(runs)
  if retrieval:
    md += ["## Retrieval (test queries)", ""]
    for k, info in dataset.items():
      if isinstance(info, dict) and info.get("kind") in ("beir", "pairs"):
        md += [f"- {info['kind']} `{info['path']}`: {info['n_docs']} documents in the pool, queries "
               + ", ".join(f"{s} {n}" for s, n in info["n_queries"].items())
               + (f"; query field `{info['query_field']}` -> document field `{info['document_field']}`, pool "
                  f"{info['pool']}" if info["kind"] == "pairs" else ""), ""]
    md += ["| model | mode | queries | nDCG@10 | MRR@10 | R@1 | R@10 | R@100 | MAP@100 | weight |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {model_slug(r['model'])} | {r['mode']} | {r['n_queries']} | "
           + " | ".join(_fmt(r[m]) for m in RETRIEVAL_METRICS) + f" | {r.get('weight', '')} |" for r in retrieval]
    md += [""]
  if not summary:
    md += ["", "Models:", ""] + [f"- `{model_slug(m)}` = `{m}`" for m in dict.fromkeys(r["model"] for r in runs)
                                  if m not in ("tfidf", "bm25")]
    atomic.write_text(paths["md"], "\n".join(md) + "\n")
    paths.pop("curves", None)
    return paths
  sizes = dataset.get("split_sizes", {})
  md += [f"- corpus: `{dataset.get('path')}`; label `{dataset.get('fields', {}).get('label')}`, "
         f"{len(dataset.get('classes', []))} classes",
         f"- split sizes: {', '.join(f'{k} {v}' for k, v in sizes.items())} ({dataset.get('split_source')})",
         f"- rows skipped by the reader: {dataset.get('skip_report', {}).get('skipped', 0)}; "
         f"validation/test documents dropped for a label unseen in training: "
         f"{dataset.get('n_dropped_unseen_labels', 0)}"]
  if dataset.get("classes_absent_from_test"):
    md.append(f"- classes absent from test (excluded from AUROC): {dataset['classes_absent_from_test']}")
  md += ["", "## Classification (test split, mean ± std over seeds)", "",
         "| model | embedding | mode | shots | seeds | macro-F1 | accuracy | weighted-F1 | macro-P | macro-R | "
         "AUROC |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for s in summary:
    md.append(f"| {model_slug(s['model'])} | {s['embedding']} | {s['mode']} | {s['shots']} | {s['n_seeds']} | "
              + " | ".join(_fmt(s[m], s[m + "_std"]) for m in METRICS) + " |")
  if has_curves:
    md += ["", f"![few-shot curves]({paths['curves'].name})"]
  chosen = doc.get("chosen_embedding", [])
  if chosen:
    md += ["", "## Embedding chosen on the validation split", "",
           "For a model listed with several embeddings: the entry with the best validation macro-F1 (mean over "
           "seeds; the test split plays no part). Its test score and verdict are its rows above.", "",
           "| model | mode | shots | chosen | embedding | validation macro-F1 of each entry |", "|---|---|---|---|---|---|"]
    md += [f"| {c['model']} | {c['mode']} | {c['shots']} | `{c['chosen']}` | {c['embedding']} | "
           + "; ".join(f"{model_slug(e)} {v:.3f}" for e, v in c["val_macro_f1"].items()) + " |" for c in chosen]
  if failed:
    md += ["", "## Failed runs (not in the table above)", "", "| model | mode | shots | seed | reason |",
           "|---|---|---|---|---|"]
    md += [f"| {model_slug(f['model'])} | {f['mode']} | {'all' if f['shots'] is None else f['shots']} | "
           f"{'all' if f['seed'] is None else f['seed']} | {f['reason']} |" for f in failed]
  if geometry:
    md += ["", "## Embedding geometry (test split, L2-normalised embeddings)", "",
           "alignment: mean squared distance of same-category pairs (lower = tighter); uniformity: "
           "log E exp(-2 d^2) over all pairs (lower = more uniform); silhouette (cosine), kNN (k=5, "
           "leave-one-out, cosine), k-means NMI/ARI: higher = categories more separable.", "",
           "| model | field | n | categories | alignment | uniformity | silhouette | kNN acc | k-means NMI | "
           "k-means ARI |", "|---|---|---|---|---|---|---|---|---|---|"]
    for g in geometry:
      md.append(f"| {model_slug(g['model'])} | {g['field']} | {g.get('n', '')} | {g.get('n_categories', '')} | "
                + " | ".join(_fmt(g[k]) for k in GEOMETRY_KEYS[2:]) + " |")
    for (model, field), rel in maps.items():
      md += ["", f"![{model_slug(model)} by {field}]({rel})"]
  md += ["", "Models:", ""] + [f"- `{model_slug(m)}` = `{m}`" for m in dict.fromkeys(r["model"] for r in runs)
                                if m != "tfidf"]
  atomic.write_text(paths["md"], "\n".join(md) + "\n")
  if not has_curves:
    paths.pop("curves")
  return paths
