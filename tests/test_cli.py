"""jaxemb/cli.py: every entry point reports an expected failure as one line `PROG: error: MESSAGE`, exit 2."""

import logging
import os
import subprocess
import sys

import pytest

from conftest import REPO
from jaxemb import cli


def test_user_error_is_one_line_and_status_2(capsys):
  def fail():
    raise cli.UserError("data.path notes.jsonl does not exist\n(check the path)")
  assert cli.run_main("prog", fail) == 2
  captured = capsys.readouterr()
  assert captured.err == "prog: error: data.path notes.jsonl does not exist (check the path)\n"
  assert captured.out == ""


@pytest.mark.parametrize("exc", [FileNotFoundError("x.jsonl: no such file"), EOFError("x.jsonl.gz: truncated"),
                                 ValueError("bad value")])
def test_library_input_errors_get_the_same_report(exc, capsys):
  def fail():
    raise exc
  assert cli.run_main("prog", fail) == 2
  assert capsys.readouterr().err == f"prog: error: {exc}\n"


def test_verbose_adds_the_traceback(capsys):
  def fail():
    raise cli.UserError("bad flag")
  assert cli.run_main("prog", fail, verbose=True) == 2
  err = capsys.readouterr().err
  assert "Traceback" in err and err.splitlines()[-1] == "prog: error: bad flag"


def test_a_bug_is_not_hidden():
  def fail():
    raise KeyError("a bug")
  with pytest.raises(KeyError):
    cli.run_main("prog", fail)


def test_status_passes_through():
  assert cli.run_main("prog", lambda: 3) == 3
  assert cli.run_main("prog", lambda: None) == 0
  assert cli.run_main("prog", lambda: {"a": 1}) == 0


def test_environment_defaults_never_override_the_user(monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "0")
  monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
  cli.set_environment_defaults()
  assert os.environ["HF_HUB_OFFLINE"] == "0"
  assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"


def test_library_logs_quiet_unless_verbose():
  cli.quiet_library_logs(False)
  assert logging.getLogger("absl").getEffectiveLevel() == logging.ERROR
  assert logging.getLogger("jax._src.xla_bridge").getEffectiveLevel() == logging.ERROR
  cli.quiet_library_logs(True)
  assert logging.getLogger("absl").getEffectiveLevel() == logging.INFO
  cli.quiet_library_logs(False)


def test_error_classes_are_user_errors():
  from jaxemb.eval.dataset import EvalError
  assert issubclass(EvalError, cli.UserError)


@pytest.mark.parametrize("argv, prog", [
  (["train.py", "--config", "configs/mlm.py:smoke", "--workdir", "{tmp}/w", "--config.data.path={tmp}/none.jsonl"],
   "train.py"),
  (["-m", "jaxemb.data", "{tmp}/none.jsonl"], "python -m jaxemb.data"),
  (["-m", "jaxemb.eval.embed", "--model", "minilm", "--data", "{tmp}/none.jsonl", "--out", "{tmp}/e"],
   "python -m jaxemb.eval.embed"),
])
def test_every_entry_point_reports_a_missing_corpus_the_same_way(argv, prog, tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}  # jax probes its backends, quietly
  r = subprocess.run([sys.executable, *[a.format(tmp=tmp_path) for a in argv]], capture_output=True, text=True,
                     cwd=REPO, env=env, timeout=300)
  assert r.returncode == 2, r.stderr[-2000:]
  # One line and nothing else: no library log lines (absl, jax's backend probing, transformers) either.
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and "none.jsonl" in lines[0], r.stderr[-2000:]


def test_eta_leaves_out_the_first_step():
  """The progress bar's rate (so its ETA) is measured after the first, compiling, step."""
  import time
  from jaxemb.train.loop import _progress, _restart_eta
  bar = _progress(True, 0, 100)
  time.sleep(0.5)  # "compilation"
  bar.update(1)
  _restart_eta(bar)
  bar.update(1)
  d = bar.format_dict
  bar.close()
  assert d["n"] - d["initial"] == 1 and d["elapsed"] < 0.4


@pytest.mark.parametrize("args, message", [
  (["--config", "configs/mlm.py:smoke"], "flag --workdir=None: Flag --workdir must have a value other than None."),
  (["--config", "configs/mlm.py:smoke", "--workdir", "w", "--config.total_steps=abc"],
   "flag --config.total_steps=abc: invalid literal for int() with base 10: 'abc'"),
  (["--config", "configs/mlm.py:smoke", "--workdir", "w", "--config.data.nosuch=1"],
   "the config has no field 'nosuch' (overrides: --config.data.nosuch)"),
  (["--config", "configs/mlm.py:bogus", "--workdir", "w"],
   "ValueError: unknown config argument 'bogus' (expected '' or 'smoke')"),
  (["--bogus"], "Unknown command line flag 'bogus'"),
])
def test_a_bad_absl_flag_is_one_line_and_status_2(args, message, tmp_path):
  r = subprocess.run([sys.executable, "train.py", *args], capture_output=True, text=True, cwd=REPO, timeout=300,
                     env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert (r.returncode, r.stderr) == (2, f"train.py: error: {message}\n")
