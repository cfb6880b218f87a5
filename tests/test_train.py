"""Training: each objective's :smoke config learns; SPMD steps equal single-device steps; resume is exact."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def _config(name: str, arg: str = "smoke"):
  sys.path.insert(0, str(REPO))
  import importlib.util
  spec = importlib.util.spec_from_file_location(f"cfg_{name}", REPO / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)


def _losses(workdir: Path) -> dict[int, float]:
  """step -> loss; a resumed run re-logs steps after its checkpoint, the last record wins."""
  out = {}
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    r = json.loads(line)
    if "loss" in r:  # row 0 holds the data drop counts, not a step
      out[r["step"]] = r["loss"]
  return out


@pytest.mark.parametrize("objective", ["mlm", "declutr", "metadata"])
def test_smoke_config_trains_and_loss_goes_down(objective, tmp_path):
  """The real :smoke config (all-MiniLM-L6-v2 on the quick-start corpus), a few more steps."""
  from jaxemb.train.loop import train
  cfg = _config(objective)
  cfg.total_steps = 16
  cfg.checkpoint.every = 8
  cfg.data.cache_dir = str(tmp_path / "cache") if objective == "mlm" else ""
  summary = train(cfg, tmp_path / "w")
  losses = [v for _, v in sorted(_losses(tmp_path / "w").items())]
  assert len(losses) == 16 and all(np.isfinite(losses))
  assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses
  records = [json.loads(l) for l in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
  for key in ("step", "loss", "lr", "grad_norm", "tokens_per_sec"):
    assert key in records[-1]
  # Row 0: what the run does not train on, by reason (the quick-start corpus has no bad rows).
  assert records[0]["step"] == 0 and all(k.startswith("drops/") for k in records[0] if k != "step")
  component = {"mlm": "mlm_loss", "declutr": "contrastive_loss", "metadata": "note_loss"}[objective]
  assert component in records[-1]
  # The workdir is a model the evaluator and Encoder.from_pretrained read.
  from jaxemb import Encoder
  enc = Encoder.from_pretrained(tmp_path / "w")
  assert enc.name.endswith("@16") and summary["steps"] == 16
  assert (tmp_path / "w" / "model" / "model.safetensors").exists()


_EQUIV = r"""
import json, sys
import numpy as np, jax
from jax.sharding import Mesh
sys.path.insert(0, {repo!r}); sys.path.insert(0, {repo!r} + "/tests")
from test_train import _config
from jaxemb import Encoder
from jaxemb.train.loop import build_state_and_step, open_corpus
assert jax.device_count() == 4
enc = Encoder.from_pretrained({model!r})
out = {{}}
for objective in ("mlm", "declutr", "metadata"):
  cfg = _config(objective)
  cfg.batch_size = 4
  if objective == "metadata":
    cfg.metadata.note_loss = "supcon"
  _, _, batches = open_corpus(cfg, enc.tokenizer)
  batch = batches.batch(3)
  res = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = Mesh(np.array(devices), ("data",))
    state, step = build_state_and_step(cfg, enc, batches, mesh)
    p0 = [np.array(x) for x in jax.tree.leaves(state.params)]  # copied: the step donates the state
    for _ in range(2):  # two steps: the second sees params updated by the first
      state, metrics = step(state, batch)
    leaves = [np.asarray(x) for x in jax.tree.leaves(state.params)]
    res.append((float(metrics["loss"]), leaves, p0))
  (l1, p1, p0), (l4, p4, _) = res
  out[objective] = {{"loss1": l1, "loss4": l4,
                    "max_param_diff": max(float(np.abs(a - b).max()) for a, b in zip(p1, p4)),
                    "max_update": max(float(np.abs(a - b).max()) for a, b in zip(p1, p0))}}
