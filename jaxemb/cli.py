"""The policy every command line shares (train.py, eval.py, `python -m jaxemb.data`, `python -m
jaxemb.eval.embed`): one error class, one way to report an expected failure, one place for the environment.

- A user mistake (a bad file, field, flag or config value) raises `UserError` (or a subclass) whose message
  names what to fix. `run_main` turns it into ONE line `PROG: error: MESSAGE` on stderr and exit status 2,
  the same shape argparse uses for a bad flag.
- `set_environment_defaults()` is called by every entry point before the heavy imports; a variable the user
  has set always wins.
- Library logs (Orbax's checkpoint-manager internals, TFDS, absl INFO/WARNING, jax's "Unable to initialize
  backend 'tpu'") are quiet unless `--verbose` is given: `quiet_library_logs(verbose)`.

This module imports nothing from jaxemb, so every layer (data, models, train, eval) may use `UserError`.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any


def say(msg: str) -> None:
  """A progress line of the training run on stderr (stdout stays free for what a command prints as its result)."""
  print(f"[jaxemb] {msg}", file=sys.stderr, flush=True)


class UserError(Exception):
  """An expected, user-facing failure: the CLIs print its message on one line and exit with status 2."""


# Besides UserError, the exceptions through which the libraries we call (json, gzip, csv, pyarrow,
# transformers, safetensors, tensorstore) report bad input or a bad path. They get the same one-line report;
# `--verbose` adds the traceback, for the rare case where one of them is a bug rather than bad input.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError, EOFError, ValueError)

# Set (unless already set) on `import jaxemb`, also for library use: transformers is used for tokenizers and
# configs only, and its "PyTorch was not found" notice and per-load warnings are noise here.
LIBRARY_ENVIRONMENT_DEFAULTS = {
    "TRANSFORMERS_VERBOSITY": "error",
}
# Set (unless already set) by every CLI before transformers / jax / TFDS are imported.
ENVIRONMENT_DEFAULTS = {
    **LIBRARY_ENVIRONMENT_DEFAULTS,
    "HF_HUB_OFFLINE": "1",               # models are local folders: never a silent download
    "TF_CPP_MIN_LOG_LEVEL": "2",         # C++ INFO/WARNING lines of XLA / TensorStore
    "GRPC_VERBOSITY": "ERROR",           # multi-host runs: the coordinator's gRPC chatter
}

# Python loggers of the libraries whose INFO/WARNING lines are internals, not news for the user. Orbax and
# TFDS log through absl, whose logger is "absl".
_LIBRARY_LOGGERS = ("absl", "jax", "jax._src.xla_bridge", "orbax", "tensorflow_datasets", "etils", "grain",
                    "tensorstore", "transformers")


def set_environment_defaults(library: bool = False) -> None:
  """The environment defaults of every CLI (ENVIRONMENT_DEFAULTS; library=True: only those that suit any
  program importing jaxemb, LIBRARY_ENVIRONMENT_DEFAULTS); a value the user set wins."""
  for key, value in (LIBRARY_ENVIRONMENT_DEFAULTS if library else ENVIRONMENT_DEFAULTS).items():
    os.environ.setdefault(key, value)


def quiet_library_logs(verbose: bool = False) -> None:
  """Library loggers at ERROR (verbose: INFO, everything back). jaxemb's own progress lines go to stderr
  with print and are not affected."""
  level = logging.INFO if verbose else logging.ERROR
  for name in _LIBRARY_LOGGERS:
    logging.getLogger(name).setLevel(level)
  try:
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.ERROR)
  except ImportError:  # absl is a dependency, but this module must not need it
    pass


def one_line(e: BaseException) -> str:
  """The exception's message on one line (its type name when it has none)."""
  msg = " ".join(str(e).split()) if str(e).strip() else ""
  return msg or type(e).__name__


def report_error(prog: str, e: BaseException, verbose: bool = False) -> int:
  """Prints `PROG: error: MESSAGE` (one line) to stderr and returns the exit status 2."""
  if verbose:
    traceback.print_exception(e, file=sys.stderr)
  print(f"{prog}: error: {one_line(e)}", file=sys.stderr, flush=True)
  return 2


def absl_flags_parser(prog: str) -> Callable[[list[str]], list[str]]:
  """A `flags_parser` for absl's `app.run` (train.py, eval.py): a bad flag (unknown, missing, unparsable, a
  `--config` file that fails, a `--config.x` override the config has no field for) is one line
  `PROG: error: ...` and exit status 2, as argparse does for the other CLIs (absl: a FATAL line, status 1)."""

  def parse(argv: list[str]) -> list[str]:
    from absl import flags
    try:
      return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError, OSError) as e:
      msg = str(e).strip()
      if "Traceback" in msg:  # config_flags wraps the config file's own error in its traceback: keep the error
        msg = [line for line in msg.splitlines() if line.strip()][-1].strip()
      if isinstance(e, (AttributeError, KeyError)):  # ml_collections: an override of a field that is not there
        overrides = [a.split("=", 1)[0] for a in argv if a.startswith("--config.")]
        msg = f"the config has no field {msg.strip(chr(34) + chr(39))!r} (overrides: {', '.join(overrides)})"
      print(f"{prog}: error: {' '.join(msg.split())}", file=sys.stderr, flush=True)
      sys.exit(2)

  return parse


def run_main(prog: str, fn: Callable[..., Any], *args: Any, verbose: bool = False, **kwargs: Any) -> int:
  """Runs an entry point: its int result (or 0) is the exit status; an expected failure becomes one stderr
  line `PROG: error: MESSAGE` and status 2. Anything else propagates with its traceback (a bug)."""
  try:
    status = fn(*args, **kwargs)
  except EXPECTED_ERRORS as e:
    return report_error(prog, e, verbose)
  return status if isinstance(status, int) else 0
