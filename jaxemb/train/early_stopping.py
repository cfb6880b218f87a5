"""Early stopping on a validation score, shared by the probe heads (inside jit) and fine-tuning (on the host).

The rule: a validation macro-F1 above the best so far is an improvement; an equal F1 with a lower validation
loss is one too (a small validation set saturates F1 long before the head's margins are good, and "first
step with the best F1" would then keep a barely trained model). Patience counts evaluations without an
improvement. The caller keeps the parameters of the last improvement.

The state is a tuple of scalars updated with `xp.where`, so one definition serves numpy on the host and
jax.numpy inside `jax.lax.while_loop`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class EarlyStopping(NamedTuple):
  best_f1: Any    # float; -1 before the first evaluation
  best_loss: Any  # float; +inf before the first evaluation
  best_step: Any  # int: step whose parameters are kept
  bad: Any        # int: evaluations since the last improvement


def init(xp=np) -> EarlyStopping:
  if xp is np:  # host: Python scalars, so scores keep float64 (numpy 2 would cast them to a float32 state)
    return EarlyStopping(-1.0, np.inf, 0, 0)
  return EarlyStopping(xp.float32(-1.0), xp.float32(np.inf), xp.int32(0), xp.int32(0))  # jit carry types


def update(state: EarlyStopping, f1, loss, step, xp=np) -> tuple[EarlyStopping, Any]:
  """The state after an evaluation at `step`, and whether it improved (then keep this step's parameters)."""
  improved = (f1 > state.best_f1) | ((f1 == state.best_f1) & (loss < state.best_loss))
  return EarlyStopping(xp.where(improved, f1, state.best_f1), xp.where(improved, loss, state.best_loss),
                       xp.where(improved, step, state.best_step), xp.where(improved, 0, state.bad + 1)), improved


def exhausted(state: EarlyStopping, patience: int):
  """True once `patience` evaluations in a row brought no improvement."""
  return state.bad >= patience
