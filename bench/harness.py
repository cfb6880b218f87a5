"""What the benchmark drivers share: the two-process A/B harness, analytic FLOPs, machine facts, tables.

Each framework runs in its own worker process (bench/worker.py), started with its own interpreter: jaxemb's
venv needs no torch, and the PyTorch reference runs in a venv with torch (bench/requirements.txt). Separate
processes also give each framework its own RSS high-water mark (`ru_maxrss`). The driver sends one JSON
command per line on the worker's stdin and reads one JSON reply per line; the workers take turns, so only
one computes at a time and the order alternates between repetitions (A B, B A, A B, ...).

This module imports neither jax nor torch.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "worker.py"
MTSAMPLES = REPO.parent / "shared" / "data" / "mtsamples_notes.jsonl.gz"
TORCH_PYTHON_ENV = "JAXEMB_BENCH_TORCH_PYTHON"


# ============================================================================================ interpreters
def torch_python(flag: str | None) -> str:
  """Interpreter for the PyTorch worker: --torch-python, else $JAXEMB_BENCH_TORCH_PYTHON, else this one if it
  has torch."""
  exe = flag or os.environ.get(TORCH_PYTHON_ENV)
  if exe:
    return exe
  if importlib.util.find_spec("torch") is not None:
    return sys.executable
  raise SystemExit(
      "no PyTorch interpreter: this python has no torch. Make a torch venv (bench/requirements.txt) and pass "
      f"--torch-python /path/to/torch-venv/bin/python (or set {TORCH_PYTHON_ENV}).")


# ============================================================================================ workers
class WorkerError(RuntimeError):
  pass


class Worker:
  """One framework's process. `call(cmd, **kw)` -> the reply dict (raises WorkerError with the worker's
  traceback and stderr tail on failure). Every reply carries `rss_mb` (now) and `maxrss_mb` (high-water)."""

  def __init__(self, framework: str, python: str, *, quiet: bool = True, torch_threads: int | None = None,
               env: dict[str, str] | None = None):
    self.framework = framework
    self._log = tempfile.NamedTemporaryFile(prefix=f"jaxemb-bench-{framework}-", suffix=".log", delete=False)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1", **(env or {}))
    if torch_threads:
      env["JAXEMB_BENCH_TORCH_THREADS"] = str(torch_threads)
    self.proc = subprocess.Popen([python, str(WORKER), framework], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=self._log if quiet else None, text=True, cwd=str(REPO), env=env)

  def call(self, cmd: str, **kwargs) -> dict:
    self.proc.stdin.write(json.dumps({"cmd": cmd, **kwargs}) + "\n")
    self.proc.stdin.flush()
    line = self.proc.stdout.readline()
    if not line:
      raise WorkerError(f"{self.framework} worker died during {cmd!r}:\n{self.stderr_tail()}")
    reply = json.loads(line)
    if not reply.get("ok"):
      raise WorkerError(f"{self.framework} worker failed in {cmd!r}:\n{reply.get('error')}\n{self.stderr_tail()}")
    return reply

  def stderr_tail(self, n: int = 3000) -> str:
    try:
      return Path(self._log.name).read_text(errors="replace")[-n:]
    except OSError:
      return ""

  def close(self) -> None:
    if self.proc.poll() is None:
      try:
        self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)
      except (BrokenPipeError, subprocess.TimeoutExpired):
        self.proc.kill()
    try:
      os.unlink(self._log.name)
    except OSError:
      pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def interleave(runs: dict[str, callable], repeats: int, settle_s: float = 0.5
               ) -> tuple[dict[str, list[float]], list[float]]:
  """Calls each runner once per repetition, the order reversed every other repetition (A B, B A, ...).

  Each runner returns a list of per-step seconds. A pause of `settle_s` precedes every call: a worker's
  thread pool (OpenMP, Eigen) keeps spinning for a while after its turn, and on 2 cores that spin is charged
  to whoever runs next. Returns (name -> all seconds, load average (1 min) sampled before every repetition)."""
  names = list(runs)
  secs = {n: [] for n in names}
  loads = []
  for r in range(repeats):
    loads.append(os.getloadavg()[0])
    for n in (names if r % 2 == 0 else names[::-1]):
      time.sleep(settle_s)
      secs[n].extend(runs[n]())
  return secs, loads


# ============================================================================================ batches
def unsplit_positives(batch: dict) -> tuple:
  """positive_ids, positive_mask in anchor order, (N*P)xLp. jaxemb's length-split batches (positive_long_ids,
  positive_long_mask, positive_index; single host) are merged back and padded to the longer length, which is
  what a plain PyTorch loop does with one padded tensor of positives."""
  import numpy as np
  if "positive_index" not in batch:
    return batch["positive_ids"], batch["positive_mask"]
  groups = [(batch["positive_ids"], batch["positive_mask"]), (batch["positive_long_ids"], batch["positive_long_mask"])]
  length = max(ids.shape[1] for ids, _ in groups)
  ids_all = np.concatenate([np.pad(ids, ((0, 0), (0, length - ids.shape[1]))) for ids, _ in groups])
  mask_all = np.concatenate([np.pad(m, ((0, 0), (0, length - m.shape[1]))) for _, m in groups])
  return ids_all[batch["positive_index"]], mask_all[batch["positive_index"]]


# ============================================================================================ analytic FLOPs
def encoder_forward_flops(rows: int, length: int, model: dict) -> float:
  """Matmul FLOPs (2 per multiply-add) of a BERT encoder forward over `rows` sequences of padded `length`:
  Q/K/V/output projections, the FFN, and the two attention matmuls (QK^T, PV). Embedding lookups, LayerNorm,
  softmax, GELU and dropout are not counted (they are memory-bound, not FLOPs-bound)."""
  d, f, n_layers = model["hidden_size"], model["intermediate_size"], model["num_layers"]
  tokens = rows * length
  per_layer = 2 * tokens * (4 * d * d + 2 * d * f) + 2 * 2 * rows * length * length * d
  return float(n_layers * per_layer)


def mlm_head_flops(n_rows: int, model: dict) -> float:
  """LM head on n_rows hidden rows: dense D x D, then the tied decoder D x V."""
  d, v = model["hidden_size"], model["vocab_size"]
  return float(2 * n_rows * (d * d + d * v))


def train_step_flops(objective: str, shapes: dict[str, list[int]], model: dict, framework: str) -> float:
  """3 x forward FLOPs of one train step on a batch with the given array shapes. jaxemb runs the LM head on
  the M prediction slots of each row only; the HF reference (BertForMaskedLM) runs it on every position."""
  if objective == "declutr":
    n, la = shapes["anchor_ids"]
    npos, lp = shapes["positive_ids"]
    m = shapes["mlm_positions"][1]
    if "positive_long_ids" in shapes:
      # Length-split positives: jaxemb runs each half at its own length; the reference gets them back in one
      # array padded to the longer length (bench/torch_reference.unsplit_positives), as a plain loop pads.
      nlong, llong = shapes["positive_long_ids"]
      pos = (encoder_forward_flops(npos, lp, model) + encoder_forward_flops(nlong, llong, model)
             if framework == "jax" else encoder_forward_flops(npos + nlong, max(lp, llong), model))
    else:
      pos = encoder_forward_flops(npos, lp, model)
    fwd = encoder_forward_flops(n, la, model) + pos
    fwd += mlm_head_flops(n * (m if framework == "jax" else la), model)
  else:
    b, length = shapes["input_ids"]
    m = shapes["mlm_positions"][1]
    fwd = encoder_forward_flops(b, length, model) + mlm_head_flops(b * (m if framework == "jax" else length), model)
  return 3.0 * fwd


# ============================================================================================ facts and tables
def machine_info() -> dict:
  cpu = "unknown"
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "nproc": os.cpu_count(), "cpu": cpu,
          "platform": platform.platform(), "python": platform.python_version(),
          "loadavg": [round(x, 2) for x in os.getloadavg()]}


def median(xs: list[float]) -> float:
  return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float]) -> str:
  """'min-max' of a list of seconds, for showing the noise next to a median."""
  return f"{min(xs):.3f}-{max(xs):.3f}" if xs else "-"


def table(headers: list[str], rows: list[list]) -> str:
  """A GitHub markdown table (also readable on a terminal)."""
  def fmt(x):
    if isinstance(x, float):
      return f"{x:,.3f}" if abs(x) < 10 else f"{x:,.0f}"
    return str(x)
  cells = [[fmt(x) for x in r] for r in rows]
  widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
  line = lambda xs: "| " + " | ".join(x.ljust(w) for x, w in zip(xs, widths)) + " |"  # noqa: E731
  return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def default_cache_dir() -> Path:
  """Root for the bench's persistent XLA compilation cache and its prepared-corpus cache."""
  return Path(os.environ.get("JAXEMB_BENCH_CACHE", Path.home() / ".cache" / "jaxemb-bench"))
