"""The training program behind `train.py`: read top to bottom, one banner per concern."""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxemb.cli import UserError, say
from jaxemb.models.api import Encoder
from jaxemb import objectives
from jaxemb.train import validation
from jaxemb.train.levers import Levers, add_adapters, final_encoder
from jaxemb.train.export import export, export_complete
from jaxemb.train import checkpoint as ckpt
from jaxemb.train.runtime import enable_compilation_cache
from jaxemb.train.workdir import MetricsLog, WorkdirLock, truncate_metrics
from jaxemb.train.optim import make_optimizer
from jaxemb.train.prefetch import Prefetch
from jaxemb.train.workdir import (WorkdirMismatchError, check_step_unit, check_workdir,  # noqa: F401 (re-exported)
                                  write_config)


class NonFiniteLossError(UserError, RuntimeError):
  """The loss became NaN/Inf; the run stops and the last good checkpoint stays in place."""


@struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


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
  common = dict(batch_size=cfg.batch_size, seed=cfg.seed, exclude_splits=validation.training_exclude_splits(cfg),
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
  """loss_fn(params, batch, rng, step=0, initial=None) -> (loss, metrics): the configured objective on the
  effective parameters (frozen parts, merged adapters) plus the penalties toward the initial encoder
  (train/levers.py); `initial` is that encoder's params, needed when `Levers.needs_initial`."""
  dtype = jnp.dtype(cfg.model.dtype)
  remat = cfg.model.remat_policy if cfg.model.remat else False  # a policy name when on (encoder.remat_policy)
  fn = objectives.get(cfg.objective).loss(cfg, encoder.config, dtype, remat)
  levers = Levers.from_config(cfg, encoder.config.num_layers)

  def loss_fn(params, batch, rng, step=0, initial=None):
    eff = levers.effective(params, jnp.asarray(step))
    loss, metrics, pooled = fn(eff, batch, rng)
    if levers.needs_initial:
      extra, extra_metrics = levers.penalties(eff, pooled, initial, config=encoder.config, dtype=dtype)
      metrics = {**metrics, **extra_metrics, "objective_loss": loss}
      loss = loss + extra
    return loss, metrics

  return loss_fn


def initial_params(cfg: ml_collections.ConfigDict, encoder: Encoder, batches=None) -> dict:
  head = encoder.params["mlm_head"]
  if cfg.mlm_head.bias_init == "unigram" and not encoder.head_loaded and batches is not None:
    head = {**head, "bias": unigram_log_frequencies(batches.prepared, batches.doc_indices, encoder.config.vocab_size)}
  params = {"encoder": encoder.params["encoder"], "mlm_head": head,
            **objectives.get(cfg.objective).extra_params(cfg, encoder.config, batches)}
  params = add_adapters(cfg, params)
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)


def unigram_log_frequencies(prepared, doc_indices: np.ndarray, vocab_size: int) -> np.ndarray:
  """log p(token) over the training documents, add-one smoothed, float32 [V]: the MLM decoder bias of a fresh
  head, so its first predictions are the corpus's unigram distribution rather than uniform (a uniform start
  sends large, uninformative gradients into the encoder)."""
  counts = np.ones(vocab_size, np.float64)
  for toks in prepared.tokens_many(doc_indices):
    counts += np.bincount(np.asarray(toks, np.int64), minlength=vocab_size)[:vocab_size]
  return np.log(counts / counts.sum()).astype(np.float32)


