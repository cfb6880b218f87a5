"""The evaluator: compares encoders on a labelled corpus (frozen probe, fine-tuning, TF-IDF reference),
measures their embedding geometry, and gives each model a verdict against the first (the base).

  python eval.py --config configs/eval.py --workdir OUT
  python eval.py --config configs/eval.py:smoke --workdir /tmp/smoke --config.models=minilm,runs/declutr@300
  python eval.py --config configs/eval.py --workdir OUT --config.models=minilm,minilm#window=128#pooling=mean

A model entry `SPEC#key=value#...` (keys window, stride, pooling, max_windows) overrides config.embed for that
entry, so one evaluation compares embeddings of the same encoder side by side, with the paired verdict against
the first entry; results.json `chosen_embedding` (and the report) names, per model listed more than once, the
entry with the best validation macro-F1.

Writes OUT/results.json (dataset / runs / geometry / verdict / failed), OUT/results.csv (one row per run and
split), OUT/report.md (the verdict first) with OUT/fewshot_macro_f1.png and OUT/maps/*.png, and caches
embeddings in OUT/cache (or config.embed.cache_dir), so a rerun with other heads or shots does not re-embed. To
only write a corpus's embeddings, use `python -m jaxemb.eval.embed` (see its docstring).

This file is the driver: the evaluators are plug-ins (jaxemb/eval/evaluators/), each built from the config
and run unit by unit (model x mode) for each model. results.json is rewritten after every unit
("complete": false until the end), and rerunning the same command resumes after the last finished unit
(jaxemb/eval/resume.py). Every (shots, seed) few-shot sample is drawn once and shared by all evaluators and
models, so rows of one seed differ only by the method and the model. Expected failures (bad path, unknown
field, too few classes) print one line `eval.py: error: ...` and exit with status 2.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from jaxemb import cli  # noqa: E402

cli.set_environment_defaults()  # before absl / jax / transformers are imported

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxemb.eval import evaluators  # noqa: E402
from jaxemb.eval.dataset import EvalError, load_eval_data  # noqa: E402


def _define_flags() -> None:
  # Only when run as a script: importing eval.py (tests call run() in-process) then defines no absl flags
  # that could collide with train.py's --config in the same process.
  config_flags.DEFINE_config_file("config", None, "Evaluation config file (configs/eval.py[:smoke]).")
  flags.DEFINE_string("workdir", None, "Output directory (results, report, plots, cache).")
  flags.DEFINE_bool("verbose", False, "Show library logs (Orbax, TFDS, jax) and error tracebacks.")


def log(msg: str) -> None:
  print(msg, flush=True)


def check_model(spec: str) -> None:
  """Fail fast (before any embedding work) on a model that cannot load: jaxemb.resolve raises a one-line
  ModelSpecError (a UserError) naming the spec, e.g. a step without a checkpoint and the steps that have one."""
  from jaxemb.resolve import resolve
  resolve(spec)


def check_data_specs(models: list[str], data) -> list[str]:
  """Stops (DataSpecMismatchError, a UserError) when a workdir model's pre-training could have seen a test
  document: its recorded split (WORKDIR/data_spec.json) against this evaluation's
  (jaxemb.data.spec.check_compatible). An HF folder or "minilm" records no split and is not checked.

  Returns the models whose pre-training read this corpus's validation documents. The evaluation chooses on the
  validation split (the heads' early stopping, a hybrid's fusion weight, the chosen embedding), so its choices
  for those models were made on text they trained on; the log and the report say so."""
  from jaxemb.data.spec import check_compatible, read_data_spec
  from jaxemb.resolve import resolve
  saw_validation = []
  for spec in models:
    model = resolve(spec)
    recorded = None
    if model.kind == "workdir":
      recorded = read_data_spec(model.workdir)
    elif Path(spec).expanduser().name == "model" and read_data_spec(Path(spec).expanduser().parent) is not None:
      recorded = read_data_spec(Path(spec).expanduser().parent)  # WORKDIR/model: a training run's export
    if recorded is not None:
      note = check_compatible(recorded, data, model=spec)
      if note:
        log(f"data: {note}")
      elif "validation" not in recorded["exclude_splits"]:
        saw_validation.append(spec)
        log(f"data: warning: model {spec!r} was pre-trained on this corpus's validation documents "
            f"(data.exclude_splits={','.join(recorded['exclude_splits'])!r}), on which this evaluation chooses; "
            "pre-train with data.exclude_splits=test,validation for choices it has not seen")
  return saw_validation


def _write_cards(verdict: list[dict[str, Any]], corpus: str, plan) -> None:
  """The verdict into the model card of each evaluated model exported by jaxemb training (WORKDIR/model),
  with the embedding each row was evaluated with and how to reproduce it (models/card.py); other folders'
  cards are not ours to edit."""
  from jaxemb.models.card import verdict_markdown, write_verdict
  verdict = [v for v in verdict if v.get("metric", "macro_f1") == "macro_f1"]  # the card's table: classification
  for folder in dict.fromkeys(plan.model_spec(v["model"]) for v in verdict):
    rows = [{**v, "embedding": plan.embedding_label(v["model"], v["mode"]),
             "windowing": plan.embeddings.get(v["model"])} for v in verdict if plan.model_spec(v["model"]) == folder]
    path = Path(folder).expanduser()
    if path.is_dir() and write_verdict(path, verdict_markdown(rows, corpus, plan.max_length)):
      log(f"eval: verdict written into {path / 'README.md'}")


def run(cfg, workdir: str | os.PathLike) -> dict[str, Any]:
  """Runs (or resumes) the evaluation described by `cfg` into `workdir`. Raises EvalError on expected
  failures. Returns the results.json document plus "paths" (the written files) and "timings"."""
  from jaxemb.eval import report
  from jaxemb.eval.cache import model_fingerprint, texts_digest
  from jaxemb.metrics.compare import chosen_on_validation, verdict_rows
  from jaxemb.eval.resume import ResultsStore, fingerprint_sha, resume_key
  from jaxemb.train.runtime import enable_compilation_cache

  t_start = time.time()
  enable_compilation_cache(cfg.compilation_cache)
  out = Path(workdir).expanduser()
  if cfg.embed_dtype not in ("float32", "bfloat16"):
    raise EvalError(f"config.embed_dtype must be float32 or bfloat16; got {cfg.embed_dtype!r}")
  plan = evaluators.Plan.from_config(cfg)
  evals = evaluators.build(cfg, plan)   # every setting checked before any model loads
  model_specs = list(dict.fromkeys(plan.model_spec(m) for m in plan.models))  # without "#key=value" suffixes
  for spec in model_specs:
    check_model(spec)
  log(f"eval: {len(plan.models)} model(s) {plan.models}; evaluators {[e.name for e in evals]}"
      + (f"; shots {plan.shots}; seeds {plan.seeds}" if any(e.needs_labels for e in evals) else ""))

  # The labelled corpus only when an evaluator reads it (retrieval reads its own queries and documents).
  data = load_eval_data(cfg.data) if any(ev.needs_labels for ev in evals) else None
  dataset: dict[str, Any] = {}
  saw_validation: list[str] = []
  if data is not None:
    for note in data.notes:
      log(f"data: {note}")
    sizes = data.info["split_sizes"]
    log(f"data: {len(data.class_names)} classes; train {sizes['train']}, validation {sizes['validation']}, "
        f"test {sizes['test']} ({data.info['split_source']})")
    saw_validation = check_data_specs(model_specs, data)
    dataset = {**data.info, "notes": data.notes}
  config = cfg.to_dict()
  ctx = evaluators.Context(cfg=cfg, plan=plan, data=data, out=out, log=log)
  for ev in evals:   # what each evaluator reads besides the labelled corpus, loaded once
    extra = ev.prepare(ctx)
    if extra:
      dataset[ev.name] = extra
      if extra.get("data_spec"):
        saw_validation += check_data_specs(model_specs, extra["data_spec"])
  store = ResultsStore(out, resume_key(config, report.json_safe(dataset),
                                       texts_digest(data.texts) if data is not None else ""), log)
  # After the resume key: a fact about the models, not the data, so older results.json files still resume.
  dataset["validation_trained_on"] = list(dict.fromkeys(saw_validation))

  # ---- every unit: (model, evaluator unit), the models' in config order, then the model-free ones ----------
  jobs = [(spec, ev, unit) for spec in plan.models for ev in evals if ev.per_model for unit in ev.units()]
  jobs += [(ev.name, ev, unit) for ev in evals if not ev.per_model for unit in ev.units()]
  order = [(spec, unit) for spec, _, unit in jobs]
  handles = {spec: evaluators.ModelHandle(spec, ctx) for spec in plan.models}
  fingerprints = {spec: fingerprint_sha(model_fingerprint(plan.model_spec(spec))) for spec in plan.models}

  def save(complete: bool, verdict=(), chosen=()) -> dict[str, Any]:
    """results.json after a unit (complete=False), every output at the end."""
    timings = {**store.timings, **{f"{s}/{k}": round(v, 3) for s, h in handles.items() for k, v in h.timings.items()}}
    doc = {"dataset": dataset, "config": config, **store.ordered(order), "verdict": list(verdict),
           "base": plan.models[0], "chosen_embedding": list(chosen), "complete": complete, "timings_s": timings,
           "total_seconds": round(time.time() - t_start, 2)}
    if not complete:
      report.write_json(store.path, doc)
      return doc
    return {**doc, "paths": report.write_outputs(out, doc)}

  current = None
  for spec, ev, unit in jobs:
    if spec != current:
      log(f"model {spec}" if ev.per_model else "model-free references")
      current = spec
    fp = fingerprints.get(spec, "")
    if store.done(spec, unit, fp):
      log(f"  {unit}: finished in an earlier run (results.json)")
      continue
    t0 = time.time()
    try:
      result = ev.run(unit, handles.get(spec), ctx)
    except FloatingPointError as e:  # e.g. NaN embeddings: this unit fails with its reason, the others run
      log(f"  {unit}: FAILED ({e})")
      result = evaluators.UnitResult(failed=[{"model": spec, "mode": unit, "shots": None, "seed": None,
                                              "reason": f"FloatingPointError: {e}"}])
    store.add(spec, unit, fp, result, time.time() - t0)
    save(complete=False)

  # ---- the verdict: each model against the base, from the test predictions --------------------------------
  verdict, chosen = [], []
  if data is not None:
    verdict = verdict_rows(store.test_predictions(order), data.y_N[data.split_idx["test"]], plan.models[0],
                           plan.models, num_classes=len(data.class_names), n_boot=cfg.verdict.n_boot,
                           seed=cfg.verdict.seed, level=cfg.verdict.level)
    chosen = chosen_on_validation(store.ordered(order)["runs"], plan)
  for ev in evals:   # verdicts over per-item scores (retrieval: per test query)
    verdict += ev.verdict_rows(store.test_scores(order))
  res = save(complete=True, verdict=verdict, chosen=chosen)
  _write_cards(verdict, str(cfg.data.path or "the quick-start corpus"), plan)
  for c in chosen:
    log(f"  validation chooses {c['chosen']} for {c['model']} {c['mode']} shots={c['shots']} "
        f"(validation macro-F1 {c['val_macro_f1'][c['chosen']]:.3f})")
  for row in report.summarize(res["runs"]):
    log(f"  {report.model_slug(row['model']):>24} {row['mode']:>12} shots={str(row['shots']):>4}: "
        f"test macro-F1 {row['macro_f1']:.3f} ± {row['macro_f1_std']:.3f}")
  for row in report.retrieval_summary(res["runs"]):
    log(f"  {report.model_slug(row['model']):>24} {row['mode']:>16}: test nDCG@10 {row['ndcg@10']:.3f}, "
        f"MRR@10 {row['mrr@10']:.3f}, R@10 {row['recall@10']:.3f}")
  for v in verdict:
    against = f" vs {report.model_slug(v['base'])}/{v['base_mode']}" if v.get("base_mode") else ""
    log(f"  verdict {report.model_slug(v['model'])} {v['mode']}{against} shots={v['shots']} {v['metric']}: "
        f"{v['diff']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}] {v['verdict']}")
  log(f"eval: wrote {', '.join(str(p) for p in res['paths'].values())} in {time.time() - t_start:.1f}s")
  return {**res, "timings": res["timings_s"]}


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
  app.run(main, flags_parser=cli.absl_flags_parser("eval.py"))
