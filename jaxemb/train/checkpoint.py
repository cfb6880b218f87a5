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

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxemb.resolve import checkpoint_manager


def manager(workdir: str | Path, *, keep: int | None = 3, async_save: bool = True) -> ocp.CheckpointManager:
  """Saves happen when the loop says so (after it has checked the step's metrics), not on an interval."""
  return checkpoint_manager(workdir, keep=keep, async_save=async_save)


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
