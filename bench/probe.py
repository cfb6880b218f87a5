"""Frozen-probe grid on cached embeddings: jaxemb's vmapped heads vs scikit-learn fitting the same runs one by one.

  python bench/probe.py [--corpus PATH] [--label-field specialty] [--model minilm] [--shots 8,16,32,64,all]
                        [--seeds 0,1,2,3,4] [--repeats 3] [--json]

What eval.py does for one model: a grid of shot sizes x seeds (default 5 x 5 = 25 runs), each a head trained on
that run's few-shot rows of the cached [N, D] embeddings with early stopping on validation macro-F1, then class
probabilities for validation + test. jaxemb: `jaxemb.eval.probe.train_probe` with eval.py's default settings,
one jitted program per head for the whole grid, for both heads ("probe" = the paper's head, "logreg").
Reference: what a user would write without jaxemb — for each run, scikit-learn's StandardScaler (on the run's
rows) + LogisticRegression (lbfgs, C=1, max_iter 1000), predict_proba on validation + test.

Timed: the first jaxemb call in this process ("cold": XLA compilation included, which is what one eval.py run
pays without a persistent compilation cache; --compilation-cache DIR turns one on) and warm repetitions,
interleaved with the reference.
Embeddings come from eval.py's cache (`--cache-dir`, default ~/.cache/jaxemb-bench/emb); a miss embeds the
corpus first (minutes on CPU; reported apart, not part of any ratio). Test macro-F1 means are printed so the
two sides are seen to solve the same problem. With --json the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--corpus", default=None, help="JSONL(.gz) corpus (default: MTSamples, else the quick-start one)")
  p.add_argument("--label-field", default="specialty")
  p.add_argument("--model", default="minilm")
  p.add_argument("--max-length", type=int, default=256)
  p.add_argument("--shots", default="8,16,32,64,all")
  p.add_argument("--seeds", default="0,1,2,3,4")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--cache-dir", default=str(harness.default_cache_dir() / "emb"))
  p.add_argument("--compilation-cache", default="",
                 help="persistent XLA compilation cache folder (default off: the cold call compiles); run twice "
                 "with the same folder to time a cold call that loads eval.py's cached programs")
  p.add_argument("--json", action="store_true")
  args = p.parse_args(argv)
  if args.compilation_cache:
    import jax
    jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

  import numpy as np
  from sklearn.linear_model import LogisticRegression
  from sklearn.preprocessing import StandardScaler

  sys.path.insert(0, str(harness.REPO))
  from jaxemb.eval.embed import use_every_cpu_core_as_a_device
  use_every_cpu_core_as_a_device()  # as eval.py does (a cache miss embeds the corpus here)
  from configs.eval import get_config
  from jaxemb.eval.cache import cached_embeddings
  from jaxemb.eval.dataset import load_eval_data
  from jaxemb.eval.fewshot import parse_shots, sample_few_shot
  from jaxemb.metrics.classification import macro_f1
  from jaxemb.eval.probe import ProbeSettings, train_probe

  log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
  cfg = get_config()
  corpus = args.corpus or (str(harness.MTSAMPLES) if harness.MTSAMPLES.exists() else "")
  cfg.data.path = corpus
  cfg.data.label_field = args.label_field
  cfg.data.group_field = "" if corpus else cfg.data.group_field
  data = load_eval_data(cfg.data)
  tr, va, te = data.split_idx["train"], data.split_idx["validation"], data.split_idx["test"]
  eval_idx = np.concatenate([va, te])
  n_classes = len(data.class_names)

  t0 = time.time()
  z_NxD, info = cached_embeddings(args.model, data.texts, max_length=args.max_length, cache_dir=Path(args.cache_dir),
                                  log=log, embed_fn=lambda: _embed(args.model, data.texts, args.max_length))
  embed_s = None if info["cache_hit"] else time.time() - t0

  shots = parse_shots(args.shots)
  seeds = [int(s) for s in args.seeds.split(",")]
  grid = [(s, seed) for s in shots for seed in seeds]
  train_rows = [tr[sample_few_shot(data.y_N[tr], s, seed)] for s, seed in grid]
  y_test = data.y_N[te]

  def test_f1(probs_RxExC) -> float:
    return float(np.mean([macro_f1(y_test, pr[len(va):].argmax(-1), n_classes) for pr in probs_RxExC]))

  def jax_grid(head: str):
    ps = ProbeSettings(lr=cfg.probe.logreg_lr if head == "logreg" else cfg.probe.lr,
                       weight_decay=cfg.probe.weight_decay, dropout=cfg.probe.dropout, max_steps=cfg.probe.max_steps,
                       eval_every=cfg.probe.eval_every, patience=cfg.probe.patience, batch_size=cfg.probe.batch_size)
    def go():
      t = time.perf_counter()
      res = train_probe(z_NxD, data.y_N, train_rows, [g[1] for g in grid], va, eval_idx, head_kind=head,
                        num_classes=n_classes, settings=ps, group_per_run=[g[0] for g in grid])
      return time.perf_counter() - t, test_f1(res.probs_RxExC)
    return go

  def sklearn_grid():
    t = time.perf_counter()
    probs = []
    for rows in train_rows:
      scaler = StandardScaler().fit(z_NxD[rows])
      clf = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(z_NxD[rows]), data.y_N[rows])
      pr = np.zeros((len(eval_idx), n_classes), np.float32)
      pr[:, clf.classes_] = clf.predict_proba(scaler.transform(z_NxD[eval_idx]))
      probs.append(pr)
    return time.perf_counter() - t, test_f1(probs)

  runners = {"jax_probe": jax_grid("probe"), "jax_logreg": jax_grid("logreg"), "sklearn_logreg": sklearn_grid}
  cold, f1 = {}, {}
  for name in ("jax_probe", "jax_logreg"):
    cold[name], f1[name] = runners[name]()
    log(f"{name}: cold call {cold[name]:.2f} s (compiles), test macro-F1 mean {f1[name]:.3f}")
  secs, loads = harness.interleave({k: (lambda r=r: [r()[0]]) for k, r in runners.items()}, args.repeats)
  f1["sklearn_logreg"] = sklearn_grid()[1]

  res = {"corpus": corpus or "quick-start", "label_field": args.label_field, "model": args.model,
         "n_docs": len(data.texts), "n_classes": n_classes, "dim": int(z_NxD.shape[1]), "runs": len(grid),
         "shots": [str(s) for s in shots], "seeds": seeds, "train_rows_per_run": [len(r) for r in train_rows],
         "eval_rows": int(len(eval_idx)), "embed_s_cache_miss": embed_s, "machine": harness.machine_info(),
         "loadavg_per_repeat": loads}
  for name in runners:
    res[f"{name}_s"] = harness.median(secs[name])
    res[f"{name}_s_all"] = secs[name]
    res[f"{name}_test_macro_f1_mean"] = f1[name]
    if name in cold:
      res[f"{name}_cold_s"] = cold[name]
  res["ratio_logreg_vs_sklearn"] = res["sklearn_logreg_s"] / res["jax_logreg_s"]
  res["ratio_probe_vs_sklearn"] = res["sklearn_logreg_s"] / res["jax_probe_s"]
  print(f"probe grid: {len(shots)} shot sizes x {len(seeds)} seeds = {len(grid)} runs on {len(data.texts)} x "
        f"{z_NxD.shape[1]} embeddings ({args.model}) of {Path(res['corpus']).name}, {n_classes} classes, "
        f"{len(eval_idx)} eval rows; {res['machine']['nproc']} cores {res['machine']['cpu']}")
  print(harness.table(
      ["grid", "cold s (compile incl.)", "warm median s", "min-max", "test macro-F1 mean", "speed vs sklearn"],
      [[n, res.get(f"{n}_cold_s", "-"), res[f"{n}_s"], harness.spread(secs[n]), res[f"{n}_test_macro_f1_mean"],
        res["sklearn_logreg_s"] / res[f"{n}_s"]] for n in runners]))
  print(f"load average (1 min) per repetition: {', '.join(f'{x:.1f}' for x in loads)}")
  if args.json:
    print(json.dumps(res))
  return 0


def _embed(model: str, texts: list[str], max_length: int):
  from jaxemb import Encoder
  return Encoder.from_pretrained(model).embed(texts, batch_size=32, max_length=max_length)


if __name__ == "__main__":
  sys.exit(main())
