"""Adaptation levers (train/levers.py, models/lora.py, train/validation.py) and the SimCSE objective, each against a
closed form, a NumPy recomputation or the identity the lever promises (lambda = 0 is plain training, a = 0 is
the base bit for bit, merged LoRA is the adapter forward, frozen weights never move)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxemb import objectives  # noqa: E402
from jaxemb.metrics.cv_probe import cv_probe_f1, cv_probe_predictions  # noqa: E402
from jaxemb.models import lora  # noqa: E402
from jaxemb.models.config import EncoderConfig  # noqa: E402
from jaxemb.models.encoder import encode, init_params, mean_pool, mlm_logits  # noqa: E402
from jaxemb.objectives.losses import nt_xent  # noqa: E402
from jaxemb.train import levers as levers_lib, validation  # noqa: E402
from jaxemb.train.config import base_config  # noqa: E402

CFG = EncoderConfig(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                    max_position_embeddings=32)


@pytest.fixture(scope="module")
def params():
  return jax.tree.map(jnp.asarray, init_params(CFG, seed=5))


def _batch(b=4, length=8, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, CFG.vocab_size, (b, length)).astype(np.int32)
  mask = np.ones((b, length), np.int32)
  mask[0, 5:] = 0
  return jnp.asarray(ids), jnp.asarray(mask)


# ------------------------------------------------------------------------------------------------ registry
def test_registry_lists_every_objective_and_names_the_choices():
  assert {"mlm", "declutr", "metadata", "simcse"} <= set(objectives.available())
  assert "losses" not in objectives.available()
  with pytest.raises(ValueError, match="available: .*simcse"):
    objectives.get("simcsee")
  # base_config attaches the objective's own block, declared by its module.
  assert base_config("simcse").simcse.temperature == 0.05
  assert base_config("declutr").declutr.mlm_weight == 1.0
  assert "declutr" not in base_config("simcse")


# ------------------------------------------------------------------------------------------------ NT-Xent
def _np_nt_xent(a, p, tau, groups=None):
  """Plain loops over rows: log-softmax over the allowed columns of row i, at its target."""
  z = np.concatenate([a, p]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2 = len(z)
  n = n2 // 2
  g = None if groups is None else np.concatenate([groups, groups])
  total = 0.0
  for i in range(n2):
    t = (i + n) % n2
    cols = [j for j in range(n2) if j != i and (j == t or g is None or g[j] != g[i])]
    s = np.array([z[i] @ z[j] / tau for j in cols])
    total += np.log(np.exp(s - s.max()).sum()) + s.max() - z[i] @ z[t] / tau
  return total / n2


def test_nt_xent_groups_leave_duplicates_out_of_the_denominator():
  rng = np.random.default_rng(0)
  a, p = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
  groups = np.array([0, 1, 0, 3])  # rows 0 and 2 are the same text
  got = float(nt_xent(jnp.asarray(a), jnp.asarray(p), 0.1, groups_N=jnp.asarray(groups)))
  np.testing.assert_allclose(got, _np_nt_xent(a, p, 0.1, groups), rtol=1e-5)
  # All-distinct groups are the original loss; duplicates lower it (a negative that was a copy is gone).
  plain = float(nt_xent(jnp.asarray(a), jnp.asarray(p), 0.1))
  np.testing.assert_allclose(float(nt_xent(jnp.asarray(a), jnp.asarray(p), 0.1, groups_N=jnp.arange(4))), plain,
                             rtol=1e-6)
  np.testing.assert_allclose(plain, _np_nt_xent(a, p, 0.1), rtol=1e-5)
  assert got < plain  # a duplicate's column left the denominator: its rows' log-sum-exp strictly shrank


# ------------------------------------------------------------------------------------------------ SimCSE
def test_simcse_two_views_differ_only_by_dropout(params):
  from jaxemb.objectives import simcse
  ids, mask = _batch()
  batch = {"input_ids": ids, "attention_mask": mask, "dup": jnp.arange(4, dtype=jnp.int32)}
  loss, metrics, (z1, _, _) = simcse.loss_fn(params, batch, jax.random.PRNGKey(0), config=CFG, dtype=jnp.float32,
                                             return_pooled=True, remat=False, attention='xla', temperature=0.05,
                                             dedup=True, gradcache_chunks=0, gradcache_policy='nothing_saveable')
  # The reference: the encoder run twice with no dropout gives identical views -> NT-Xent of (z, z).
  z = mean_pool(encode(params["encoder"], ids, mask, config=CFG), mask)
  np.testing.assert_allclose(float(simcse.nt_xent(z, z, 0.05)), _np_nt_xent(np.asarray(z), np.asarray(z), 0.05),
                             rtol=1e-5)
  # With dropout the first view is not the clean embedding (each of the 2B rows has its own mask).
  assert float(jnp.abs(z1 - z).max()) > 1e-4
  assert np.isfinite(float(loss)) and float(metrics["contrastive_loss"]) == float(loss)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  from jaxemb.data.corpus import Fields
  from jaxemb.data.prepare import prepare
  from jaxemb.data.synthetic import write_corpus
  root = tmp_path_factory.mktemp("simcse")
  path = write_corpus(root / "notes.jsonl.gz", n_notes=80, seed=2)
  return prepare(path, Fields(text="text", label="specialty", split="split", id="id"), cache_dir=root / "cache")


def _is_window(toks: np.ndarray, row: np.ndarray) -> bool:
  n = len(row)
  return any(np.array_equal(toks[s:s + n], row) for s in range(len(toks) - n + 1))


def test_simcse_window_positives_are_independent_crops_of_the_same_document(prepared):
  from jaxemb.objectives.simcse import SimCSEBatches
  it = SimCSEBatches(prepared, batch_size=8, max_length=512, seed=0, positive="windows", crop=0.5, window='random')
  b = it.batch(0)
  assert b["positive_ids"].shape == b["input_ids"].shape
  for r, d in enumerate(it.plan(0)):
    toks = np.asarray(prepared.tokens(int(d)))
    for ids, mask in ((b["input_ids"], b["attention_mask"]), (b["positive_ids"], b["positive_mask"])):
      n = int(mask[r].sum()) - 2
      assert np.ceil(0.5 * len(toks)) <= n <= len(toks)  # at least half of a document that fits
      assert _is_window(toks, ids[r, 1:1 + n])
  # Independent crops: the two views of a document differ (for some rows at least).
  assert any(not np.array_equal(b["input_ids"][r], b["positive_ids"][r]) for r in range(8))
  with pytest.raises(ValueError, match="simcse.crop"):
    SimCSEBatches(prepared, batch_size=8, max_length=32, positive="windows", crop=0.0, seed=0, window='random')


def test_simcse_batches_are_windows_of_every_document(prepared):
  from jaxemb.objectives.simcse import SimCSEBatches
  it = SimCSEBatches(prepared, batch_size=8, max_length=32, seed=0, window='random', positive='dropout', crop=0.5)
  b = it.batch(0)
  assert b["input_ids"].shape == b["attention_mask"].shape and b["input_ids"].shape[0] == 8
  assert b["input_ids"].shape[1] <= 32 and (b["input_ids"][:, 0] == prepared.special.cls).all()
  docs = it.plan(0)
  for r, d in enumerate(docs):
    toks = np.asarray(prepared.tokens(int(d)))
    n = int(b["attention_mask"][r].sum()) - 2
    assert n == min(len(toks), 30)  # the whole room, or the whole document
    assert _is_window(toks, b["input_ids"][r, 1:1 + n]), r  # a contiguous window of the document's tokens
  np.testing.assert_array_equal(b["dup"], np.arange(8))  # no duplicates in the synthetic notes
  # Deterministic per (seed, step): a resumed iterator gives the same batch.
  it2 = SimCSEBatches(prepared, batch_size=8, max_length=32, seed=0, window='random', positive='dropout', crop=0.5)
  np.testing.assert_array_equal(it2.batch(0)["input_ids"], b["input_ids"])
  # Two hosts' rows are the single-host batch split in two, with the same duplicate ids.
  h0 = SimCSEBatches(prepared, batch_size=8, max_length=32, seed=0, process_index=0, process_count=2, window='random',
                     positive='dropout', crop=0.5).batch(0)
  h1 = SimCSEBatches(prepared, batch_size=8, max_length=32, seed=0, process_index=1, process_count=2, window='random',
                     positive='dropout', crop=0.5).batch(0)
  np.testing.assert_array_equal(np.concatenate([h0["input_ids"], h1["input_ids"]]), b["input_ids"])


# ------------------------------------------------------------------------------------------------ LoRA
def test_lora_merged_weight_is_the_adapter_forward():
  rng = np.random.default_rng(1)
  w, bias = rng.standard_normal((6, 5)), rng.standard_normal(6)
  a, b = rng.standard_normal((2, 5)), rng.standard_normal((6, 2))
  x = rng.standard_normal((3, 5))
  s = 4.0
  adapter = x @ w.T + bias + s * (x @ a.T) @ b.T   # the LoRA paper's forward: frozen path + scaled bypass
  merged = lora.merge({"l": {"weight": jnp.asarray(w)}}, {"l": {"a": jnp.asarray(a), "b": jnp.asarray(b)}}, s)
  np.testing.assert_allclose(x @ np.asarray(merged["l"]["weight"]).T + bias, adapter, rtol=1e-6, atol=1e-9)


def test_lora_starts_at_the_base_and_targets_every_dense_layer(params):
  adapters = lora.init_lora(jax.tree.map(np.asarray, params["encoder"]), rank=3)
  assert len(adapters) == CFG.num_layers * 6
  assert adapters["layer_1/attention/query"]["a"].shape == (3, 16)
  assert adapters["layer_1/intermediate/dense"]["b"].shape == (32, 3)
  merged = lora.merge(params["encoder"], jax.tree.map(jnp.asarray, adapters), 16.0 / 3)
  for x, y in zip(jax.tree.leaves(merged), jax.tree.leaves(params["encoder"])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # B = 0: the base, exactly
  with pytest.raises(ValueError, match="lora.targets"):
    lora.target_paths(params["encoder"], "attn")


def test_interpolation_endpoints_are_exact_and_the_middle_is_the_mean(params):
  base = jax.tree.map(np.asarray, params["encoder"])
  tuned = jax.tree.map(lambda x: x + 1.0, base)
  for got, want in zip(jax.tree.leaves(lora.interpolate(base, tuned, 0.0)), jax.tree.leaves(base)):
    assert got.tobytes() == np.asarray(want, np.float32).tobytes()  # bit for bit
  for got, want in zip(jax.tree.leaves(lora.interpolate(base, tuned, 1.0)), jax.tree.leaves(tuned)):
    assert got.tobytes() == np.asarray(want, np.float32).tobytes()
  for got, b in zip(jax.tree.leaves(lora.interpolate(base, tuned, 0.25)), jax.tree.leaves(base)):
    np.testing.assert_allclose(got, b + 0.25, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------- toward the initial encoder
def _levers(**kw) -> levers_lib.Levers:
  """Levers with the given fields set and every other one off."""
  off = dict(frozen_embeddings=False, frozen_layers=0, lora_scale=0.0, warmup_steps=0, l2sp=0.0, distill=0.0,
             accumulate=1, head_trains=True)
  return levers_lib.Levers(**{**off, **kw})


def test_l2sp_is_half_lambda_squared_distance_with_gradient_toward_theta0(params):
  initial = params["encoder"]
  moved = jax.tree.map(lambda x: x + 0.01, initial)
  n = sum(x.size for x in jax.tree.leaves(initial))
  lev = _levers(l2sp=0.3)
  extra, m = lev.penalties({"encoder": moved}, None, initial, config=CFG, dtype=jnp.float32)
  np.testing.assert_allclose(float(extra), 0.5 * 0.3 * n * 0.01 ** 2, rtol=1e-4)  # closed form
  g = jax.grad(lambda p: lev.penalties({"encoder": p}, None, initial, config=CFG, dtype=jnp.float32)[0])(moved)
  for leaf in jax.tree.leaves(g):
    np.testing.assert_allclose(np.asarray(leaf), 0.3 * 0.01, rtol=1e-3)  # lambda * (theta - theta0)


def test_distillation_is_zero_at_the_teacher_and_the_normalised_squared_distance_elsewhere(params):
  ids, mask = _batch()
  teacher = mean_pool(encode(params["encoder"], ids, mask, config=CFG), mask)
  lev = _levers(distill=2.0)
  extra, m = lev.penalties({"encoder": params["encoder"]}, (teacher, ids, mask), params["encoder"], config=CFG,
                           dtype=jnp.float32)
  assert abs(float(extra)) < 1e-10
  student = teacher + jnp.asarray(np.random.default_rng(3).standard_normal(teacher.shape), jnp.float32)
  extra, m = lev.penalties({"encoder": params["encoder"]}, (student, ids, mask), params["encoder"], config=CFG,
                           dtype=jnp.float32)
  s, t = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
  s /= np.linalg.norm(s, axis=1, keepdims=True)
  t /= np.linalg.norm(t, axis=1, keepdims=True)
  np.testing.assert_allclose(float(extra), 2.0 * np.mean(np.sum((s - t) ** 2, axis=1)), rtol=1e-5)


# ------------------------------------------------------------------------------------------------ freezing
def _cfg(**levers) -> ml_collections.ConfigDict:
  c = base_config("mlm")  # an objective whose loss reads the MLM head, so the head trains
  for k, v in levers.items():
    section, field = k.split("__")
    c[section][field] = v
  return c


def test_frozen_leaves_get_no_gradient_and_no_update_even_with_weight_decay(params):
  lev = levers_lib.Levers.from_config(_cfg(freeze__embeddings=True, freeze__layers=1), CFG.num_layers)
  p = {"encoder": params["encoder"], "mlm_head": params["mlm_head"]}
  frozen = lev.frozen(p)
  assert all(jax.tree.leaves(frozen["encoder"]["embeddings"])) and all(jax.tree.leaves(frozen["encoder"]["layer_0"]))
  assert not any(jax.tree.leaves(frozen["encoder"]["layer_1"]))
  ids, mask = _batch()

  def loss(q):
    e = lev.effective(q, jnp.asarray(0))
    return jnp.sum(mean_pool(encode(e["encoder"], ids, mask, config=CFG), mask) ** 2)
  g = jax.grad(loss)(p)
  assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(g["encoder"]["layer_0"]))
  assert any(float(jnp.abs(x).max()) > 0.0 for x in jax.tree.leaves(g["encoder"]["layer_1"]))
  scale = lev.update_scale(p, jnp.asarray(0))
  assert all(float(x) == 0.0 for x in jax.tree.leaves(scale["encoder"]["embeddings"]))
  assert all(float(x) == 1.0 for x in jax.tree.leaves(scale["encoder"]["layer_1"]))


def test_head_warmup_freezes_the_encoder_for_its_steps_only(params):
  lev = levers_lib.Levers.from_config(_cfg(mlm_head__warmup_steps=3), CFG.num_layers)
  p = {"encoder": params["encoder"], "mlm_head": params["mlm_head"]}
  for step, want in ((0, 0.0), (2, 0.0), (3, 1.0)):
    scale = lev.update_scale(p, jnp.asarray(step))
    assert {float(x) for x in jax.tree.leaves(scale["encoder"])} == {want}
    assert {float(x) for x in jax.tree.leaves(scale["mlm_head"])} == {1.0}


def test_tied_decoder_reads_the_word_embedding_array(params):
  """BERT's tie: there is no decoder matrix in the head; logits = transform(h) @ word_embeddings^T + bias, so
  the MLM gradient reaches the shared embedding array."""
  assert set(params["mlm_head"]) == {"dense", "LayerNorm", "bias"}
  h = jnp.ones((2, CFG.hidden_size))

  def total(wte):
    p = {"encoder": {**params["encoder"], "embeddings": {**params["encoder"]["embeddings"],
                                                         "word_embeddings": {"embedding": wte}}},
         "mlm_head": params["mlm_head"]}
    return jnp.sum(mlm_logits(p, h, config=CFG))
  g = jax.grad(total)(params["encoder"]["embeddings"]["word_embeddings"]["embedding"])
  assert float(jnp.abs(g).max()) > 0


def test_unigram_bias_is_the_smoothed_log_frequency():
  from jaxemb.train.loop import unigram_log_frequencies

  class _Prepared:
    def tokens_many(self, idx):
      return [np.array([1, 1, 2]), np.array([2, 3])][:len(idx)]
  got = unigram_log_frequencies(_Prepared(), np.arange(2), vocab_size=5)
  counts = np.array([0, 2, 2, 1, 0]) + 1.0  # add-one smoothing, by hand
  np.testing.assert_allclose(got, np.log(counts / counts.sum()), rtol=1e-6)


# ------------------------------------------------------------------------------------------------ validation
def test_uniformity_alignment_and_probe_on_hand_made_points():
  x = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [0.0, -1.0], [-4.0, 0.0]])
  labels = np.array([0, 0, -1, 1, 1])  # row 2 has no label
  vs = validation.ValidationSet(np.zeros((5, 4), np.int32), np.ones((5, 4), np.int32), labels, 5)
  s = validation.scores(x, x, vs, folds=2)
  # The reference: Wang & Isola's definitions by a double loop over the unit rows.
  u = x / np.linalg.norm(x, axis=1, keepdims=True)
  d2 = {(i, j): float(((u[i] - u[j]) ** 2).sum()) for i in range(5) for j in range(i + 1, 5)}
  assert abs(s["val_uniformity"] - np.log(np.mean(np.exp(-2 * np.array(list(d2.values())))))) < 1e-12
  # alignment over the labelled same-label pairs (0, 1) and (3, 4): orthogonal unit vectors, 2 each
  assert abs(s["val_alignment"] - np.mean([d2[0, 1], d2[3, 4]])) < 1e-12 and abs(s["val_alignment"] - 2.0) < 1e-12
  assert abs(s["val_base_distance"]) < 1e-12
  rng = np.random.default_rng(0)
  z = np.concatenate([rng.normal(5, 0.1, (10, 3)), rng.normal(-5, 0.1, (10, 3))])
  assert cv_probe_f1(z, np.array([0] * 10 + [1] * 10), folds=5) == 1.0  # separable classes
  assert np.isnan(cv_probe_f1(z, np.zeros(20, int), folds=5))  # one class: nothing to score
  # Repeated partitions: one prediction row per partition, each a permutation-free out-of-fold prediction.
  keep, y, preds, _ = cv_probe_predictions(z, np.array([0] * 10 + [1] * 10), folds=5, repeats=3)
  assert keep.all() and preds.shape == (3, 20) and (preds == y).all()


def test_validation_scores_pair_a_model_with_the_base():
  """val_diff is the paired macro-F1 difference on the validation documents (eval/compare.py's bootstrap, fold
  partitions as seeds): the base against itself is 0 with a zero-width interval; embeddings that separate
  the classes where the base's do not are "better" by exactly their F1 gap (1.0 - the base's score)."""
  rng = np.random.default_rng(0)
  labels = np.array([0, 1] * 20)
  z0 = rng.normal(0, 1, (40, 4))                        # noise: the base cannot tell the classes apart
  z = z0 + 10.0 * np.eye(4)[labels]                     # the "adapted" model separates them
  vs = validation.ValidationSet(np.zeros((40, 8), np.int32), np.ones((40, 8), np.int32), labels, 40)
  base_preds = cv_probe_predictions(z0, labels, folds=5, repeats=2)[2]
  same = validation.scores(z0, z0, vs, folds=5, repeats=2, base_preds=base_preds)
  assert same["val_diff"] == 0.0 and same["val_ci_low"] == same["val_ci_high"] == 0.0
  assert same["val_verdict"] == "no different" and abs(same["val_base_distance"]) < 1e-6
  better = validation.scores(z, z0, vs, folds=5, repeats=2, base_preds=base_preds)
  assert better["val_probe_f1"] == 1.0 and better["val_verdict"] == "better"
  assert abs(better["val_diff"] - (1.0 - same["val_probe_f1"])) < 1e-12
  with pytest.raises(ValueError, match="interpolate.alphas"):
    validation.parse_alphas("0.5,2")


# ------------------------------------------------------------------------------------------------ end to end
def _train_adapt_smoke(workdir, steps: int, **overrides) -> None:
  """configs/adapt.py:smoke on the quick-start corpus for `steps` steps (32-token rows), with overrides given
  as section__field=value."""
  from conftest import load_module
  from jaxemb.train.loop import train
  cfg = load_module("configs/adapt.py", "jaxemb_adapt_config").get_config("smoke")
  cfg.total_steps = steps
  cfg.checkpoint.every = steps
  cfg.data.max_length = 32
  for key, value in overrides.items():
    *section, field = key.split("__")
    (cfg[section[0]] if section else cfg)[field] = value
  return train(cfg, workdir)

@pytest.mark.slow
def test_adapt_smoke_exports_the_chosen_interpolation_with_its_card(tmp_path, capsys):
  """configs/adapt.py:smoke on the quick-start corpus: WORKDIR/model is (1-a)*theta0 + a*theta for the a chosen
  on the validation split, loads with Encoder.from_pretrained, and carries the adapted model's card and export
  record. The validation split that chose was not trained on (data_spec.json), export.json names the CV folds,
  documents and classes, and validation scores at every `validation.every` step, not only at log steps.
  Deleting WORKDIR/model and rerunning the command re-exports the same weights bit for bit; a WORKDIR/model
  without its export record is refused by the resolver and by eval.py (one line, exit status 2)."""
  import json
  import shutil
  import subprocess
  import sys
  from pathlib import Path
  from safetensors.numpy import load_file
  from jaxemb import Encoder
  from jaxemb.models.card import write_verdict
  from jaxemb.resolve import EXPORT_RECORD, ModelSpecError, resolve
  w = tmp_path / "w"
  run = dict(steps=4, validation__max_docs=32, validation__every=1, log_every=4)
  _train_adapt_smoke(w, **run)
  assert json.loads((w / "data_spec.json").read_text())["exclude_splits"] == ["test", "validation"]
  export = json.loads((w / "export.json").read_text())
  assert export["validation_trained_on"] is False and export["excluded_splits"] == ["test", "validation"]
  rows = [json.loads(line) for line in (w / "metrics.jsonl").read_text().splitlines()]
  scored = [r for r in rows if "val_probe_f1" in r]  # the validation signal during training, every step
  assert [r["step"] for r in scored] == [1, 2, 3, 4] and all(r["val_verdict"] in ("better", "no different", "worse")
                                                            for r in scored)
  assert [r["step"] for r in rows if "loss" in r] == [4]
  interp = export["interpolation"]
  assert interp["cv"]["folds"] == 5 and interp["cv"]["n_classes"] >= 2
  assert interp["cv"]["n_docs"] + interp["cv"]["dropped_docs"] <= 32
  assert interp["criterion"] == "val_probe_f1" and [r["alpha"] for r in interp["table"]] == [0.0, 0.5, 1.0]
  assert [r["candidate"] for r in interp["table"]] == [False, True, True]  # a = 0: the base, scored for reference
  assert interp["table"][0]["val_diff"] == 0.0 and abs(interp["table"][0]["val_base_distance"]) < 1e-6
  a = interp["chosen_alpha"]
  base = Encoder.from_pretrained("minilm").params["encoder"]
  trained = Encoder.from_pretrained(w).params["encoder"]  # the checkpoint: trained weights
  exported = Encoder.from_pretrained(w / "model").params["encoder"]
  moved = 0.0
  for e, b, t in zip(jax.tree.leaves(exported), jax.tree.leaves(base), jax.tree.leaves(trained)):
    np.testing.assert_allclose(e, (1 - a) * b + a * t, rtol=0, atol=1e-6)
    moved = max(moved, float(np.abs(t - b).max()))
  assert moved > 0  # the trained weights did move
  card = (w / "model" / "README.md").read_text()
  assert "# Adapted from minilm" in card and f"a = {a}" in card and "simcse" in card
  assert json.loads((w / "model" / EXPORT_RECORD).read_text())["last_step"] == 4
  first = load_file(str(w / "model" / "model.safetensors"))

  # A lost export is finished by rerunning the command, with the same weights.
  shutil.rmtree(w / "model")
  capsys.readouterr()
  out = _train_adapt_smoke(w, **run)
  assert not out.get("already_done") and "export is missing or incomplete" in capsys.readouterr().err
  again = load_file(str(w / "model" / "model.safetensors"))
  assert again.keys() == first.keys()
  for k in first:
    np.testing.assert_array_equal(again[k], first[k])
  assert _train_adapt_smoke(w, **run)["already_done"]
  assert write_verdict(w / "model", "| probe | all | +0.010 | [-0.001, +0.020] | no different |")
  assert "no different" in (w / "model" / "README.md").read_text()

  # WORKDIR/model as a crash before the export leaves it (no record) is never read as the adapted model.
  (w / "model" / EXPORT_RECORD).unlink()
  with pytest.raises(ModelSpecError, match="export .* is missing or incomplete"):
    resolve(str(w / "model"))
  proc = subprocess.run([sys.executable, "eval.py", "--config", "configs/eval.py:smoke", "--workdir",
                         str(tmp_path / "e"), f"--config.models=minilm,{w / 'model'}"],
                        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  err = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(err) == 1 and "missing or incomplete" in err[0] and err[0].startswith("eval.py: error:"), err


@pytest.mark.slow
def test_lora_run_loads_merged_from_its_workdir_and_its_export(tmp_path):
  """A LoRA run's checkpoint keeps the frozen encoder and the adapters apart; Encoder.from_pretrained(WORKDIR)
  merges them, and equals the exported HF folder (no interpolation): both differ from the base."""
  from jaxemb import Encoder
  _train_adapt_smoke(tmp_path / "w", steps=2, lora__rank=2, optim__lr=1e-3, interpolate__alphas="")
  base = Encoder.from_pretrained("minilm").params["encoder"]
  loaded = Encoder.from_pretrained(tmp_path / "w").params["encoder"]
  exported = Encoder.from_pretrained(tmp_path / "w" / "model").params["encoder"]
  for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(exported)):
    np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
  moved = [float(np.abs(x - b).max()) for x, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(base))]
  assert max(moved) > 0  # the adapters trained
  assert max(float(np.abs(x - b).max()) for x, b in
             zip(jax.tree.leaves(loaded["embeddings"]), jax.tree.leaves(base["embeddings"]))) == 0.0


def test_best_step_record_round_trips_and_ignores_steps_to_be_retrained(tmp_path):
  tree = {"layer": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "emb": [np.ones(2, np.float32)]}
  validation.save_best(tmp_path, 20, "val_probe_f1", 0.75, tree)
  score, step, got = validation.load_best(tmp_path, jax.tree.map(np.zeros_like, tree), 30, "val_probe_f1")
  assert (score, step) == (0.75, 20)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(tree)):
    np.testing.assert_array_equal(a, b)
  assert validation.load_best(tmp_path, tree, 10, "val_probe_f1") is None  # recorded after the resume point: retrained
  assert validation.load_best(tmp_path, tree, 30, "val_ndcg@10") is None   # scored by another metric: not comparable
  validation.save_best(tmp_path, 20, "val_ndcg@10", 0.5, tree)
  assert validation.load_best(tmp_path, tree, 30, "val_ndcg@10")[:2] == (0.5, 20)


@pytest.mark.slow
def test_keep_best_survives_a_resume(tmp_path):
  """validation.keep_best: the best step found before a stop is still a candidate after the resume (it was
  forgotten: a resumed run exported the best of the steps after the resume). The step-2 record's score is set
  to 1.0, which no later step can beat (strictly better replaces), so the resumed run must export step 2's
  weights, read back from the record."""
  import json
  from jaxemb import Encoder
  from safetensors.numpy import load_file, save_file
  kw = dict(validation__max_docs=32, validation__every=2, validation__keep_best=True, interpolate__alphas="")
  _train_adapt_smoke(tmp_path / "w", steps=2, **kw)
  record = tmp_path / "w" / validation.BEST_WEIGHTS
  step2 = load_file(str(record))
  save_file(step2, str(record), metadata={"step": "2", "val_probe_f1": "1.0"})
  _train_adapt_smoke(tmp_path / "w", steps=4, **kw)  # resumes at step 2
  rows = [json.loads(line) for line in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "val_probe_f1" in r] == [2, 4]
  export = json.loads((tmp_path / "w" / "export.json").read_text())
  assert (export["best_step"], export["best_val_probe_f1"]) == (2, 1.0)
  exported = Encoder.from_pretrained(tmp_path / "w" / "model").params["encoder"]
  flat = {validation._path_key(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(exported)[0]}
  assert flat.keys() == step2.keys()
  for k in step2:
    np.testing.assert_array_equal(flat[k], step2[k])


def test_validation_embeddings_do_not_depend_on_the_length_buckets(params):
  """embed() cuts each batch of length-sorted rows to its own bucket; the vectors equal mean pooling of the
  same rows at full width (the padding is masked out of attention and of the mean)."""
  from jaxemb.models.encoder import pooled_embeddings
  rng = np.random.default_rng(3)
  lengths = np.sort(rng.integers(3, 30, 20))                  # sorted, as from_prepared stores them
  ids = np.zeros((32, 32), np.int32)
  mask = np.zeros((32, 32), np.int32)
  for i, n in enumerate(np.concatenate([lengths, np.full(12, lengths[-1])])):
    ids[i, :n] = rng.integers(5, CFG.vocab_size, n)
    mask[i, :n] = 1
  vs = validation.ValidationSet(ids, mask, np.zeros(20, np.int64), 20)
  got = validation.embed(params["encoder"], vs, CFG)
  want = np.asarray(pooled_embeddings(params["encoder"], jnp.asarray(ids), jnp.asarray(mask), config=CFG))[:20]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
