"""The training config is the one place a setting's default lives (issue 20): no registered objective's batch
builder or loss function, and no adaptation lever, gives a default to a parameter that a config field sets.
A default there drifts from the config's unseen (`configs/simcse.py` said dropout positives while the builder's
default and the config's disagreed), so the walk below fails on any such default; it names the parameter and
the field."""

import dataclasses
import importlib
import inspect

from jaxemb import objectives
from jaxemb.data.batching import Batches
from jaxemb.train import levers as levers_lib
from jaxemb.train.config import base_config

# Parameters that are plumbing, not settings: which rows a host reads, what a caller wants returned.
PLUMBING = {"self", "prepared", "splits", "exclude_splits", "process_index", "process_count", "return_pooled",
            "params", "batch", "rng", "config", "tokenizer"}
# A signature name that reads a config field under another name.
ALIASES = {"packing": "data.mlm_packing", "remat": "model.remat", "attention": "model.attention",
           "dtype": "model.dtype", "gradcache_chunks": "gradcache.chunks", "gradcache_policy": "gradcache.policy"}


def _config_fields(objective: str) -> dict[str, str]:
  """{name: dotted field} of every leaf of the objective's training config."""
  out: dict[str, str] = {}

  def walk(node, prefix):
    for key, value in node.items():
      path = f"{prefix}{key}"
      if hasattr(value, "items"):
        walk(value, path + ".")
      else:
        out.setdefault(key, path)
  walk(base_config(objective), "")
  return out


def _shadowing_defaults(fn, fields: dict[str, str]) -> list[str]:
  bad = []
  for p in inspect.signature(fn).parameters.values():
    if p.name in PLUMBING or p.default is inspect.Parameter.empty:
      continue
    field = ALIASES.get(p.name) or fields.get(p.name)
    if field:
      bad.append(f"{getattr(fn, '__qualname__', fn)}({p.name}={p.default!r}) shadows config.{field}")
  return bad


def test_no_objective_signature_default_shadows_a_config_field():
  bad = []
  for name in objectives.available():
    module = importlib.import_module(f"jaxemb.objectives.{name}")
    assert objectives.get(name).name == name
    fields = _config_fields(name)
    builders = [v for v in vars(module).values()
                if inspect.isclass(v) and issubclass(v, Batches) and v is not Batches and v.__module__ == module.__name__]
    assert builders, f"objective {name!r} has no batch builder in its own module"
    for fn in [b.__init__ for b in builders] + [module.loss_fn]:
      bad += _shadowing_defaults(fn, fields)
  assert not bad, "\n".join(bad)


def test_no_lever_default_shadows_a_config_field():
  fields = _config_fields("mlm")
  names = {"frozen_embeddings": "freeze.embeddings", "frozen_layers": "freeze.layers", "warmup_steps":
           "mlm_head.warmup_steps", "l2sp": "toward_base.l2sp", "distill": "toward_base.distill",
           "accumulate": "optim.accumulate", "lora_scale": "lora.alpha"}
  bad = [f"Levers.{f.name}={f.default!r} shadows config.{names.get(f.name) or fields.get(f.name)}"
         for f in dataclasses.fields(levers_lib.Levers)
         if f.default is not dataclasses.MISSING and (f.name in names or f.name in fields)]
  assert not bad, "\n".join(bad)


def test_the_split_scheme_has_one_default():
  """The data side: the split seed and fractions are library parameters too (`prepare`, the split planner, the
  dataset report), so they keep defaults, but each names `splits.SPLIT_SEED / VAL_FRACTION / TEST_FRACTION`,
  which `data_config()` reads: a literal written anywhere else (there were nine) fails the source scan below,
  and `PrepareSettings`, the cache key's record, has no defaults at all."""
  import re
  from pathlib import Path

  from jaxemb.data import prepare, splits
  from jaxemb.data.__main__ import build_report
  from jaxemb.data.spec import data_config

  d = data_config()
  want = {"seed": splits.SPLIT_SEED, "split_seed": splits.SPLIT_SEED, "val_fraction": splits.VAL_FRACTION,
          "test_fraction": splits.TEST_FRACTION}
  assert (d.split_seed, d.val_fraction, d.test_fraction) == (0, 0.1, 0.2)  # the values themselves did not move
  for fn in (splits.assign_split, splits.SplitPlanner.__init__, splits.plan_splits, splits.split_documents,
             prepare.prepare, build_report):
    for name, p in inspect.signature(fn).parameters.items():
      if name in want:
        assert p.default == want[name], (fn.__qualname__, name, p.default)
  assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(prepare.PrepareSettings))
  literal = re.compile(r"(val_fraction|test_fraction|split_seed)\b[^=\n]*=\s*[0-9.]+|"
                       r"(val_fraction|test_fraction|split_seed)\"?,\s*[0-9.]+\)|"
                       r"--(val-fraction|test-fraction|split-seed)\".*default=[0-9.]+")
  root = Path(splits.__file__).parents[1]
  hits = [f"{p.relative_to(root)}:{i}: {line.strip()}" for p in sorted(root.rglob("*.py")) if p.name != "splits.py"
          for i, line in enumerate(p.read_text().splitlines(), 1) if literal.search(line)]
  assert not hits, "a split default written as a literal instead of splits.SPLIT_SEED / VAL_FRACTION / " \
                   "TEST_FRACTION:\n" + "\n".join(hits)