# ============================================================================================ update step
def make_train_step(loss_fn, tx, schedule, accumulate: int, update_scale=None):
  """One SPMD update over the global batch: the caller jits it with the batch sharded on "data" and the
  state replicated; gradients of a loss over the global batch are the data-parallel mean, and contrastive
  similarity matrices span every device (XLA inserts the all-gathers). `update_scale(params, step)` gives a
  per-leaf multiplier of the update (0 = frozen)."""

  def step(state: TrainState, batch, initial=None):
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng, state.step,
                                                                       initial)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    if update_scale is not None:
      updates = jax.tree.map(lambda u, m: u * m, updates, update_scale(state.params, state.step))
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads), "lr": schedule(state.step // accumulate)}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, rng=state.rng), metrics

  return step


def build_state_and_step(cfg, encoder: Encoder, batches, mesh: Mesh):
  """Initial TrainState, replicated over `mesh`, and the update step `step_fn(state, batch)`: jitted with the
  batch sharded on "data", the state replicated and donated. With levers toward the initial encoder (L2-SP, self-distillation)
  the initial encoder is a replicated argument of the jitted step, bound here."""
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  accumulate = int(cfg.optim.accumulate)
  tx, schedule = make_optimizer(cfg.optim, cfg.total_steps)
  params = jax.device_put(initial_params(cfg, encoder, batches), replicated)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=jax.jit(tx.init, out_shardings=replicated)(params),
                     rng=jax.random.PRNGKey(cfg.seed))
  state = jax.device_put(state, replicated)
  levers = Levers.from_config(cfg, encoder.config.num_layers)
  step = make_train_step(make_loss_fn(cfg, encoder), tx, schedule, accumulate,
                         levers.update_scale if levers.active else None)
  if not levers.needs_initial:
    step_fn = jax.jit(step, in_shardings=(replicated, sharded), out_shardings=(replicated, replicated),
                      donate_argnums=(0,))
    return state, step_fn
  initial = jax.device_put(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), encoder.params["encoder"]),
                          replicated)
  jitted = jax.jit(step, in_shardings=(replicated, sharded, replicated), out_shardings=(replicated, replicated),
                   donate_argnums=(0,))
  return state, _BoundStep(jitted, initial)


class _BoundStep:
  """A jitted step(state, batch, initial) called as step(state, batch), with `.lower` like the jitted one."""

  def __init__(self, jitted, initial):
    self.jitted, self.initial = jitted, initial

  def __call__(self, state, batch):
    return self.jitted(state, batch, self.initial)

  def lower(self, state, batch):
    return self.jitted.lower(state, batch, self.initial)


