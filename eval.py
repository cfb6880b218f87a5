"""The evaluator: compares encoders on a labelled corpus (frozen probe, fine-tuning, TF-IDF reference) and
measures their embedding geometry.

  python eval.py --config configs/eval.py --workdir OUT
  python eval.py --config configs/eval.py:smoke --workdir /tmp/smoke --config.models=minilm,runs/declutr@300

Writes OUT/results.json (dataset / runs / geometry), OUT/results.csv (one row per run and split),
OUT/report.md with OUT/fewshot_macro_f1.png and OUT/maps/*.png, and caches embeddings in OUT/cache (or
config.cache_dir), so a rerun with other heads or shots does not re-embed. To only write a corpus's
embeddings, use `python -m jaxemb.eval.embed` (see its docstring).

Each model's corpus is embedded once; every (shots, seed) few-shot sample is drawn once and shared by all
modes, so rows of one seed differ only by the method. Expected failures (bad path, unknown field, too few
classes) print one line `eval.py: error: ...` and exit with status 2.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from jaxemb import cli  # noqa: E402

cli.set_environment_defaults()  # before absl / jax / transformers are imported

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxemb.eval.dataset import EvalData, EvalError, load_eval_data  # noqa: E402
from jaxemb.eval.fewshot import parse_shots, sample_few_shot  # noqa: E402
from jaxemb.eval.metrics import classification_metrics  # noqa: E402


def _define_flags() -> None:
  # Only when run as a script: importing eval.py (tests call run() in-process) then defines no absl flags
  # that could collide with train.py's --config in the same process.
  config_flags.DEFINE_config_file("config", None, "Evaluation config file (configs/eval.py[:smoke]).")
  flags.DEFINE_string("workdir", None, "Output directory (results, report, plots, cache).")
  flags.DEFINE_bool("verbose", False, "Show library logs (Orbax, TFDS, jax) and error tracebacks.")

MODES = ("probe", "finetune")


def log(msg: str) -> None:
  print(msg, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Config parsing and model checks.
# ---------------------------------------------------------------------------------------------------------

def _csv_list(value: str, what: str) -> list[str]:
  items = [s.strip() for s in str(value).split(",") if s.strip()]
  if not items:
    raise EvalError(f"config.{what} is empty")
  return items


def _parse_settings(cfg) -> dict[str, Any]:
  models = _csv_list(cfg.models, "models")
  if len(set(models)) != len(models):
    raise EvalError(f"config.models lists a model twice: {models}")
  modes = [m for m in str(cfg.modes).split(",") if m.strip()]
  modes = [m.strip() for m in modes]
  bad = sorted(set(modes) - set(MODES))
  if bad:
    raise EvalError(f"config.modes: unknown mode(s) {bad}; expected a comma-separated subset of {MODES}")
  heads = _csv_list(cfg.probe.heads, "probe.heads") if "probe" in modes else []
  if sorted(set(heads) - {"probe", "logreg"}):
    raise EvalError(f"config.probe.heads must be a subset of probe,logreg; got {heads}")
  try:
    shots = parse_shots(cfg.shots)
    ft_shots = parse_shots(cfg.finetune.shots) if cfg.finetune.shots else shots
    seeds = [int(s) for s in _csv_list(cfg.seeds, "seeds")]
    c_grid = tuple(float(c) for c in _csv_list(cfg.tfidf_c_grid, "tfidf_c_grid"))
  except ValueError as e:
    raise EvalError(f"config: {e}") from None
  if not modes and not cfg.tfidf:
    raise EvalError("nothing to do: config.modes is empty and config.tfidf is False")
  if cfg.embed_dtype not in ("float32", "bfloat16"):
    raise EvalError(f"config.embed_dtype must be float32 or bfloat16; got {cfg.embed_dtype!r}")
  return {"models": models, "modes": modes, "heads": heads, "shots": shots, "ft_shots": ft_shots,
          "seeds": seeds, "c_grid": c_grid}


def check_model(spec: str) -> None:
  """Fail fast (before any embedding work) on a model that cannot load: jaxemb.resolve raises a one-line
  ModelSpecError (a UserError) naming the spec, e.g. a step without a checkpoint and the steps that have one."""
  from jaxemb.resolve import resolve
  resolve(spec)


class _LazyEncoder:
  """Loads a model on first use only: a cache hit for the embeddings needs no model at all."""

  def __init__(self, spec: str):
    self.spec, self._enc = spec, None

  def get(self):
    if self._enc is None:
      from jaxemb import Encoder
      t0 = time.time()
      try:
        self._enc = Encoder.from_pretrained(self.spec)
      except (ValueError, FileNotFoundError, OSError) as e:
        raise EvalError(f"model {self.spec!r}: {e}".replace("\n", " ")) from None
      log(f"  loaded {self.spec} ({self._enc.config.num_layers} layers, hidden {self._enc.config.hidden_size})"
          f" in {time.time() - t0:.1f}s")
    return self._enc


# ---------------------------------------------------------------------------------------------------------
# Rows.
# ---------------------------------------------------------------------------------------------------------

def _rows_for(data: EvalData, model: str, mode: str, shots, seed: int, probs_ExC: np.ndarray,
              eval_idx: np.ndarray, extra: dict[str, Any]) -> list[dict[str, Any]]:
  """One row per split (validation, test) from probabilities over eval_idx (= validation then test)."""
  rows = []
  n_classes = len(data.class_names)
  offset = 0
  for split in ("validation", "test"):
    idx = data.split_idx[split]
    probs = probs_ExC[offset:offset + len(idx)]
    offset += len(idx)
    assert np.array_equal(eval_idx[offset - len(idx):offset], idx)
    m = classification_metrics(data.y_N[idx], probs.argmax(-1), probs, n_classes)
    excluded = [data.class_names[c] for c in m.pop("auroc_excluded_classes")]
    rows.append({"model": model, "mode": mode, "shots": shots, "seed": seed, "split": split, **m,
                 "auroc_excluded_classes": excluded, **extra})
  return rows


# ---------------------------------------------------------------------------------------------------------
# The evaluation.
# ---------------------------------------------------------------------------------------------------------

def run(cfg, workdir: str | os.PathLike) -> dict[str, Any]:
  """Runs the whole evaluation described by `cfg` into `workdir`. Raises EvalError on expected failures.
  Returns {"paths": {...}, "runs": [...], "geometry": [...], "dataset": {...}}."""
  from jaxemb.eval import report
  from jaxemb.eval.cache import cached_embeddings
  from jaxemb.train.loop import enable_compilation_cache

  t_start = time.time()
  enable_compilation_cache(cfg.compilation_cache)
  out = Path(workdir).expanduser()
  s = _parse_settings(cfg)
  for spec in s["models"]:
    check_model(spec)
  log(f"eval: {len(s['models'])} model(s) {s['models']}; modes {s['modes'] or []}"
      f"{' + tfidf' if cfg.tfidf else ''}; shots {s['shots']}; seeds {s['seeds']}")

  # ---- data ----------------------------------------------------------------------------------------------
  data = load_eval_data(cfg.data)
  for note in data.notes:
    log(f"data: {note}")
  sizes = data.info["split_sizes"]
  log(f"data: {len(data.class_names)} classes; train {sizes['train']}, validation {sizes['validation']}, "
      f"test {sizes['test']} ({data.info['split_source']})")
  tr, va, te = data.split_idx["train"], data.split_idx["validation"], data.split_idx["test"]
  eval_idx = np.concatenate([va, te])
  n_classes = len(data.class_names)
  y_train = data.y_N[tr]
  samples: dict[tuple, np.ndarray] = {}

  def sample(shots, seed: int) -> np.ndarray:
    if (shots, seed) not in samples:
      samples[(shots, seed)] = tr[sample_few_shot(y_train, shots, seed)]
    return samples[(shots, seed)]

  runs: list[dict[str, Any]] = []
  geometry: list[dict[str, Any]] = []
  maps: dict[tuple[str, str], str] = {}
  timings: dict[str, float] = {}
  cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else out / "cache"
  geo_idx = te
  if cfg.geometry.enabled and len(te) > cfg.geometry.max_points:
    rng = np.random.default_rng(cfg.geometry.kmeans_seed)
    geo_idx = np.sort(rng.choice(te, cfg.geometry.max_points, replace=False))
    log(f"geometry: seeded subset of {len(geo_idx)} of {len(te)} test documents")

  for spec in s["models"]:
    log(f"model {spec}")
    lazy = _LazyEncoder(spec)
    t0 = time.time()

    def embed_all(lazy=lazy) -> np.ndarray:
      try:
        return lazy.get().embed(data.texts, batch_size=cfg.embed_batch_size, max_length=cfg.max_length,
                                dtype=cfg.embed_dtype)
      except ValueError as e:  # e.g. max_length beyond the model's position table
        raise EvalError(f"model {lazy.spec!r}: {e}") from None

    z_NxD, emb_info = cached_embeddings(spec, data.texts, max_length=cfg.max_length, cache_dir=cache_dir,
                                        dtype=cfg.embed_dtype,
                                        log=log, embed_fn=embed_all)
    timings[f"{spec}/embed"] = time.time() - t0

    # ---- frozen probe: every (shots, seed) run of a head in one jitted program --------------------------
    if "probe" in s["modes"]:
      from jaxemb.eval.probe import ProbeSettings, train_probe
      ps = ProbeSettings(lr=cfg.probe.lr, weight_decay=cfg.probe.weight_decay, dropout=cfg.probe.dropout,
                         max_steps=cfg.probe.max_steps, eval_every=cfg.probe.eval_every,
                         patience=cfg.probe.patience, batch_size=cfg.probe.batch_size)
      grid = [(shots, seed) for shots in s["shots"] for seed in s["seeds"]]
      for head in s["heads"]:
        t0 = time.time()
        hs = dataclasses.replace(ps, lr=cfg.probe.logreg_lr) if head == "logreg" else ps
        res = train_probe(z_NxD, data.y_N, [sample(*g) for g in grid], [g[1] for g in grid], va, eval_idx,
                          head_kind=head, num_classes=n_classes, settings=hs,
                          group_per_run=[g[0] for g in grid])
        dt = time.time() - t0
        timings[f"{spec}/{head}"] = dt
        mode = "probe" if head == "probe" else "probe_logreg"
        for r, (shots, seed) in enumerate(grid):
          runs += _rows_for(data, spec, mode, shots, seed, res.probs_RxExC[r], eval_idx,
                            {"n_train": int(len(sample(shots, seed))), "best_step": int(res.best_step_R[r]),
                             "steps": int(res.steps_run_R[r])})
        test_f1 = [r["macro_f1"] for r in runs[-2 * len(grid):] if r["split"] == "test"]
        log(f"  {mode}: {len(grid)} runs in {dt:.1f}s; test macro-F1 mean {np.mean(test_f1):.3f}")

    # ---- geometry of the test split ---------------------------------------------------------------------
    if cfg.geometry.enabled:
      from jaxemb.eval.geometry import embedding_geometry, plot_map, project_2d
      t0 = time.time()
      views = [("label", data.info["fields"]["label"], [data.class_names[y] for y in data.y_N[geo_idx]],
                np.ones(len(geo_idx), bool))]
      if data.info["fields"]["metadata"]:
        meta = [data.metadata[i] for i in geo_idx]
        views.append(("metadata", data.info["fields"]["metadata"], meta, np.array([m is not None for m in meta])))
      xy = None
      for role, field, cats, keep in views:
        if keep.sum() < 3 or len(set(c for c, k in zip(cats, keep) if k)) < 2:
          log(f"  geometry by {field}: skipped (fewer than 3 documents or 2 categories)")
          continue
        cats_k = np.array([c for c, k in zip(cats, keep) if k])
        g = embedding_geometry(z_NxD[geo_idx][keep], cats_k, knn_k=cfg.geometry.knn_k,
                               kmeans_seed=cfg.geometry.kmeans_seed)
        g = {"model": spec, "field": field, "role": role, **g, "n_missing_category": int((~keep).sum())}
        geometry.append(g)
        log(f"  geometry by {field}: alignment {g['alignment']:.3f} uniformity {g['uniformity']:.3f} "
            f"silhouette {g['silhouette']:.3f} kNN {g['knn_accuracy']:.3f} NMI {g['kmeans_nmi']:.3f}")
        if cfg.geometry.maps:
          if xy is None:
            xy, method = project_2d(z_NxD[geo_idx], seed=cfg.geometry.kmeans_seed)
          rel = f"maps/{report.model_slug(spec)}_{role}.png"
          plot_map(xy[keep], cats_k, f"{report.model_slug(spec)}: test split by {field}", out / rel, method)
          maps[(spec, field)] = rel
      timings[f"{spec}/geometry"] = time.time() - t0

    # ---- fine-tuning --------------------------------------------------------------------------------------
    if "finetune" in s["modes"]:
      from jaxemb.eval.finetune import FinetuneSettings, finetune
      enc = lazy.get()
      f = cfg.finetune
      fs = FinetuneSettings(lr=f.lr, head_lr=f.head_lr, weight_decay=f.weight_decay, warmup_frac=f.warmup_frac,
                            batch_size=f.batch_size, eval_batch_size=f.eval_batch_size, max_epochs=f.max_epochs,
                            eval_every=f.eval_every, patience=f.patience, freeze_layers=f.freeze_layers,
                            neftune_alpha=f.neftune_alpha, head_dropout=f.head_dropout,
                            max_length=cfg.max_length)
      try:
        from jaxemb.eval.finetune import frozen_subtrees
        frozen_subtrees(enc.config, fs.freeze_layers)
      except ValueError as e:
        raise EvalError(str(e)) from None
      token_ids = enc.tokenize(data.texts, cfg.max_length)
      pad_id = enc.tokenizer.pad_token_id if enc.tokenizer.pad_token_id is not None else enc.config.pad_token_id
      t0 = time.time()
      for shots in s["ft_shots"]:
        for seed in s["seeds"]:
          t1 = time.time()
          res = finetune(enc.params["encoder"], enc.config, token_ids, data.y_N, sample(shots, seed), va,
                         eval_idx, num_classes=n_classes, seed=seed, settings=fs, pad_id=pad_id)
          runs += _rows_for(data, spec, "finetune", shots, seed, res.probs_ExC, eval_idx,
                            {"n_train": int(len(sample(shots, seed))), "best_step": res.best_step,
                             "steps": res.steps_run, "seconds": round(time.time() - t1, 2)})
          log(f"  finetune shots={shots} seed={seed}: {res.steps_run} steps, best val macro-F1 "
              f"{res.best_val_f1:.3f} at step {res.best_step}, test macro-F1 {runs[-1]['macro_f1']:.3f} "
              f"({time.time() - t1:.1f}s)")
      timings[f"{spec}/finetune"] = time.time() - t0

  # ---- TF-IDF reference ---------------------------------------------------------------------------------
  if cfg.tfidf:
    from jaxemb.eval.tfidf import TfidfSettings, tfidf_logreg
    t0 = time.time()
    memo: dict[bytes, tuple] = {}  # seeds of "all" share one training set; LBFGS is deterministic
    for shots in s["shots"]:
      for seed in s["seeds"]:
        idx = sample(shots, seed)
        if idx.tobytes() not in memo:
          memo[idx.tobytes()] = tfidf_logreg(data.texts, data.y_N, idx, va, eval_idx, num_classes=n_classes,
                                             settings=TfidfSettings(c_grid=s["c_grid"]), seed=0)
        probs, info = memo[idx.tobytes()]
        runs += _rows_for(data, "tfidf", "tfidf", shots, seed, probs, eval_idx,
                          {"n_train": int(len(idx)), "C": info["C"]})
    timings["tfidf"] = time.time() - t0
    test_f1 = [r["macro_f1"] for r in runs if r["mode"] == "tfidf" and r["split"] == "test"]
    log(f"tfidf: {len(test_f1)} runs in {timings['tfidf']:.1f}s; test macro-F1 mean {np.mean(test_f1):.3f}")

  # ---- outputs ------------------------------------------------------------------------------------------
  dataset = {**data.info, "notes": data.notes}
  paths = report.write_outputs(out, dataset=dataset, runs=runs, geometry=geometry, config=cfg.to_dict(),
                               maps=maps, extra={"timings_s": {k: round(v, 3) for k, v in timings.items()},
                                                 "total_seconds": round(time.time() - t_start, 2)})
  for s_row in report.summarize(runs):
    log(f"  {report.model_slug(s_row['model']):>24} {s_row['mode']:>12} shots={str(s_row['shots']):>4}: "
        f"test macro-F1 {s_row['macro_f1']:.3f} ± {s_row['macro_f1_std']:.3f}")
  log(f"eval: wrote {', '.join(str(p) for p in paths.values())} in {time.time() - t_start:.1f}s")
  return {"paths": paths, "runs": runs, "geometry": geometry, "dataset": dataset, "timings": timings}


def run_cli(cfg, workdir: str | os.PathLike, run_fn: Callable = run, verbose: bool = False) -> int:
  """run() with expected failures (jaxemb.cli: EvalError is a UserError) turned into one stderr line and
  exit status 2."""
  return cli.run_main("eval.py", run_fn, cfg, workdir, verbose=verbose)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if flags.FLAGS.config is None or not flags.FLAGS.workdir:
    raise app.UsageError("--config and --workdir are required")
  verbose = flags.FLAGS.verbose or flags.FLAGS["verbosity"].present
  cli.quiet_library_logs(verbose)
  from jaxemb.eval.embed import use_every_cpu_core_as_a_device
  use_every_cpu_core_as_a_device()  # before anything starts jax's backends
  sys.exit(run_cli(flags.FLAGS.config, flags.FLAGS.workdir, verbose=verbose))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
