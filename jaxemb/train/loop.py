"""The training program behind `train.py`: read top to bottom, one banner per concern."""

from __future__ import annotations

import json
import math
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxemb.cli import UserError
from jaxemb.models.api import Encoder
from jaxemb import objectives
from jaxemb.resolve import checkpoint_steps
from jaxemb.train import checkpoint as ckpt
from jaxemb.train.workdir import WorkdirLock, truncate_metrics
from jaxemb.train.optim import make_optimizer


class NonFiniteLossError(UserError, RuntimeError):
  """The loss became NaN/Inf; the run stops and the last good checkpoint stays in place."""


class WorkdirMismatchError(UserError, ValueError):
  """A workdir that already holds a different run."""


@struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


# ============================================================================================ distributed
def maybe_initialize_distributed(cfg: ml_collections.ConfigDict) -> None:
  """jax.distributed.initialize() when configured. On a TPU VM no argument is needed; elsewhere
  coordinator_address / num_processes / process_id (e.g. two CPU processes on localhost for testing)."""
  d = cfg.distributed
  if not d.initialize:
    return
  kwargs = {}
  if d.coordinator_address:
    kwargs = dict(coordinator_address=d.coordinator_address, num_processes=int(d.num_processes),
                  process_id=int(d.process_id))
  jax.distributed.initialize(**kwargs)


def enable_compilation_cache(setting: str) -> None:
  if not setting:
    return
  if setting == "auto":
    from jaxemb.data import default_cache_dir
    setting = str(default_cache_dir() / "xla")
  jax.config.update("jax_compilation_cache_dir", setting)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


# ============================================================================================ input
def open_corpus(cfg: ml_collections.ConfigDict, tokenizer):
  """Prepared (tokenised, cached) corpus and the objective's batch iterator."""
  from jaxemb.data.corpus import Fields
  from jaxemb.data.prepare import prepare
  from jaxemb.data import spec as data_spec
  path = str(data_spec.corpus_path(cfg.data.path))
  objective = objectives.get(cfg.objective)
  fields = Fields(text=cfg.data.text_field, metadata=cfg.data.metadata_field or None,
                  label=cfg.data.label_field or None, group=cfg.data.group_field or None,
                  split=cfg.data.split_field or None, id=cfg.data.id_field or None)
  prep = partial(prepare, path, fields, tokenizer, cache_dir=cfg.data.cache_dir or None,
                 require=objective.requires, strict=cfg.data.strict, clean=cfg.data.clean,
                 **data_spec.split_kwargs(cfg.data))
  if jax.process_count() > 1:
    # Host 0 writes the cache, the others wait and then read it: no race on TFDS's final rename when the
    # hosts share a cache directory.
    from jax.experimental import multihost_utils
    if jax.process_index() == 0:
      prepared = prep()
    multihost_utils.sync_global_devices("jaxemb:prepared")
    if jax.process_index() != 0:
      prepared = prep()
  else:
    prepared = prep()
  exclude = tuple(s for s in cfg.data.exclude_splits.split(",") if s)
  common = dict(batch_size=cfg.batch_size, seed=cfg.seed, exclude_splits=exclude,
                process_index=jax.process_index(), process_count=jax.process_count())
  return path, prepared, objective.batches(cfg, prepared, common)


def pad_to(batch: dict[str, np.ndarray], lengths: dict[str, int]) -> dict[str, np.ndarray]:
  """Pads the sequence axis of the named arrays (ids with pad id 0 is harmless: the mask is 0 there)."""
  out = dict(batch)
  for k, length in lengths.items():
    a = out.get(k)
    if a is not None and a.shape[1] < length:
      out[k] = np.pad(a, ((0, 0), (0, length - a.shape[1])))
  return out


# ============================================================================================ model & loss
def make_loss_fn(cfg: ml_collections.ConfigDict, encoder: Encoder):
  """loss_fn(params, batch, rng) -> (loss, metrics) of the configured objective."""
  fn = objectives.get(cfg.objective).loss(cfg, encoder.config, jnp.dtype(cfg.model.dtype), bool(cfg.model.remat))

  def loss_fn(params, batch, rng):
    loss, metrics, _ = fn(params, batch, rng)
    return loss, metrics

  return loss_fn


def initial_params(cfg: ml_collections.ConfigDict, encoder: Encoder, batches=None) -> dict:
  params = {"encoder": encoder.params["encoder"], "mlm_head": encoder.params["mlm_head"],
            **objectives.get(cfg.objective).extra_params(cfg, encoder.config, batches)}
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)


