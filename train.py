"""Continued pre-training of a BERT/RoBERTa encoder with MLM, DeCLUTR or the metadata objective.

  python train.py --config configs/declutr.py --workdir runs/declutr
  python train.py --config configs/mlm.py:smoke --workdir /tmp/smoke --config.total_steps=20

Rerunning the same command on the same workdir resumes from its latest checkpoint.
"""

import os
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file (configs/*.py[:smoke]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the exported model.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save step at INFO
  from jaxemb.train.loop import maybe_initialize_distributed
  cfg = _CONFIG.value
  maybe_initialize_distributed(cfg)  # before any other jax call
  from jaxemb.train.loop import NonFiniteLossError, WorkdirMismatchError, train
  from jaxemb.models.convert import WeightsError
  try:
    summary = train(cfg, _WORKDIR.value)
  except (NonFiniteLossError, WorkdirMismatchError, WeightsError, FileNotFoundError, ValueError) as e:
    # Expected failures (bad data, bad paths, a diverged run): one clear message, no traceback.
    logging.error("%s", e)
    print(f"train.py: error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"trained {summary['steps']} steps; final loss {summary['final'].get('loss', float('nan')):.4f}; "
        f"workdir {summary['workdir']}")


if __name__ == "__main__":
  app.run(main)
