"""Selection you can defend and exports that cannot lie: what the validation split chooses is not trained on,
the cross-validated probe keeps its folds, the export is whole or absent (and a rerun finishes it), validation
runs on its own schedule, duplicates are keyed by document, and every step count of the config counts
optimiser updates. Each test names the reference it compares against."""

import gzip
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxemb import objectives  # noqa: E402
from jaxemb.models.config import EncoderConfig  # noqa: E402
from jaxemb.models.encoder import init_params  # noqa: E402
from jaxemb.train import levers as levers_lib, validation  # noqa: E402
from jaxemb.train.config import base_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CFG = EncoderConfig(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                    max_position_embeddings=32)


def _adapt_config(arg: str = "smoke"):
  from conftest import load_module
  return load_module("configs/adapt.py", "jaxemb_adapt_config").get_config(arg)


# ------------------------------------------------------------------------------------------ what trains
def test_a_run_that_chooses_on_validation_does_not_train_on_it():
  cfg = _adapt_config("")
  assert validation.reads_validation(cfg)  # the recipe chooses the interpolation weight on validation
  assert validation.training_exclude_splits(cfg) == ("test", "validation")
  cfg.validation.include_in_training = True  # the user's opt-in: trained on, and said so in the export
  assert validation.training_exclude_splits(cfg) == ("test",)
  plain = base_config("mlm")  # the paper's MLM selects nothing: it trains on validation as before
  assert not validation.reads_validation(plain) and validation.training_exclude_splits(plain) == ("test",)
  plain.validation.every = 10
  assert validation.training_exclude_splits(plain) == ("test", "validation")


# ------------------------------------------------------------------------------------------ the CV probe
@pytest.mark.filterwarnings("ignore:The least populated class")
def test_cv_probe_keeps_its_folds_when_the_rarest_class_is_small():
  """The reference is sklearn's cross_val_predict with StratifiedKFold(5) over the classes with >= 2
  documents: the old rule k = min(folds, smallest class) scored this corpus with 2 folds."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.model_selection import StratifiedKFold, cross_val_predict
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  rng = np.random.default_rng(0)
  labels = np.array([0] * 12 + [1] * 10 + [2] * 2 + [3])  # class 3: one document, cannot be both
  z = rng.normal(0, 1, (len(labels), 6)) + 3.0 * np.eye(6)[labels]
  from jaxemb.metrics.cv_probe import cv_probe_predictions
  cv = cv_probe_predictions(z, labels, folds=5, repeats=2)
  assert cv.scheme["folds"] == 5 and cv.scheme["repeats"] == 2
  assert (cv.scheme["n_docs"], cv.scheme["n_classes"], cv.scheme["smallest_class_docs"]) == (24, 3, 2)
  assert cv.scheme["dropped_docs"] == 1 and cv.scheme["dropped_classes"] == [3]
  assert not cv.keep_N[-1] and cv.keep_N[:-1].all()
  model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
  for r in range(2):
    want = cross_val_predict(model, z[:-1], labels[:-1], cv=StratifiedKFold(5, shuffle=True, random_state=r))
    np.testing.assert_array_equal(cv.preds[r], want)


# ------------------------------------------------------------------------------------------ duplicates
def test_window_crops_of_duplicate_documents_share_a_dup_id(tmp_path):
  """Two notes equal after whitespace/case normalisation (the split planner's key) are duplicates whatever
  crops the rows show; the dup ids were computed from the crops, so the copies stayed each other's negatives."""
  from jaxemb.data.corpus import Fields
  from jaxemb.data.prepare import prepare
  from jaxemb.objectives.simcse import SimCSEBatches
  words = [f"w{i}" for i in range(60)]
  note = " ".join(f"patient reports {w} and {v} today" for w, v in zip(words, reversed(words)))
  rows = [{"id": "a", "text": note, "split": "train"},
          {"id": "b", "text": "  " + note.upper().replace(" ", "   "), "split": "train"},  # the same note
          *[{"id": f"o{i}", "text": f"other note {i} " + " ".join(words[i:i + 30]), "split": "train"}
            for i in range(6)]]
  path = tmp_path / "dups.jsonl.gz"
  with gzip.open(path, "wt") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  prepared = prepare(path, Fields(text="text", split="split", id="id"), cache_dir=tmp_path / "cache")
  it = SimCSEBatches(prepared, batch_size=8, max_length=64, seed=0, positive="windows", crop=0.25,
                     exclude_splits=("test",), window='random')
  b = it.batch(0)
  order = list(it.plan(0))
  ra, rb = order.index(0), order.index(1)  # the two copies' rows in the batch
  assert not np.array_equal(b["input_ids"][ra], b["input_ids"][rb])  # different crops...
  assert b["dup"][ra] == b["dup"][rb] == min(ra, rb)                   # ...of one document
  others = [r for r in range(8) if r not in (ra, rb)]
  assert sorted(b["dup"][others]) == sorted(others)  # every other note is its own group


def test_metadata_supcon_runs_the_papers_loss_by_default():
  assert objectives.get("metadata").defaults().dedup is False
  assert base_config("metadata").metadata.dedup is False


# ------------------------------------------------------------------------------------------ step units
def _tiny_params():
  p = init_params(CFG, seed=5)
  return jax.tree.map(jnp.asarray, {"encoder": p["encoder"], "mlm_head": p["mlm_head"]})


def _optim_cfg(**kw):
  cfg = base_config("mlm")
  for k, v in kw.items():
    cfg.optim[k] = v
  return cfg


def _run_steps(cfg, levers, n_micro):
  """n_micro steps of the loop's update step (make_train_step) on a loss that touches every leaf; returns the
  params after each micro-step."""
  from jaxemb.train.loop import TrainState, make_train_step
  from jaxemb.train.optim import make_optimizer
  tx, schedule = make_optimizer(cfg.optim, 100)

  def loss_fn(params, batch, rng, step=0, initial=None):
    eff = levers.effective(params, jnp.asarray(step))  # as the loop's make_loss_fn
    return sum(jnp.sum((x - 0.1) ** 2) for x in jax.tree.leaves(eff)), {}

  params = _tiny_params()
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                     rng=jax.random.PRNGKey(0))
  step = jax.jit(make_train_step(loss_fn, tx, schedule, int(cfg.optim.accumulate), levers.update_scale))
  history = []
  for _ in range(n_micro):
    state, _ = step(state, {})
    history.append(state.params)
  return params, history


