"""docs/RESULTS.md "Whole documents" rows from the runs of docs/results/whole_docs/run.sh.

  python docs/results/whole_docs/table.py runs/whole_docs/mtsamples/results.json [...]

Per corpus and mode (logistic regression probe, without / with balanced class weights): each entry's test
macro-F1 (mean ± std over seeds) at 16 shots and all labels, its paired verdict against the base (truncation at
256, the first entry), its validation macro-F1 with all labels (what chooses), and the TF-IDF rows. Every number
is read from results.json (runs, verdict, chosen_embedding); nothing is recomputed.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def _mean_std(rows, model, mode, shots, split="test"):
  xs = [r["macro_f1"] for r in rows if (r["model"], r["mode"], r["shots"], r["split"]) == (model, mode, shots, split)]
  if not xs:
    return None, None
  return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def _cell(mean, std):
  return "–" if mean is None else f"{mean:.3f} ± {std:.3f}"


def table(doc: dict) -> list[str]:
  runs, verdict = doc["runs"], doc["verdict"]
  corpus = doc["dataset"]["path"].rsplit("/", 1)[-1]
  chosen = {(c["mode"], c["shots"]): c["chosen"] for c in doc.get("chosen_embedding", [])}
  out = [f"**{corpus}** (test {doc['dataset']['split_sizes']['test']} documents)", "",
         "| mode | embedding | F1@16 | F1@all | verdict@16 vs trunc 256 | verdict@all vs trunc 256 | val F1@all |",
         "|---|---|---|---|---|---|---|"]
  models = list(dict.fromkeys(r["model"] for r in runs if r["mode"].startswith("probe")))
  for mode in ("probe_logreg", "probe_logreg_balanced"):
    for m in models:
      label = next(r["embedding"] for r in runs if r["model"] == m)
      mark = " **(chosen on validation)**" if chosen.get((mode, "all")) == m else ""
      vs = []
      for shots in (16, "all"):
        v = next((v for v in verdict if (v["model"], v["mode"], v["shots"]) == (m, mode, shots)), None)
        vs.append("–" if v is None else f"{v['diff']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}] {v['verdict']}")
      val = _mean_std(runs, m, mode, "all", "validation")[0]
      out.append(f"| {mode} | {label}{mark} | {_cell(*_mean_std(runs, m, mode, 16))} | "
                 f"{_cell(*_mean_std(runs, m, mode, 'all'))} | {vs[0]} | {vs[1]} | "
                 f"{'–' if val is None else f'{val:.3f}'} |")
  for mode in ("tfidf", "tfidf_balanced"):
    val = _mean_std(runs, "tfidf", mode, "all", "validation")[0]
    out.append(f"| {mode} | whole text | {_cell(*_mean_std(runs, 'tfidf', mode, 16))} | "
               f"{_cell(*_mean_std(runs, 'tfidf', mode, 'all'))} | – | – | {'–' if val is None else f'{val:.3f}'} |")
  return out


def main(paths: list[str]) -> int:
  for p in paths:
    with open(p) as f:
      print("\n".join(table(json.load(f))) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
