"""What the compiler is given: the dots of a lowered program, their operand dtypes and FLOPs.

Read from the HLO text of `jax.jit(f).lower(...)` before XLA's optimisations (the same program as XLA's
`*before_optimizations*` dump), so it says what an accelerator would be asked to run without one: the share
of dot FLOPs whose operands are in the compute dtype is the first number to check before a bf16 run (without
models/precision.py's custom VJP it is a third on mlm:smoke: the backward's dots would run at the f32 rate).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter

# `name = f32[8,64,384]{2,1,0} op(...)`: an instruction with an array result (tuple results are skipped).
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\w+)\[([\d,]*)\](?:\{[^}]*\})?\s+(\w[\w\-]*)\((.*)$")
_DIMS = re.compile(r"(lhs_contracting_dims)=\{([\d,]*)\}")


@dataclasses.dataclass(frozen=True)
class Dot:
  lhs_dtype: str
  rhs_dtype: str
  out_dtype: str
  flops: int  # 2 x output elements x contracted size (a multiply and an add per term)


def dots(hlo_text: str) -> list[Dot]:
  """Every `dot` instruction of an HLO module's text, with its operands' dtypes and its FLOPs."""
  shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
  found = []
  for line in hlo_text.splitlines():
    m = _INSTR.match(line)
    if not m:
      continue
    name, dtype, dims, op, rest = m.groups()
    shape = tuple(int(d) for d in dims.split(",") if d)
    shapes[name] = (dtype, shape)
    if op == "dot":
      found.append((shape, dtype, rest))
  out = []
  for shape, dtype, rest in found:
    operands = [o.strip().split(" ")[-1].lstrip("%") for o in rest.split(")")[0].split(",")[:2]]
    (lt, lshape), (rt, _) = shapes[operands[0]], shapes[operands[1]]
    contracting = _DIMS.search(rest)
    k = math.prod(lshape[int(i)] for i in contracting.group(2).split(",") if i) if contracting else 1
    out.append(Dot(lt, rt, dtype, 2 * math.prod(shape) * k))
  return out


def dtype_shares(hlo_text: str) -> dict[str, float]:
  """{"bf16 x bf16": share of dot FLOPs, ...} over the module's dots, plus "dots" (count) and "gflop"."""
  ds = dots(hlo_text)
  total = sum(d.flops for d in ds)
  by = Counter()
  for d in ds:
    by[f"{d.lhs_dtype} x {d.rhs_dtype}"] += d.flops
  shares = {k: v / max(total, 1) for k, v in sorted(by.items())}
  return {**shares, "dots": len(ds), "gflop": total / 1e9}