# ============================================================================================ update step
def make_train_step(loss_fn, tx, schedule, accumulate: int):
  """One SPMD update over the global batch: the caller jits it with the batch sharded on "data" and the
  state replicated; gradients of a loss over the global batch are the data-parallel mean, and contrastive
  similarity matrices span every device (XLA inserts the all-gathers)."""

  def step(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = jax.tree.map(lambda p, u: p + u, state.params, updates)
    metrics = {**metrics, "loss": loss, "grad_norm": jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads))),
               "lr": schedule(state.step // accumulate)}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, rng=state.rng), metrics

  return step


def build_state_and_step(cfg, encoder: Encoder, batches, mesh: Mesh):
  """Initial TrainState, replicated over `mesh`, and the jitted update step: batch sharded on "data",
  state replicated and donated."""
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  accumulate = int(cfg.optim.accumulate)
  tx, schedule = make_optimizer(cfg.optim, cfg.total_steps)
  params = jax.device_put(initial_params(cfg, encoder, batches), replicated)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=jax.jit(tx.init, out_shardings=replicated)(params),
                     rng=jax.random.PRNGKey(cfg.seed))
  state = jax.device_put(state, replicated)
  step_fn = jax.jit(make_train_step(make_loss_fn(cfg, encoder), tx, schedule, accumulate),
                    in_shardings=(replicated, sharded), out_shardings=(replicated, replicated),
                    donate_argnums=(0,))
  return state, step_fn


# ============================================================================================ logging
class MetricsLog:
  """metrics.jsonl + TensorBoard events (tensorboardX: no TensorFlow), written by host 0 only."""

  def __init__(self, workdir: Path, enabled: bool):
    self.enabled = enabled
    self.writer = None
    if enabled:
      self.file = open(workdir / "metrics.jsonl", "a", buffering=1)
      try:
        from tensorboardX import SummaryWriter
        self.writer = SummaryWriter(str(workdir / "tb"))
      except ImportError:  # optional: metrics.jsonl is the record of truth
        logging.warning("tensorboardX not installed: no TensorBoard events")

  def write(self, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    self.file.write(json.dumps({"step": step, **metrics}) + "\n")
    if self.writer is not None:
      for k, v in metrics.items():
        self.writer.add_scalar(f"train/{k}", v, step)

  def close(self) -> None:
    if self.enabled:
      self.file.close()
      if self.writer is not None:
        self.writer.close()


# ============================================================================================ the loop
def train(cfg: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
  """Trains (or resumes) the configured objective in `workdir`. Returns a summary dict."""
  workdir = Path(workdir).expanduser().absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  with WorkdirLock(workdir, jax.process_index()):  # a second run on this workdir stops here, naming the holder
    return _train(cfg, workdir)


def _train(cfg: ml_collections.ConfigDict, workdir: Path) -> dict[str, Any]:
  is_host0 = jax.process_index() == 0
  _check_workdir(cfg, workdir, is_host0)
  saved = checkpoint_steps(workdir)
  if saved and saved[-1] >= int(cfg.total_steps) * int(cfg.optim.accumulate):
    _say(f"{workdir} is already at step {saved[-1]} (total_steps {cfg.total_steps}): nothing to train")
    return {"workdir": str(workdir), "steps": int(cfg.total_steps) * int(cfg.optim.accumulate),
            "start": saved[-1], "final": {}, "already_done": True}
  enable_compilation_cache(cfg.compilation_cache)

  # -- mesh: one "data" axis over every device of every host.
  mesh = Mesh(np.array(jax.devices()), ("data",))
  if cfg.batch_size % jax.device_count():
    raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of the device count {jax.device_count()}")
  sharded = NamedSharding(mesh, P("data"))

  # -- model and data.
  encoder = Encoder.from_pretrained(cfg.model.init, head_seed=cfg.model.head_seed)
  corpus_path, prepared, batches = open_corpus(cfg, encoder.tokenizer)
  if is_host0:
    _say(f"model {encoder}; corpus {corpus_path}: {prepared}")
    # How the corpus was split and what pre-training drops: the evaluator checks its test split against it.
    from jaxemb.data.spec import write_data_spec
    write_data_spec(workdir, prepared, cfg.data, batches)
    if not (workdir / "model" / "config.json").exists():
      encoder.save_pretrained(workdir / "model")  # tokenizer + config for the evaluator; weights = init

  # -- optimiser, state (replicated) and the jitted step.
  accumulate = int(cfg.optim.accumulate)
  state, step_fn = build_state_and_step(cfg, encoder, batches, mesh)

  # -- checkpoint: resume when the workdir has one.
  mngr = ckpt.manager(workdir, keep=cfg.checkpoint.keep)
  start = 0
  restored = ckpt.restore_latest(mngr, workdir, state.params,
                                 {"opt_state": state.opt_state, "step": state.step, "rng": state.rng},
                                 is_host0=is_host0)
  if restored is not None:
    start, p, t, data_state, _ = restored
    state = TrainState(step=t["step"], params=p, opt_state=t["opt_state"], rng=t["rng"])
    batches.set_state(data_state)
    if is_host0:
      _say(f"resumed from {workdir / 'checkpoints'} at step {start}")
  else:
    batches.set_state({"step": 0})

  pad_lengths = _pad_lengths(cfg)
  if is_host0:  # the steps after `start` are trained (and logged) again: each step once in metrics.jsonl
    truncate_metrics(workdir / "metrics.jsonl", start)
  log = MetricsLog(workdir, is_host0)
  total = int(cfg.total_steps) * accumulate
  bar = _progress(is_host0, start, total)
  meta = {"objective": cfg.objective, "model_init": str(cfg.model.init), "corpus": str(corpus_path)}
  pending = None  # (step, metrics on device): read after the next step is dispatched (no host sync per step)
  t_last, tokens_since = time.time(), 0
  last = {}
  try:
    for step in range(start, total):
      host_batch = next(batches)
      if pad_lengths:
        host_batch = pad_to(host_batch, pad_lengths)
      tokens = int(sum(v.sum() for k, v in host_batch.items() if k.endswith("mask"))) * jax.process_count()
      batch = {k: jax.make_array_from_process_local_data(sharded, v) for k, v in host_batch.items()}
      state, metrics = step_fn(state, batch)
      if pending is not None:
        last = _check(pending)
      pending = (step + 1, metrics)
      tokens_since += tokens
      done = step + 1
      save_now = done % cfg.checkpoint.every == 0 or done == total
      if save_now or done % cfg.log_every == 0 or done == total:
        last = _check(pending)
        pending = None
        now = time.time()
        last["tokens_per_sec"] = tokens_since / max(now - t_last, 1e-9)
        t_last, tokens_since = now, 0
        log.write(done, last)
        if bar is not None:
          bar.set_postfix(loss=f"{last['loss']:.4f}", tok_s=f"{last['tokens_per_sec']:.0f}")
      if save_now:
        _check_params(state.params, done)  # never save NaN/Inf weights
        ckpt.save(mngr, done, state.params,
                  {"opt_state": state.opt_state, "step": state.step, "rng": state.rng},
                  batches.get_state(), {**meta, "step": done})
      if bar is not None:
        bar.update(1)
        if step == start:
          _restart_eta(bar)  # the first step's time is mostly compilation: keep it out of the ETA
  finally:
    if bar is not None:
      bar.close()
    mngr.wait_until_finished()
    log.close()
  if pending is not None:
    last = _check(pending)
  if is_host0 and cfg.checkpoint.export_final:
    final = encoder.replace_params({"encoder": jax.tree.map(np.asarray, state.params["encoder"]),
                                    "mlm_head": jax.tree.map(np.asarray, state.params["mlm_head"])})
    final.save_pretrained(workdir / "model")
  mngr.close()
  return {"workdir": str(workdir), "steps": total, "start": start, "final": last}


def _say(msg: str) -> None:
  print(f"[jaxemb] {msg}", file=sys.stderr, flush=True)


_NONFINITE_ADVICE = ("the run stops here and the last good checkpoint stays in place. Lower config.optim.lr, "
                     "check the data, or try float32 compute.")


def _check(pending) -> dict[str, float]:
  """The step's metrics on the host; a NaN/Inf loss or gradient norm stops the run before any save."""
  step, metrics = pending
  values = {k: float(v) for k, v in jax.device_get(metrics).items()}
  if not math.isfinite(values["loss"]):
    raise NonFiniteLossError(f"non-finite loss {values['loss']} at step {step} ({values}); {_NONFINITE_ADVICE}")
  if not math.isfinite(values.get("grad_norm", 0.0)):
    raise NonFiniteLossError(f"non-finite gradient norm {values['grad_norm']} at step {step} (loss "
                             f"{values['loss']:.4f}; {values}); {_NONFINITE_ADVICE}")
  return values


@jax.jit
def _all_finite(params) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))


