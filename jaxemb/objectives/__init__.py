"""Training objectives as registered units: `get(name)` -> an `Objective`.

An objective is one module `jaxemb/objectives/<name>.py` that defines `OBJECTIVE = Objective(...)`: its
config block, its batch builder (which owns its padded shapes), its loss and any extra parameters. The
training loop only talks to this interface, so adding an objective is a new module plus a config file
(`configs/<name>.py` with `base_config("<name>")`); see docs/ARCHITECTURE.md "To add an objective".
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable

import ml_collections

# Modules of this package that are maths shared by objectives, not objectives.
_NOT_OBJECTIVES = frozenset({"losses", "cached"})


@dataclasses.dataclass(frozen=True)
class Objective:
  """What the training loop needs of an objective.

  name: the value of `config.objective`.
  defaults: () -> the objective's own config block, attached as `config.<name>` by `base_config(name)`.
  batches: (cfg, prepared, common) -> the host batch iterator (get_state / set_state / __next__);
    `common` holds batch_size, seed, exclude_splits, process_index, process_count.
  loss: (cfg, encoder_config, dtype, remat) -> loss_fn(params, batch, rng) -> (loss, metrics, pooled), where
    pooled = (embeddings_NxD, ids_NxL, mask_NxL) of the rows whose embeddings the objective computed (what
    the self-distillation toward the initial encoder compares), or None.
  pad_lengths: cfg -> {batch key: length} to pad every batch to (config.data.pad_to_max: one compiled shape).
  extra_params: (cfg, encoder_config, batches) -> parameters beside "encoder" and "mlm_head" (e.g. a head).
  requires: corpus fields every document must have ("metadata").
  uses_mlm_head: cfg -> whether the loss reads params["mlm_head"]; when not, the levers freeze the head
    (train/levers.py), so weight decay does not shrink it and the export carries it unchanged.
  """
  name: str
  defaults: Callable[[], ml_collections.ConfigDict]
  batches: Callable[[ml_collections.ConfigDict, Any, dict], Any]
  loss: Callable[..., Callable]
  pad_lengths: Callable[[ml_collections.ConfigDict], dict[str, int]]
  extra_params: Callable[[ml_collections.ConfigDict, Any, Any], dict] = lambda cfg, config, batches: {}
  requires: tuple[str, ...] = ()
  uses_mlm_head: Callable[[ml_collections.ConfigDict], bool] = lambda cfg: True


def available() -> list[str]:
  """Names of the objective modules in this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith("_") and m.name not in _NOT_OBJECTIVES)


def get(name: str) -> Objective:
  """The objective registered by module `jaxemb.objectives.<name>`; ValueError naming the choices."""
  if name not in available():
    raise ValueError(f"config.objective: unknown objective {name!r}; available: {', '.join(available())}")
  module = importlib.import_module(f"{__name__}.{name}")
  obj = getattr(module, "OBJECTIVE", None)
  if not isinstance(obj, Objective) or obj.name != name:
    raise ValueError(f"jaxemb/objectives/{name}.py defines no OBJECTIVE named {name!r}")
  return obj
