"""Run plumbing shared by train.py and eval.py: jax.distributed before any other jax call, and the persistent
XLA compilation cache."""

from __future__ import annotations

import jax
import ml_collections


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


def declare_compilation_cache(c: ml_collections.ConfigDict) -> None:
  """`config.compilation_cache`, the one declaration the training and evaluation configs share: "auto" =
  $JAXEMB_CACHE_DIR/xla (default ~/.cache/jaxemb/xla), "" = off, else a folder. A resumed or repeated run with
  the same shapes (a staged DeCLUTR, a second evaluation) skips compiling."""
  c.compilation_cache = "auto"


def enable_compilation_cache(setting: str) -> None:
  """XLA's persistent compilation cache in `setting` ("auto" = $JAXEMB_CACHE_DIR/xla; "" = off): a resumed run, or
  a second run with the same shapes, skips compiling."""
  if not setting:
    return
  if setting == "auto":
    from jaxemb.data import default_cache_dir
    setting = str(default_cache_dir() / "xla")
  jax.config.update("jax_compilation_cache_dir", setting)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
