"""Orbax checkpoints of a training workdir: `DIR/checkpoints/<step>/{params,train,data,meta}`.

- params: the model parameters (what the evaluator and `Encoder.from_pretrained(DIR)` read, through
  `jaxemb.resolve.read_checkpoint_params`);
- train: optimiser state, step and rng;
- data: the batch iterator position (JSON), so a resumed run sees exactly the batches it would have seen;
- meta: step, objective and a few facts (JSON).
Orbax writes each step into a temporary folder and renames it when complete: a crash mid-save leaves the
previous step intact. The layout (folder, item names, manager options) is defined once, in jaxemb.resolve.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxemb.cli import UserError, say
from jaxemb.resolve import checkpoint_manager, checkpoint_steps, checksum, checksums, verify_checksums

# Where checkpoints that failed to restore are moved (kept for inspection, out of Orbax's sight), so that the
# resumed run can save those steps again.
UNREADABLE_DIR = "checkpoints_unreadable"


class CheckpointError(UserError):
  """No checkpoint of the workdir could be restored."""


def agreed_steps(workdir: str | Path, *, gather=None) -> list[int]:
  """`checkpoint_steps(workdir)`, checked to be the same on every host. Each host lists its own file system:
  with a workdir that is not shared (or not yet synced), hosts would resume from different steps, or some
  would start afresh, and the run would train on inconsistent states or hang in a collective. Raises
  CheckpointError naming what each host sees. `gather` (for tests) stands in for
  multihost_utils.process_allgather."""
  steps = checkpoint_steps(workdir)
  if gather is None:
    if jax.process_count() == 1:
      return steps
    from jax.experimental import multihost_utils
    gather = multihost_utils.process_allgather
  import numpy as np
  mine = np.array([len(steps), steps[-1] if steps else -1, sum(steps) % (2**31 - 1)], np.int32)
  seen = np.asarray(gather(mine)).reshape(-1, 3)
  if (seen != seen[0]).any():
    desc = "; ".join(f"host {i}: {n} checkpoints, latest {last}" for i, (n, last, _) in enumerate(seen.tolist()))
    raise CheckpointError(f"the hosts see different checkpoints in {Path(workdir) / 'checkpoints'} ({desc}): "
                          "the workdir must be one shared file system (e.g. a GCS bucket or NFS) for every host")
  return steps


def manager(workdir: str | Path, *, keep: int | None = 3, async_save: bool = True) -> ocp.CheckpointManager:
  """Saves happen when the loop says so (after it has checked the step's metrics), not on an interval."""
  return checkpoint_manager(workdir, keep=keep, async_save=async_save)


def save(mngr: ocp.CheckpointManager, step: int, params, train_state: dict, data_state: dict, meta: dict) -> None:
  """Saves one step; meta records checksums of the arrays (jaxemb.resolve.checksums), which restore() and
  the evaluator's reader verify."""
  meta = {**meta, "checksum": {"params": checksums(params), "train": checksum(train_state)}}
  mngr.save(step, args=ocp.args.Composite(
      params=ocp.args.StandardSave(params),
      train=ocp.args.StandardSave(train_state),
      data=ocp.args.JsonSave(data_state),
      meta=ocp.args.JsonSave(meta)), force=True)


def restore(mngr: ocp.CheckpointManager, step: int, params_like, train_like: dict):
  """Restores onto abstract targets (shapes, dtypes, shardings of `*_like`), giving back exact optax types.
  Raises CheckpointError when the arrays read back differ from what was saved (a damaged data file that
  TensorStore reads without complaint: its array chunks carry no checksum of their own)."""
  abstract = lambda tree: jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)  # noqa: E731
  out = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract(params_like)),
      train=ocp.args.StandardRestore(abstract(train_like)),
      data=ocp.args.JsonRestore(),
      meta=ocp.args.JsonRestore()))
  expected = (out["meta"] or {}).get("checksum", {})  # absent in checkpoints written before checksums
  bad = verify_checksums(out["params"], expected.get("params"))
  if "train" in expected and checksum(out["train"]) != expected["train"]:
    bad.append("train")
  if bad:
    raise CheckpointError(f"the arrays read back differ from those saved (checksum of {', '.join(bad)}): a "
                          "damaged file")
  return out["params"], out["train"], out["data"], out["meta"]


def restore_latest(mngr: ocp.CheckpointManager, workdir: str | Path, params_like, train_like: dict,
                   *, is_host0: bool = True):
  """Restores the newest checkpoint that restores: (step, params, train, data, meta), or None when the
  workdir has none. A checkpoint that fails (a damaged file, a foreign layout) is named in a warning and the
  next older one is tried; once one restores, the newer failed ones are moved to DIR/checkpoints_unreadable/
  so the run can save those steps again. Raises CheckpointError when none restores."""
  steps = sorted(mngr.all_steps(), reverse=True)
  failed: list[tuple[int, str]] = []
  for i, step in enumerate(steps):
    try:
      restored = restore(mngr, step, params_like, train_like)
    except Exception as e:  # TensorStore / Orbax raise many types for a damaged checkpoint
      why = f"{type(e).__name__}: {' '.join(str(e).split())[:240]}"
      failed.append((step, why))
      if is_host0:
        nxt = f"; trying step {steps[i + 1]}" if i + 1 < len(steps) else ""
        say(f"warning: the checkpoint at step {step} could not be restored ({why}){nxt}")
      continue
    if failed:
      _set_aside(mngr, Path(workdir), [s for s, _ in failed], is_host0)
    return (step, *restored)
  if failed:
    raise CheckpointError(
        f"none of the checkpoints in {Path(workdir) / 'checkpoints'} could be restored (steps "
        f"{', '.join(str(s) for s, _ in failed)}; step {failed[0][0]}: {failed[0][1]}). Use another --workdir, or "
        "move the checkpoints folder away to start over")
  return None


def _set_aside(mngr: ocp.CheckpointManager, workdir: Path, steps: list[int], is_host0: bool) -> None:
  if is_host0:
    dest = workdir / UNREADABLE_DIR
    dest.mkdir(exist_ok=True)
    for step in steps:
      target = dest / str(step)
      if target.exists():
        shutil.rmtree(target)
      shutil.move(str(workdir / "checkpoints" / str(step)), str(target))
      say(f"moved the unreadable checkpoint of step {step} to {target}")
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("jaxemb:checkpoints-set-aside")
  mngr.reload()