print("RESULT " + json.dumps(out))
"""


def test_four_device_step_equals_one_device_step(tiny_model_dir):
  """Same global batch on a 1-device and a 4-device mesh: same loss, same updated params, for every
  objective. NT-Xent and SupCon see the whole batch on 4 devices, so the negatives are global."""
  code = _EQUIV.format(repo=str(REPO), model=str(tiny_model_dir))
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
  r = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][0][7:])
  for objective, v in out.items():
    assert abs(v["loss1"] - v["loss4"]) < 1e-5 * max(1.0, abs(v["loss1"])), (objective, v)
    # Updates are ~lr (1e-4); a per-device loss or a mis-scaled gradient would differ by that much.
    assert v["max_update"] > 1e-5, (objective, v)
    assert v["max_param_diff"] < 1e-6, (objective, v)


def _train_cmd(workdir: Path, model_dir: Path, steps: int, *extra: str, objective: str = "mlm") -> list[str]:
  return [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / f"{objective}.py:smoke"),
          "--workdir", str(workdir), f"--config.model.init={model_dir}", f"--config.total_steps={steps}",
          "--config.checkpoint.every=4", "--config.checkpoint.keep=5", *extra]


def test_sigkill_then_rerun_resumes_exactly(tiny_model_dir, tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  steps = 16
  ref = tmp_path / "uninterrupted"
  subprocess.run(_train_cmd(ref, tiny_model_dir, steps), env=env, check=True, capture_output=True, cwd=REPO)
  run = tmp_path / "killed"
  p = subprocess.Popen(_train_cmd(run, tiny_model_dir, steps), env=env, cwd=REPO,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not (run / "checkpoints" / "8").exists() and p.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  p.send_signal(signal.SIGKILL)
  p.wait()
  assert (run / "checkpoints" / "8").exists(), "the run never reached its step-8 checkpoint"
  killed_at = max(_losses(run))
  assert killed_at < steps, "the run finished before it could be killed"
  subprocess.run(_train_cmd(run, tiny_model_dir, steps), env=env, check=True, capture_output=True, cwd=REPO)
  a, b = _losses(ref), _losses(run)
  assert sorted(a) == sorted(b) == list(range(1, steps + 1))
  for s in range(1, steps + 1):
    assert a[s] == pytest.approx(b[s], rel=1e-6, abs=1e-6), (s, a[s], b[s])


def test_nonfinite_loss_stops_with_clear_message(tiny_model_dir, tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  r = subprocess.run(_train_cmd(tmp_path / "w", tiny_model_dir, 12, "--config.optim.lr=1e12",
                                "--config.optim.clip_norm=0", "--config.optim.warmup_steps=0"),
                     env=env, capture_output=True, text=True, cwd=REPO)
  assert r.returncode == 2, r.stderr[-2000:]
  assert "non-finite loss" in r.stderr and "Traceback" not in r.stderr
  # No checkpoint at or after the failing step: whatever is there is from before it.
  import re
  bad = int(re.search(r"non-finite loss \S+ at step (\d+)", r.stderr).group(1))
  ckpts = tmp_path / "w" / "checkpoints"
  saved = [int(d.name) for d in ckpts.iterdir() if d.name.isdigit()] if ckpts.exists() else []
  assert all(s < bad for s in saved), (bad, saved)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.parametrize("objective", ["mlm", "declutr"])
def test_two_processes_equal_one_process_with_two_devices(tiny_model_dir, tmp_path, objective):
  """Multi-host: two CPU processes on a localhost coordinator, one device each, per-host data shards; the
  losses equal one process with two devices on the same global batch. Host 0 alone writes metrics.

  DeCLUTR exercises the length-split positives across hosts: each host sorts only its own rows, so the two
  layouts group the positives differently and `positive_index` must map them back to the same global order.
  The model's dropout is off for it: dropout masks follow array positions, which differ between the layouts."""
  if objective == "declutr":
    import shutil
    model = tmp_path / "no_dropout"
    shutil.copytree(tiny_model_dir, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(cfg))
    tiny_model_dir = model
  steps = 4
  port = _free_port()
  base_env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  two = tmp_path / "two_hosts"
  procs = []
  for pid in range(2):
    cmd = _train_cmd(two, tiny_model_dir, steps, "--config.distributed.initialize=True",
                     f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                     "--config.distributed.num_processes=2", f"--config.distributed.process_id={pid}",
                     objective=objective)
    procs.append(subprocess.Popen(cmd, env=base_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  one = tmp_path / "one_host"
  env2 = {**base_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  subprocess.run(_train_cmd(one, tiny_model_dir, steps, objective=objective), env=env2, check=True,
                 capture_output=True, cwd=REPO)
  a, b = _losses(two), _losses(one)
  assert sorted(a) == sorted(b) == list(range(1, steps + 1))
  for s in a:
    assert a[s] == pytest.approx(b[s], rel=1e-5), (s, a[s], b[s])
