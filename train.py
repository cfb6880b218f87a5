"""Continued pre-training of a BERT/RoBERTa encoder: MLM, DeCLUTR, the metadata objective (the paper's three),
SimCSE / window crops (configs/simcse.py, configs/adapt.py) or query -> document pairs (configs/pairs.py).

  python train.py --config configs/declutr.py --workdir runs/declutr
  python train.py --config configs/mlm.py:smoke --workdir /tmp/smoke --config.total_steps=20

Rerunning the same command on the same workdir resumes from its latest checkpoint. Expected failures (a bad
path or field, a workdir in use, a diverged run) print one line `train.py: error: ...` and exit with status 2;
`--verbose` also shows the library logs (Orbax, TFDS, jax) and the traceback of an error.
"""

import sys

from jaxemb import cli

cli.set_environment_defaults()  # before absl / jax / transformers are imported

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file (configs/*.py[:smoke]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the exported model.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show library logs (Orbax, TFDS, jax) and error tracebacks.")
flags.mark_flags_as_required(["config", "workdir"])


def _train() -> int:
  from jaxemb.train.loop import train
  from jaxemb.train.runtime import maybe_initialize_distributed
  cfg = _CONFIG.value
  maybe_initialize_distributed(cfg)  # before any other jax call
  summary = train(cfg, _WORKDIR.value)
  if summary.get("already_done"):  # the loop said so on stderr
    return 0
  print(f"trained {summary['steps'] - summary.get('start', 0)} steps (to step {summary['steps']}); final loss "
        f"{summary['final'].get('loss', float('nan')):.4f}; workdir {summary['workdir']}")
  return 0


def main(argv):
  del argv
  verbose = _VERBOSE.value or flags.FLAGS["verbosity"].present
  cli.quiet_library_logs(verbose)
  sys.exit(cli.run_main("train.py", _train, verbose=verbose))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.absl_flags_parser("train.py"))
