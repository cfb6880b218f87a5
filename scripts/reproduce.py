"""Reproduce the paper's comparison on the open healthcare corpora in ../shared/data (issue 7).

For each corpus: pre-train all-MiniLM-L6-v2 with (1) nothing, (2) MLM, (3) DeCLUTR + MLM, (4) DeCLUTR
contrastive-only, (5) metadata + SupCon, (6) metadata + classification head, (7) MLM then DeCLUTR (staged);
then evaluate all of them together with eval.py (probe and fine-tune, few-shot, seeds, geometry).

  python scripts/reproduce.py --out runs/repro                       # everything (resumes where it stopped)
  python scripts/reproduce.py --out runs/repro --corpus mtsamples --stage pretrain
  python scripts/reproduce.py --out runs/repro --stage report          # docs/RESULTS.md from results.json
  python scripts/reproduce.py --out /tmp/s --smoke                     # tiny budgets, one corpus subset
  python scripts/reproduce.py --out runs/repro --corpus medquad --stage retrieval  # issue 22 (below)

Retrieval (issue 22, `--stage retrieval`, part of `all`) on the corpora with natural pairs (RETRIEVAL: MedQuAD
question -> answer, MTSamples description -> note): train the pairs objective on the training-split pairs
(configs/pairs.py), then eval.py --config configs/retrieval.py with the base, every pre-trained model of the
corpus that exists, and the pairs model; BM25 and the hybrids are rows of the same evaluation.

Every stage is a plain `train.py` / `eval.py` command (printed before it runs, and listed in RESULTS.md);
training resumes from its workdir and an evaluation whose results.json exists is skipped, so a long sweep
can span several sittings.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class Corpus:
  name: str
  file: str
  metadata_field: str
  label_field: str
  max_length: int          # MLM / metadata sequence length (tokens)
  max_span: int            # DeCLUTR span settings (method.md: long notes 256, short reports 16)
  min_span: int
  declutr_batch: int       # documents per DeCLUTR batch
  eval_max_docs: int       # 0 = whole corpus; a seeded subset keeps CPU evaluation in minutes
  eval_max_length: int
  modes: str               # evaluation modes of `--modes auto` (fine-tuning is CPU-hours on long notes)
  embed_dtype: str = "float32"  # frozen-encoder compute dtype for the probe's embeddings


CORPORA = {
    # Fine-tuning (every encoder weight, 3 seeds x 7 models) at 256 tokens is > 8 CPU-minutes per run on the
    # long MTSamples / MedQuAD texts; on the ~45-token FDA reports it is about a minute. `--modes
    # probe,finetune` forces it everywhere (on an accelerator, say).
    "mtsamples": Corpus("mtsamples", "mtsamples_notes.jsonl.gz", "note_type", "specialty", 128, 64, 8, 6, 0, 256,
                        "probe"),
    "fda": Corpus("fda", "fda_device_recalls.jsonl.gz", "medical_specialty", "cause_group", 64, 16, 8, 16, 4000, 128,
                  "probe,finetune"),
    # MedQuAD: a 2000-answer seeded subset (16 qtypes) embedded in bfloat16 — 4000 answers x 256 tokens x 7
    # models in float32 is ~40 CPU-minutes here; bf16 halves it (cosine >= 0.9999 to float32,
    # docs/PERFORMANCE.md) and is the same for every model compared.
    "medquad": Corpus("medquad", "medquad_answers.jsonl.gz", "source", "qtype", 128, 32, 8, 8, 2000, 256, "probe",
                      "bfloat16"),
}

# Pre-training budgets (optimizer steps) sized for a 2-core CPU: minutes per run, not hours.
BUDGET = {"mlm": 200, "declutr": 150, "metadata": 200}
SMOKE_BUDGET = {"mlm": 3, "declutr": 3, "metadata": 3}

MODELS = ("base", "mlm", "declutr", "declutr_only", "meta_supcon", "meta_classify", "mlm_declutr")


@dataclasses.dataclass(frozen=True)
class RetrievalTask:
  query_field: str
  pool: str                # "eval": validation + test documents (CPU-sized); "all" adds the training documents
  max_queries: int         # per split, seeded; 0 = all
  train_max_length: int    # document tokens in pairs training (the evaluation embeds eval_max_length)
  steps: int


RETRIEVAL = {"medquad": RetrievalTask("question", "eval", 500, 128, 120),
             "mtsamples": RetrievalTask("description", "eval", 0, 128, 80)}


def pairs_argv(c: Corpus, data_path: str, out: Path, smoke: bool, model_init: str) -> list[str]:
  t = RETRIEVAL[c.name]
  return ["train.py", "--config", "configs/pairs.py" + (":smoke" if smoke else ""), "--workdir", str(out / "pairs"),
          f"--config.model.init={model_init}", f"--config.data.path={data_path}", "--config.data.text_field=text",
          "--config.data.group_field=", "--config.data.split_field=split",
          "--config.data.exclude_splits=test,validation", f"--config.pairs.query_field={t.query_field}"] + (
      ["--config.freeze.layers=1"] if smoke else   # smoke models may have only 2 layers
      [f"--config.data.max_length={t.train_max_length}", f"--config.total_steps={t.steps}"])


def retrieval_argv(c: Corpus, data_path: str, out: Path, smoke: bool, base: str) -> list[str]:
  t = RETRIEVAL[c.name]
  models = [base] + [str(out / m) for m in MODELS[1:] if (out / m / "checkpoints").exists()] + [str(out / "pairs")]
  return ["eval.py", "--config", "configs/retrieval.py" + (":smoke" if smoke else ""), "--workdir",
          str(out / "retrieval"), f"--config.models={','.join(models)}", f"--config.data.path={data_path}",
          "--config.data.text_field=text", "--config.data.split_field=split", "--config.data.group_field=",
          f"--config.retrieval.query_field={t.query_field}", f"--config.retrieval.pool={t.pool}"] + (
      [] if smoke else [f"--config.retrieval.max_queries={t.max_queries}", f"--config.max_length={c.eval_max_length}"])


def train_runs(c: Corpus, data_path: str, out: Path, smoke: bool, model_init: str) -> list[tuple[str, list[str]]]:
  """(name, train.py argv) for the six pre-training runs, in dependency order."""
  budget = SMOKE_BUDGET if smoke else BUDGET
  data = [f"--config.data.path={data_path}", "--config.data.text_field=text",
          f"--config.data.metadata_field={c.metadata_field}", "--config.data.group_field=",
          "--config.data.split_field=split", "--config.data.exclude_splits=test,validation"]
  # Smoke overrides come last so they win over the per-run settings.
  small = ["--config.batch_size=4", "--config.data.pad_to_max=True", "--config.log_every=1",
           "--config.optim.warmup_steps=1"] if smoke else []

  def run(name, cfg, steps, *extra, init=model_init):
    argv = ["train.py", "--config", f"configs/{cfg}", "--workdir", str(out / name),
            f"--config.model.init={init}", f"--config.total_steps={steps}",
            f"--config.checkpoint.every={steps if smoke else max(steps // 2, 1)}", *data, *extra, *small]
    return name, argv

  # The original ran 100k MLM steps at lr 2e-5; in a budget of a few hundred steps the freshly initialised MLM
  # head (all-MiniLM-L6-v2 ships none) barely moves at 2e-5, so MLM-based runs use 1e-4.
  seq = [f"--config.data.max_length={c.max_length}", "--config.optim.lr=1e-4"]
  dec = [f"--config.declutr.max_span={c.max_span}", f"--config.declutr.min_span={c.min_span}",
         "--config.declutr.short_docs=shrink", f"--config.data.max_length={c.max_span + 2}"]
  if not smoke:
    dec.append(f"--config.batch_size={c.declutr_batch}")
  return [
      run("mlm", "mlm.py", budget["mlm"], *seq, "--config.optim.warmup_steps=20"),
      run("declutr", "declutr.py", budget["declutr"], *dec),
      run("declutr_only", "declutr.py", budget["declutr"], *dec, "--config.declutr.use_mlm=False"),
      run("meta_supcon", "metadata.py", budget["metadata"], *seq, "--config.metadata.note_loss=supcon",
          "--config.optim.warmup_steps=20"),
      run("meta_classify", "metadata.py", budget["metadata"], *seq, "--config.metadata.note_loss=classify",
          "--config.optim.warmup_steps=20"),
      run("mlm_declutr", "declutr.py", budget["declutr"], *dec, init=str(out / "mlm")),
  ]


def eval_argv(c: Corpus, data_path: str, out: Path, smoke: bool, base: str, modes: str = "auto") -> list[str]:
  models = ",".join([base] + [str(out / m) for m in MODELS[1:]])
  argv = ["eval.py", "--config", "configs/eval.py" + (":smoke" if smoke else ""), "--workdir", str(out / "eval"),
          f"--config.models={models}", f"--config.data.path={data_path}", "--config.data.text_field=text",
          f"--config.data.label_field={c.label_field}", f"--config.data.metadata_field={c.metadata_field}",
          "--config.data.split_field=split", "--config.data.group_field="]
  if smoke:
    return argv
  return argv + [f"--config.modes={c.modes if modes == 'auto' else modes}", "--config.shots=8,16,32,64,all",
                 "--config.seeds=0,1,2",
                 f"--config.max_length={c.eval_max_length}", f"--config.data.max_docs={c.eval_max_docs}",
                 f"--config.embed_dtype={c.embed_dtype}",
                 # Fine-tuning every encoder weight costs ~100x a probe on this CPU: one shot size.
                 "--config.finetune.shots=16", "--config.finetune.max_epochs=3",
                 "--config.finetune.patience=2",
                 # TF-IDF rows with and without balanced class weights (class sizes differ up to 60x)
                 "--config.tfidf_class_weight=none,balanced"]


def run(argv: list[str], log: Path) -> None:
  cmd = [sys.executable, *argv]
  print("$ python " + " ".join(argv), flush=True)
  log.parent.mkdir(parents=True, exist_ok=True)
  t = time.time()
  with open(log, "a") as f:
    r = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
  print(f"  -> exit {r.returncode} in {time.time() - t:.0f}s (log {log})", flush=True)
  if r.returncode:
    raise SystemExit(f"command failed (exit {r.returncode}); see {log}")


def smoke_subset(src: Path, dst: Path, n: int = 240) -> Path:
  """The first n documents of a corpus (both splits), for the pipeline's smoke test."""
  if not dst.exists():
    dst.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(src, "rt") as fin, gzip.open(dst, "wt") as fout:
      for i, line in enumerate(fin):
        if i >= n:
          break
        fout.write(line)
  return dst


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--out", required=True, help="folder for workdirs, evaluations and logs")
  ap.add_argument("--corpus", default="all", help="mtsamples, fda, medquad or all (comma-separated)")
  ap.add_argument("--stage", default="all", choices=["pretrain", "eval", "retrieval", "report", "all"])
  ap.add_argument("--smoke", action="store_true", help="tiny budgets on a 240-document MTSamples subset")
  ap.add_argument("--model", default="minilm", help="base model (HF folder or minilm)")
  ap.add_argument("--modes", default="auto",
                  help="evaluation modes: 'auto' (each corpus's CPU-sized default: fine-tuning on FDA only), "
                       "'probe', or 'probe,finetune'")
  ap.add_argument("--force-eval", action="store_true", help="re-run eval.py even if results.json exists")
  ap.add_argument("--results-md", default=str(REPO / "docs" / "RESULTS.md"))
  args = ap.parse_args(argv)
  out = Path(args.out).absolute()
  names = list(CORPORA) if args.corpus == "all" else args.corpus.split(",")
  if args.smoke:
    names = ["mtsamples"]
  for name in names:
    if name not in CORPORA:
      raise SystemExit(f"unknown corpus {name!r}; choose from {sorted(CORPORA)}")
    c = CORPORA[name]
    src = SHARED_DATA / c.file
    if not src.exists():
      raise SystemExit(f"{src}: corpus not found (../shared/data must sit beside the repository)")
    data_path = str(smoke_subset(src, out / "data" / c.file) if args.smoke else src)
    cdir = out / name
    if args.stage in ("pretrain", "all"):
      for run_name, argv_ in train_runs(c, data_path, cdir, args.smoke, args.model):
        done = cdir / run_name / "model" / "model.safetensors"
        ckpts = cdir / run_name / "checkpoints"
        if done.exists() and ckpts.exists() and _finished(cdir / run_name, argv_):
          print(f"[{name}/{run_name}] done, skipping")
          continue
        run(argv_, cdir / "logs" / f"{run_name}.log")
    if args.stage in ("eval", "all"):
      rj = cdir / "eval" / "results.json"
      if _eval_complete(rj) and not args.force_eval:
        print(f"[{name}/eval] results.json exists, skipping (--force-eval re-runs it)")
      else:
        if args.force_eval and rj.exists():
          rj.unlink()  # eval.py resumes from an existing results.json: without it, everything runs again
        argv_ = eval_argv(c, data_path, cdir, args.smoke, args.model, args.modes)
        run(argv_, cdir / "logs" / "eval.log")
        # the exact command behind results.json, for RESULTS.md
        (cdir / "eval" / "command.json").write_text(json.dumps(argv_))
    if args.stage in ("retrieval", "all") and name in RETRIEVAL:
      argv_ = pairs_argv(c, data_path, cdir, args.smoke, args.model)
      steps = 12 if args.smoke else RETRIEVAL[name].steps   # configs/pairs.py:smoke runs train.config.smoke's 12
      if (cdir / "pairs" / "checkpoints" / str(steps)).exists():
        print(f"[{name}/pairs] done, skipping")
      else:
        run(argv_, cdir / "logs" / "pairs.log")
      if _eval_complete(cdir / "retrieval" / "results.json") and not args.force_eval:
        print(f"[{name}/retrieval] results.json exists, skipping (--force-eval re-runs it)")
      else:
        argv_ = retrieval_argv(c, data_path, cdir, args.smoke, args.model)
        run(argv_, cdir / "logs" / "retrieval.log")   # resumes: finished (model, unit)s are read back
        (cdir / "retrieval" / "command.json").write_text(json.dumps(argv_))
  if args.stage in ("report", "all") and not args.smoke:
    from results_md import write_results_md  # beside this script
    write_results_md(out, Path(args.results_md), CORPORA, BUDGET, train_runs, eval_argv)


def _eval_complete(results_json: Path) -> bool:
  """eval.py writes results.json after every unit with "complete": false until its end (older files, from
  before that key, were written only when complete); an interrupted evaluation is run again and resumes."""
  if not results_json.exists():
    return False
  try:
    return json.loads(results_json.read_text()).get("complete", True) is not False
  except ValueError:
    return False


def _finished(workdir: Path, argv: list[str]) -> bool:
  steps = int(next(a.split("=")[1] for a in argv if a.startswith("--config.total_steps=")))
  return any(d.name == str(steps) for d in (workdir / "checkpoints").iterdir())


if __name__ == "__main__":
  sys.path.insert(0, str(Path(__file__).resolve().parent))
  main()
