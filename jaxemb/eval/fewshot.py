"""Few-shot training sets: N examples per class from the training pool, seeded.

Only the training pool is subsampled; validation and test are always used whole.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

Shots = Union[int, str]  # an int N, or "all"


def parse_shots(spec: str | Sequence[Shots]) -> list[Shots]:
  """"8,16,all" -> [8, 16, "all"]; rejects N < 1 and unknown words."""
  items = spec.split(",") if isinstance(spec, str) else list(spec)
  out: list[Shots] = []
  for item in items:
    item = str(item).strip().lower()
    if not item:
      continue
    if item == "all":
      out.append("all")
      continue
    try:
      n = int(item)
    except ValueError:
      raise ValueError(f"shots: {item!r} is neither a positive integer nor 'all'") from None
    if n < 1:
      raise ValueError(f"shots: {n} must be >= 1")
    out.append(n)
  if not out:
    raise ValueError("shots: empty list")
  return out


def sample_few_shot(labels_N: np.ndarray, shots: Shots, seed: int) -> np.ndarray:
  """Sorted indices into labels_N: `shots` per class, or all of a class that has fewer (or shots="all").

  The per-class order is a seeded permutation that does not depend on `shots`, so for a fixed seed the
  8-shot set is contained in the 16-shot set: learning curves then differ by the added data only.
  """
  labels_N = np.asarray(labels_N)
  rng = np.random.default_rng(seed)
  chosen = []
  for c in np.unique(labels_N):  # sorted, so the rng is consumed in a fixed order
    idx_c = np.flatnonzero(labels_N == c)
    perm_c = rng.permutation(idx_c)
    chosen.append(perm_c if shots == "all" else perm_c[:int(shots)])
  return np.sort(np.concatenate(chosen)) if chosen else np.zeros((0,), np.int64)