def _check_params(params, step: int) -> None:
  """Finite loss and gradients can still give Inf weights (an overflowing update): checked before a save."""
  if not bool(_all_finite(params)):
    raise NonFiniteLossError(f"non-finite parameters after step {step}; {_NONFINITE_ADVICE}")


def _pad_lengths(cfg) -> dict[str, int]:
  return objectives.get(cfg.objective).pad_lengths(cfg) if cfg.data.pad_to_max else {}


def _progress(enabled: bool, start: int, total: int):
  if not enabled:
    return None
  from tqdm import tqdm
  # smoothing=0: the ETA is the mean step time since _restart_eta, not an average that still weighs compilation
  return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True, smoothing=0)


def _restart_eta(bar) -> None:
  """Measures the rate (and so the ETA) from now on: called after the first step, whose time is compilation."""
  bar.initial = bar.n
  bar.start_t = bar.last_print_t = bar._time()


def _check_workdir(cfg, workdir: Path, is_host0: bool) -> None:
  """Rerunning the same command resumes; a workdir of a different run is refused rather than mixed."""
  path = workdir / "config.json"
  current = json.loads(cfg.to_json_best_effort())
  if path.exists():
    previous = json.loads(path.read_text())
    for key in ("objective",):
      if previous.get(key) != current.get(key):
        raise WorkdirMismatchError(f"{workdir} holds a {previous.get(key)!r} run; this config is "
                                   f"{current.get(key)!r}. Use another --workdir.")
    if previous.get("model", {}).get("init") != current["model"]["init"]:
      raise WorkdirMismatchError(f"{workdir} was initialised from {previous['model']['init']!r}, this config "
                                 f"from {current['model']['init']!r}. Use another --workdir.")
  if is_host0:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