def _moved(a, b) -> bool:
  return any(float(jnp.abs(x - y).max()) > 0 for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_head_warmup_counts_optimiser_updates_with_accumulation():
  """warmup_steps = 2 with accumulate = 2: the encoder is frozen for 2 UPDATES (micro-steps 0-3) and moves at
  the third (micro-step 5, the update after micro-steps 4 and 5). Counting micro-steps, it moved at the second
  update (micro-step 3)."""
  cfg = _optim_cfg(accumulate=2, warmup_steps=0, weight_decay=0.0, lr=1e-2)
  cfg.mlm_head.warmup_steps = 2
  levers = levers_lib.Levers.from_config(cfg, CFG.num_layers)
  p0, hist = _run_steps(cfg, levers, 6)
  moved = [_moved(h["encoder"], p0["encoder"]) for h in hist]
  assert moved == [False, False, False, False, False, True]
  assert _moved(hist[1]["mlm_head"], p0["mlm_head"])  # the head trained from the first update


def test_frozen_leaves_do_not_move_under_the_optimiser_with_weight_decay():
  """The loop's update step with AdamW (weight decay 0.1) for 3 updates: frozen leaves (embeddings, layer 0)
  stay bit for bit (weight decay alone would move them: its update is -lr * wd * p), the rest move."""
  cfg = _optim_cfg(weight_decay=0.1, warmup_steps=0, lr=1e-2)
  cfg.freeze.embeddings, cfg.freeze.layers = True, 1
  levers = levers_lib.Levers.from_config(cfg, CFG.num_layers)
  p0, hist = _run_steps(cfg, levers, 3)
  last = hist[-1]["encoder"]
  for name in ("embeddings", "layer_0"):
    for x, y in zip(jax.tree.leaves(last[name]), jax.tree.leaves(p0["encoder"][name])):
      np.testing.assert_array_equal(x, y)
  assert _moved(last["layer_1"], p0["encoder"]["layer_1"])
  assert _moved(hist[-1]["mlm_head"], p0["mlm_head"])  # MLM reads the head: it trains


def test_a_head_the_objective_does_not_read_stays_as_it_was():
  """SimCSE and pairs never read params["mlm_head"] (Objective.uses_mlm_head): the head gets no gradient, but
  AdamW's decoupled weight decay (-lr * wd * p per update) would still shrink it; the levers freeze it, so it
  stays bit for bit while the encoder trains."""
  for objective in ("simcse", "pairs"):
    cfg = base_config(objective)
    cfg.optim.update(weight_decay=0.1, warmup_steps=0, lr=1e-2)
    levers = levers_lib.Levers.from_config(cfg, CFG.num_layers)
    assert not levers.head_trains and levers.active
    p0, hist = _run_steps(cfg, levers, 3)
    for x, y in zip(jax.tree.leaves(hist[-1]["mlm_head"]), jax.tree.leaves(p0["mlm_head"])):
      np.testing.assert_array_equal(x, y)
    assert _moved(hist[-1]["encoder"], p0["encoder"])


def test_recipes_table_uses_the_sample_std():
  """scripts/recipes.py's mean ± std of two seeds 0.5 and 0.7: the sample std (ddof=1) is 0.1414, as every
  other table of RESULTS; the population std was 0.1."""
  sys.path.insert(0, str(REPO))
  from scripts.recipes import _mean_std
  runs = [{"model": "m", "mode": "probe", "shots": 16, "split": "test", "macro_f1": v} for v in (0.5, 0.7)]
  assert _mean_std(runs, "m", "probe", 16) == "0.600 ± 0.141"
