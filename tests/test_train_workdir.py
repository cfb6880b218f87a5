"""A training workdir stays consistent: one run at a time, a damaged checkpoint falls back to an older one,
a finished run is not re-run, each step is logged once, and no NaN/Inf is ever saved."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from jaxemb.train.workdir import WorkdirLock, WorkdirLockedError, truncate_metrics

pytestmark = pytest.mark.slow


def _config(tiny_model_dir, total_steps: int, every: int = 4):
  import importlib.util
  spec = importlib.util.spec_from_file_location("cfg_mlm_workdir", REPO / "configs" / "mlm.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config("smoke")
  cfg.model.init = str(tiny_model_dir)
  cfg.total_steps = total_steps
  cfg.checkpoint.every = every
  cfg.checkpoint.keep = 5
  return cfg


def _steps_logged(workdir: Path) -> list[int]:
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [r["step"] for r in rows if "loss" in r]  # row 0 holds the data drop counts


def _saved(workdir: Path) -> list[int]:
  return sorted(int(d.name) for d in (workdir / "checkpoints").iterdir() if d.name.isdigit())


def _flip_a_byte(step_dir: Path) -> None:
  """One byte changed in the middle of the largest params data file: TensorStore reads it without error."""
  f = max((step_dir / "params" / "ocdbt.process_0" / "d").iterdir(), key=lambda p: p.stat().st_size)
  b = bytearray(f.read_bytes())
  b[len(b) // 2] ^= 0xFF
  f.write_bytes(bytes(b))


# ---------------------------------------------------------------------------------------------------- lock
def test_lock_names_its_holder_and_takes_over_a_dead_one(tmp_path, capsys):
  with WorkdirLock(tmp_path):
    with pytest.raises(WorkdirLockedError) as e:
      WorkdirLock(tmp_path).acquire()
    assert f"is in use by another training run (pid {os.getpid()} on host {socket.gethostname()}" in str(e.value)
  assert not (tmp_path / ".lock").exists()  # released: removed

  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x"}))
  lock = WorkdirLock(tmp_path).acquire()
  assert (f"taking over the stale lock {tmp_path / '.lock'} of pid {dead.pid} on host {socket.gethostname()} "
          "(no longer running)") in capsys.readouterr().err
  assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
  lock.release()


def test_a_second_run_on_a_workdir_in_use_stops_at_once(tiny_model_dir, tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / "mlm.py:smoke"),
         "--workdir", str(tmp_path / "w"), f"--config.model.init={tiny_model_dir}", "--config.total_steps=100000"]
  first = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 300
    while not (tmp_path / "w" / "metrics.jsonl").exists() and first.poll() is None and time.time() < deadline:
      time.sleep(0.1)
    assert first.poll() is None, "the first run ended early"
    t0 = time.time()
    second = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr[-2000:]
    assert second.stderr.strip().splitlines() == [
        f"train.py: error: {tmp_path / 'w'} is in use by another training run (pid {first.pid} on host "
        f"{socket.gethostname()}, since "
        + re.search(r"since (\S+)\)", second.stderr).group(1)
        + "); wait for it to finish or use another --workdir"]
    assert time.time() - t0 < 60  # refused before loading a model or a corpus
    assert first.poll() is None  # the first run goes on
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()


# ---------------------------------------------------------------------------------------------------- resume
def test_damaged_latest_checkpoint_falls_back_and_each_step_is_logged_once(tiny_model_dir, tmp_path, capsys):
  from jaxemb.train.checkpoint import CheckpointError
  from jaxemb.train.loop import train
  w = tmp_path / "w"
  train(_config(tiny_model_dir, 8), w)
  assert _saved(w) == [4, 8] and _steps_logged(w) == list(range(1, 9))
  _flip_a_byte(w / "checkpoints" / "8")
  # The evaluator's reader verifies the same checksums: one clear error naming the step and the others.
  from jaxemb import Encoder
  from jaxemb.resolve import ModelSpecError
  with pytest.raises(ModelSpecError, match=r"@8: the checkpoint could not be read \(ValueError: the arrays read "
                     r"back differ from those saved \(checksum of params/encoder\).*; other steps: 4$"):
    Encoder.from_pretrained(f"{w}@8")
  assert Encoder.from_pretrained(f"{w}@4").name == f"{w}@4"
  capsys.readouterr()

  summary = train(_config(tiny_model_dir, 12), w)
  err = capsys.readouterr().err
  assert ("warning: the checkpoint at step 8 could not be restored (CheckpointError: the arrays read back differ "
          "from those saved (checksum of encoder): a damaged file); trying step 4") in err
  assert f"resumed from {w / 'checkpoints'} at step 4" in err
  assert (summary["start"], summary["steps"]) == (4, 12)
  assert _saved(w) == [4, 8, 12] and (w / "checkpoints_unreadable" / "8").is_dir()
  assert _steps_logged(w) == list(range(1, 13))  # steps 5-8 once, from the resumed run

  # Nothing restores: one clear error naming the steps, and nothing is moved.
  for step in (4, 8, 12):
    _flip_a_byte(w / "checkpoints" / str(step))
  with pytest.raises(CheckpointError, match=r"none of the checkpoints in .* could be restored \(steps 12, 8, 4; "):
    train(_config(tiny_model_dir, 16), w)
  assert _saved(w) == [4, 8, 12]


def test_a_run_already_at_total_steps_says_so(tiny_model_dir, tmp_path, capsys):
  from jaxemb.train.loop import train
  w = tmp_path / "w"
  train(_config(tiny_model_dir, 4), w)
  before = (w / "metrics.jsonl").read_text()
  capsys.readouterr()
  for total in (4, 2):
    summary = train(_config(tiny_model_dir, total), w)
    assert summary["already_done"] and summary["start"] == 4
    assert f"{w} is already at step 4 (total_steps {total}): nothing to train" in capsys.readouterr().err
  assert (w / "metrics.jsonl").read_text() == before and _saved(w) == [4]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  r = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / "mlm.py:smoke"),
                      "--workdir", str(w), f"--config.model.init={tiny_model_dir}", "--config.total_steps=3"],
                     env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0 and r.stdout == "", (r.stdout, r.stderr[-2000:])
  assert r.stderr.strip().splitlines() == [f"[jaxemb] {w} is already at step 4 (total_steps 3): nothing to train"]


def test_truncate_metrics_keeps_steps_up_to_the_resume_step(tmp_path):
  path = tmp_path / "metrics.jsonl"
  rows = [{"drops": {"short": 3}}] + [{"step": s, "loss": 1.0} for s in range(1, 7)]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 7, "lo')  # torn by a crash
  assert truncate_metrics(path, 4) == 3
  assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:5]
  assert truncate_metrics(path, 4) == 0


# ---------------------------------------------------------------------------------------------------- NaN guard
def test_nonfinite_gradients_stop_the_run_before_a_save(tiny_model_dir, tmp_path, monkeypatch):
  """A finite loss with an Inf gradient norm at step 3 stops the run; the checkpoint of step 2 is the last."""
  import jax.numpy as jnp
  from jaxemb.train import loop
  build = loop.build_state_and_step

  def with_inf_grads(*args, **kwargs):
    state, step_fn = build(*args, **kwargs)

    def step(state, batch):
      state, metrics = step_fn(state, batch)
      return state, {**metrics, "grad_norm": jnp.where(state.step >= 3, jnp.inf, metrics["grad_norm"])}
    return state, step

  monkeypatch.setattr(loop, "build_state_and_step", with_inf_grads)
  with pytest.raises(loop.NonFiniteLossError, match=r"non-finite gradient norm inf at step 3 \(loss \d"):
    loop.train(_config(tiny_model_dir, 8, every=2), tmp_path / "w")
  assert _saved(tmp_path / "w") == [2]


def test_nonfinite_parameters_are_never_saved():
  import jax.numpy as jnp
  from jaxemb.train.loop import NonFiniteLossError, _check_params
  params = {"a": jnp.ones(3), "b": {"c": jnp.array([1.0, np.inf])}}
  with pytest.raises(NonFiniteLossError, match="non-finite parameters after step 7"):
    _check_params(params, 7)
  _check_params({"a": jnp.ones(3)}, 7)


# ---------------------------------------------------------------------------------------------------- step units
def test_step_counts_are_optimiser_updates_under_accumulation(tiny_model_dir, tmp_path):
  """With optim.accumulate = 2, total_steps = 3 is 3 updates (6 micro-batches): checkpoints, metrics rows and the
  export are numbered by update, and a rerun from the update-2 checkpoint reaches the same update-3 metrics as the
  straight run (the data position and the accumulator are saved at an update boundary)."""
  import shutil

  from jaxemb.train.loop import train
  w = tmp_path / "w"
  cfg = _config(tiny_model_dir, 3, every=2)
  cfg.optim.accumulate = 2
  cfg.log_every = 1

  def rows():
    return {r["step"]: r for r in map(json.loads, (w / "metrics.jsonl").read_text().splitlines()) if "loss" in r}

  summary = train(cfg, w)
  assert summary["steps"] == 3 and _saved(w) == [2, 3] and _steps_logged(w) == [1, 2, 3]
  assert json.loads((w / "model" / "jaxemb_export.json").read_text())["last_step"] == 3
  straight = rows()
  # lr is the schedule at the update's index (smoke: warm-up over 2 updates, then linear decay to 0 at update 3):
  # lr(0) = 0, lr(1) = peak / 2, lr(2) = peak (warmup_linear_decay in jaxemb/train/optim.py).
  assert [straight[s]["lr"] for s in (1, 2, 3)] == pytest.approx([0.0, cfg.optim.lr / 2, cfg.optim.lr])

  shutil.rmtree(w / "checkpoints" / "3")  # as if the run had stopped after update 2
  assert train(cfg, w)["start"] == 2 and _saved(w) == [2, 3] and _steps_logged(w) == [1, 2, 3]
  for k in ("loss", "grad_norm", "lr"):
    assert rows()[3][k] == pytest.approx(straight[3][k], rel=1e-6), k


def test_checkpoints_numbered_by_micro_batch_are_refused_under_accumulation(tiny_model_dir, tmp_path):
  """A checkpoint whose meta lacks step_unit counted micro-batches: resuming it with accumulate > 1 would start
  at the wrong update, so the run stops with the way out."""
  from jaxemb.train.loop import WorkdirMismatchError, train
  w = tmp_path / "w"
  c = _config(tiny_model_dir, 2, every=2)
  c.optim.accumulate = 2
  train(c, w)
  meta_files = [p for p in (w / "checkpoints" / "2" / "meta").rglob("*") if p.is_file()]
  for p in meta_files:
    try:
      meta = json.loads(p.read_text())
    except (UnicodeDecodeError, ValueError):
      continue
    if isinstance(meta, dict) and "step_unit" in meta:
      del meta["step_unit"]
      p.write_text(json.dumps(meta))
      break
  else:
    raise AssertionError(f"no meta JSON with step_unit among {meta_files}")
  c.total_steps = 4
  with pytest.raises(WorkdirMismatchError, match=r"number micro-batches, and this run accumulates 2 of them"):
    train(c, w)
