"""The same seed gives the same training as before: every objective's `:smoke` config (shortened to 3 steps on
a tiny random BERT; scripts/record_losses.py says how) against the per-step loss, gradient norm and learning
rate, and the size of the weight update, that the script recorded in tests/fixtures/recorded_losses.json at
commit 8f7cc00 (the fixture names the full commit; recorded from a `git archive` of it), before issue 20's
restructuring of training; SimCSE's at 61edcf0, where configs/simcse.py was fixed to run dropout positives
(the fixture's "rerecorded" says so; the other runs were identical there). A refactor that changes no
behaviour leaves them as they are."""

import json

import numpy as np
import pytest

from conftest import FIXTURES, load_module

pytestmark = pytest.mark.slow


def test_training_steps_equal_the_recorded_ones(tmp_path):
  recorded = json.loads((FIXTURES / "recorded_losses.json").read_text())
  record = load_module("scripts/record_losses.py", "record_losses")
  # The run is the one recorded: same steps, corpus and model, and no objective added or lost unrecorded.
  assert (record.STEPS, record.CORPUS_NOTES, record.CORPUS_SEED) == (
      recorded["steps"], recorded["corpus"]["n_notes"], recorded["corpus"]["seed"])
  assert {**record.TINY, "seed": record.TINY_SEED} == recorded["model"]
  assert sorted(record.config_names()) == sorted(recorded["runs"])
  got = record.run(record.config_names(), tmp_path)
  for name, want in recorded["runs"].items():
    for key in (*record.STEP_METRICS, "update_norm"):
      # float32 on CPU: equal up to the order of reductions, far below what a changed step moves.
      np.testing.assert_allclose(got[name][key], want[key], rtol=1e-5, err_msg=f"{name} {key}")


def test_only_records_the_named_run_and_keeps_the_others(tmp_path):
  """`--only NAME --why ...` (how a new objective adds its run): the named run is recorded again (here mlm,
  equal to its record since nothing changed), every other run and the baseline commit stay byte for byte, and
  the reason is kept under "rerecorded"."""
  import shutil
  record = load_module("scripts/record_losses.py", "record_losses")
  out = tmp_path / "recorded.json"
  shutil.copy(FIXTURES / "recorded_losses.json", out)
  before = json.loads(out.read_text())
  assert record.main(["--only", "mlm", "--why", "a test", "--out", str(out), "--commit", "abc"]) == 0
  after = json.loads(out.read_text())
  assert after["commit"] == before["commit"]
  assert {k: v for k, v in after["runs"].items() if k != "mlm"} == {k: v for k, v in before["runs"].items()
                                                                      if k != "mlm"}
  for key in (*record.STEP_METRICS, "update_norm"):
    np.testing.assert_allclose(after["runs"]["mlm"][key], before["runs"]["mlm"][key], rtol=1e-5)
  assert after["rerecorded"]["mlm"] == {"commit": "abc", "why": "a test"}
  assert after["rerecorded"]["simcse"] == before["rerecorded"]["simcse"]
