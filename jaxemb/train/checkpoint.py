"""Orbax checkpoints of a training workdir: `DIR/checkpoints/<step>/{params,train,data,meta}`.

- params: the model parameters (what the evaluator and `Encoder.from_pretrained(DIR)` read);
- train: optimiser state, step and rng;
- data: the batch iterator position (JSON), so a resumed run sees exactly the batches it would have seen;
- meta: step, objective and a few facts (JSON).
Orbax writes each step into a temporary folder and renames it when complete: a crash mid-save leaves the
previous step intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def manager(workdir: str | Path, *, keep: int | None = 3, read_only: bool = False,
            async_save: bool = True) -> ocp.CheckpointManager:
  """Saves happen when the loop says so (after it has checked the step's loss), not on an interval."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=None if read_only else keep, save_interval_steps=0 if read_only else 1,
      create=not read_only, read_only=read_only,
      enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(Path(workdir).absolute() / "checkpoints", options=options,
                               item_names=("params", "train", "data", "meta"))


def save(mngr: ocp.CheckpointManager, step: int, params, train_state: dict, data_state: dict, meta: dict) -> None:
  mngr.save(step, args=ocp.args.Composite(
      params=ocp.args.StandardSave(params),
      train=ocp.args.StandardSave(train_state),
      data=ocp.args.JsonSave(data_state),
      meta=ocp.args.JsonSave(meta)), force=True)


def restore(mngr: ocp.CheckpointManager, step: int, params_like, train_like: dict):
  """Restores onto abstract targets (shapes, dtypes, shardings of `*_like`), giving back exact optax types."""
  abstract = lambda tree: jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)  # noqa: E731
  out = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract(params_like)),
      train=ocp.args.StandardRestore(abstract(train_like)),
      data=ocp.args.JsonRestore(),
      meta=ocp.args.JsonRestore()))
  return out["params"], out["train"], out["data"], out["meta"]


def load_encoder_params(workdir: str | Path, step: int | None, like: dict[str, Any]) -> tuple[dict, int]:
  """The encoder + MLM head parameters of a workdir's latest (or given) step, as numpy, host-only."""
  mngr = manager(workdir, read_only=True, async_save=False)
  steps = mngr.all_steps()
  if not steps:
    raise ValueError(f"{workdir}: training workdir has no complete checkpoint yet")
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise ValueError(f"{workdir}: no checkpoint at step {step}; available: {sorted(steps)}")
  target = {k: like[k] for k in ("encoder", "mlm_head")}
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), target)
  # Partial restore: the checkpoint may also hold a note head that an encoder has no use for.
  # Restored as host numpy arrays: the evaluator may run on another topology than training did.
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract)
  restored = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args, partial_restore=True)))["params"]
  mngr.close()
  return jax.tree.map(np.asarray, dict(restored)), int(step)