# ============================================================================================ the loop
def train(cfg: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
  """Trains (or resumes) the configured objective in `workdir`. Returns a summary dict."""
  workdir = Path(workdir).expanduser().absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  with WorkdirLock(workdir, jax.process_index()):  # a second run on this workdir stops here, naming the holder
    return _run(cfg, workdir)


def _run(cfg: ml_collections.ConfigDict, workdir: Path) -> dict[str, Any]:
  is_host0 = jax.process_index() == 0
  check_workdir(cfg, workdir, is_host0)
  saved = ckpt.agreed_steps(workdir)  # the same on every host, or a UserError
  # Every step number a user sees or sets (total_steps, checkpoint.every, log_every, validation.every, the
  # checkpoints' and metrics.jsonl's steps, the export's step) counts optimiser updates; the loop runs
  # `accumulate` micro-batches per update and acts only on update boundaries.
  accumulate = int(cfg.optim.accumulate)
  total = int(cfg.total_steps)
  if saved and saved[-1] >= total:
    if saved[-1] > total or not cfg.checkpoint.export_final or export_complete(workdir, total):
      say(f"{workdir} is already at step {saved[-1]} (total_steps {cfg.total_steps}): nothing to train")
      return {"workdir": str(workdir), "steps": total, "start": saved[-1], "final": {}, "already_done": True}
    say(f"{workdir} is at its last step {total} but its export is missing or incomplete: exporting it")
  enable_compilation_cache(cfg.compilation_cache)

  # -- mesh: one "data" axis over every device of every host.
  mesh = Mesh(np.array(jax.devices()), ("data",))
  if cfg.batch_size % jax.device_count():
    raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of the device count {jax.device_count()}")
  sharded = NamedSharding(mesh, P("data"))

  # -- model and data.
  encoder = Encoder.from_pretrained(cfg.model.init, head_seed=cfg.model.head_seed)
  corpus_path, prepared, batches = open_corpus(cfg, encoder.tokenizer)
  from jaxemb.data.spec import drop_counts
  if is_host0:
    say(f"model {encoder}; corpus {corpus_path}: {prepared}")
    # How the corpus was split and what pre-training drops: the evaluator checks its test split against it.
    from jaxemb.data.spec import write_data_spec
    write_data_spec(workdir, prepared, cfg.data, batches, exclude=validation.training_exclude_splits(cfg))
    write_config(cfg, workdir)  # after the data-spec check, so a refused resume leaves config.json as it was
    drops = drop_counts(prepared, batches)
    if any(drops.values()):
      say("documents not trained on: " + ", ".join(f"{k} {v}" for k, v in drops.items() if v))
    if not (workdir / "model" / "config.json").exists():
      encoder.save_pretrained(workdir / "model")  # tokenizer + config for the evaluator; weights = init

  # -- optimiser, state (replicated) and the jitted step.
  state, step_fn = build_state_and_step(cfg, encoder, batches, mesh)

  # -- checkpoint: resume when the workdir has one.
  mngr = ckpt.manager(workdir, keep=cfg.checkpoint.keep)
  start = 0
  restored = ckpt.restore_latest(mngr, workdir, state.params,
                                 {"opt_state": state.opt_state, "step": state.step, "rng": state.rng},
                                 is_host0=is_host0)
  if restored is not None:
    start, p, t, data_state, saved_meta = restored
    check_step_unit(saved_meta, accumulate, workdir)
    state = TrainState(step=t["step"], params=p, opt_state=t["opt_state"], rng=t["rng"])
    batches.set_state(data_state)
    if is_host0:
      say(f"resumed from {workdir / 'checkpoints'} at step {start}")
  else:
    batches.set_state({"step": 0})

  # -- validation scores (host 0) and the interpolation's other end: the initial encoder on the host.
  initial_encoder = jax.tree.map(np.asarray, encoder.params["encoder"])
  alphas = validation.parse_alphas(cfg.interpolate.alphas)
  every = int(cfg.validation.every)
  validator = None
  if is_host0 and (every > 0 or alphas):
    validator = validation.Validator(cfg, prepared, encoder.config, initial_encoder)
    if not validator.available:
      say("no validation documents: validation scores and the interpolation choice are off")
      validator = None
  best = None  # (validation.score_key score, step, host copy of the encoder) when validation.keep_best
  if is_host0 and cfg.validation.keep_best:
    if start:  # the best step before the resume point is still the best candidate
      best = validation.load_best(workdir, initial_encoder, start, validation.score_key(cfg))
    else:
      (workdir / validation.BEST_WEIGHTS).unlink(missing_ok=True)  # a previous run's record

  pad_lengths = _pad_lengths(cfg)
  if is_host0:  # the steps after `start` are trained (and logged) again: each step once in metrics.jsonl
    truncate_metrics(workdir / "metrics.jsonl", start if start else -1)  # a fresh start writes row 0 again
  log = MetricsLog(workdir, is_host0)
  if is_host0 and start == 0:  # row 0: what the run does not train on, by reason (kept by a resume)
    log.write(0, {f"drops/{k}": float(v) for k, v in drop_counts(prepared, batches).items()})
  bar = _progress(is_host0, start, total)
  meta = {"objective": cfg.objective, "model_init": str(cfg.model.init), "corpus": str(corpus_path),
          "step_unit": "update", "accumulate": accumulate}
  # (step, metrics on device) of the steps since the last log or save: read (and checked) only there, so the
  # host never waits for a step in between and the devices run ahead as far as the prefetched batches go.
  pending = []
  t_last, tokens_since = time.time(), 0
  last = {}
  feed = Prefetch(partial(_device_batch, batches, pad_lengths, sharded), int(cfg.data.prefetch))
  try:
    for micro in range(start * accumulate, total * accumulate):
      batch, tokens, data_state = next(feed)
      state, metrics = step_fn(state, batch)
      done, within = divmod(micro + 1, accumulate)  # optimiser updates done; micro-batches into the next one
      pending.append((done + (within > 0), metrics))
      tokens_since += tokens
      if within:
        continue
      save_now = done % cfg.checkpoint.every == 0 or done == total
      log_now = save_now or done % cfg.log_every == 0
      validate_now = validator is not None and every > 0 and (done % every == 0 or done == total)
      row = {}
      if (log_now or validate_now) and pending:  # checked before anything reads or keeps the weights
        last = _check_all(pending)
        pending = []
      if log_now:
        now = time.time()
        last["tokens_per_sec"] = tokens_since / max(now - t_last, 1e-9)
        t_last, tokens_since = now, 0
        row = last
      if validate_now:  # on its own schedule: a validation step need not be a log step
        enc_now = _host_tree(final_encoder(state.params, cfg))
        row.update(validator.score(enc_now))
        key = validation.score_key(cfg)
        if cfg.validation.keep_best and key in row and (best is None or row[key] > best[0]):
          best = (row[key], done, enc_now)
          validation.save_best(workdir, done, key, best[0], enc_now)
      if row:
        log.write(done, row)
      if log_now and bar is not None:
        bar.set_postfix(loss=f"{last['loss']:.4f}", tok_s=f"{last['tokens_per_sec']:.0f}")
      if save_now:
        _check_params(state.params, done)  # never save NaN/Inf weights
        ckpt.save(mngr, done, state.params,
                  {"opt_state": state.opt_state, "step": state.step, "rng": state.rng},
                  data_state, {**meta, "step": done})
      if bar is not None:
        bar.update(1)
        if done == start + 1:
          _restart_eta(bar)  # the first step's time is mostly compilation: keep it out of the ETA
  finally:
    feed.close()
    if bar is not None:
      bar.close()
    mngr.wait_until_finished()
    log.close()
  if pending:
    last = _check_all(pending)
  if is_host0 and cfg.checkpoint.export_final:
    export(cfg, workdir, encoder=encoder, trained=_host_tree(final_encoder(state.params, cfg)),
           mlm_head=_host_tree(state.params["mlm_head"]), initial_encoder=initial_encoder, best=best,
           validator=validator, alphas=alphas, total=total, excluded_splits=validation.training_exclude_splits(cfg),
           say=say)
  mngr.close()
  return {"workdir": str(workdir), "steps": total, "start": start, "final": last}


def _host_tree(tree) -> Any:
  """A replicated device pytree as host numpy arrays (each host holds a full copy)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x),
                      tree)


_NONFINITE_ADVICE = ("the run stops here and the last good checkpoint stays in place. Lower config.optim.lr, "
                     "check the data, or try float32 compute.")


def _device_batch(batches, pad_lengths: dict[str, int], sharded):
  """The next global batch on the devices, its real token count (all hosts) and the iterator's state after
  it (what a checkpoint of this step records). Runs in the prefetch thread."""
  host_batch = next(batches)
  data_state = batches.get_state()
  if pad_lengths:
    host_batch = pad_to(host_batch, pad_lengths)
  tokens = int(sum(v.sum() for k, v in host_batch.items() if k.endswith("mask"))) * jax.process_count()
  return {k: jax.make_array_from_process_local_data(sharded, v) for k, v in host_batch.items()}, tokens, data_state


def _check_all(pending) -> dict[str, float]:
  """`_check` of every (step, metrics) in order, in one device read; the last step's values."""
  values = jax.device_get([m for _, m in pending])
  for (step, _), v in zip(pending, values):
    last = _check((step, v))
  return last


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
