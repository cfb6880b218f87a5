"""Whole-document embeddings (jaxemb/models/windows.py, Encoder.embed(window=...)): window spans by hand,
poolings against NumPy recomputations, and the encoder path against windows embedded one at a time."""

import numpy as np
import pytest

from jaxemb.models.windows import POOLINGS, Pooler, Windowing

SHORT = ["chest pain", "Pt c/o SOB, hx of CHF.", "denies fever", "BP 120/80"]
LONG = " ".join(f"word{i} pain fever cough" for i in range(60))  # ~300 tokens


def test_spans_hand_values():
  # window 8 with 2 special tokens = 6 text tokens; stride 2 overlap -> starts 0, 4, 8, 12
  w = Windowing(window=8, stride=2, pooling="mean")
  assert w.spans(13) == [(0, 6), (4, 10), (8, 13)]
  assert w.spans(6) == [(0, 6)]           # fits one window exactly
  assert w.spans(7) == [(0, 6), (4, 7)]
  assert w.spans(0) == [(0, 0)]           # an empty text: its special tokens alone, as truncation embeds it
  assert Windowing(8, 0, "mean").spans(13) == [(0, 6), (6, 12), (12, 13)]
  assert Windowing(8, 2, "mean", max_windows=2).spans(100) == [(0, 6), (4, 10)]


@pytest.mark.parametrize("bad, msg", [
    (Windowing(0, 0, "mean"), "needs windows"),
    (Windowing(64, 0, "avg"), "not one of"),
    (Windowing(2, 0, "mean"), "no room"),
    (Windowing(64, 62, "mean"), "stride 62"),
    (Windowing(1024, 0, "mean"), "position table"),
])
def test_bad_settings_name_the_setting(bad, msg):
  with pytest.raises(ValueError, match=msg):
    bad.check(2, 512)


def test_pooler_against_numpy():
  rng = np.random.default_rng(0)
  v = rng.normal(size=(5, 3)).astype(np.float32)
  doc = np.array([1, 0, 1, 1, 2])
  first = np.array([True, True, False, False, True])
  tokens = np.array([10.0, 7.0, 10.0, 4.0, 3.0])
  p = Pooler(3, 3, POOLINGS)
  # added in two passes and out of order: pools must not depend on either
  p.add(doc[3:], first[3:], tokens[3:], v[3:])
  p.add(doc[:3], first[:3], tokens[:3], v[:3])
  d1 = [0, 2, 3]  # document 1's windows, first window = row 0
  np.testing.assert_allclose(p.result("mean")[1], (v[d1] * tokens[d1, None]).sum(0) / tokens[d1].sum(), rtol=1e-6)
  np.testing.assert_allclose(p.result("mean_unweighted")[1], v[d1].mean(0), rtol=1e-6)
  np.testing.assert_array_equal(p.result("max")[1], v[d1].max(0))
  np.testing.assert_array_equal(p.result("first")[1], v[0])
  np.testing.assert_array_equal(p.result("mean_max")[1], np.concatenate([p.result("mean")[1], v[d1].max(0)]))
  for pooling in ("first", "mean", "mean_unweighted", "max"):  # one-window documents: that window, bit for bit
    np.testing.assert_array_equal(p.result(pooling)[[0, 2]], v[[1, 4]])


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
  from jaxemb import Encoder
  return Encoder.from_pretrained(tiny_model_dir)


def test_short_documents_get_exactly_the_truncated_vector(tiny):
  today = tiny.embed(SHORT, batch_size=4, max_length=64)
  out = tiny.embed_documents(SHORT, Windowing(64, 16, "mean"), poolings=POOLINGS, batch_size=4)
  for pooling in ("first", "mean", "mean_unweighted", "max"):
    np.testing.assert_array_equal(out[pooling], today, err_msg=pooling)
  np.testing.assert_array_equal(out["mean_max"], np.concatenate([today, today], 1))
  np.testing.assert_array_equal(tiny.embed(SHORT, batch_size=4, window=64, pooling="mean"), today)


def test_first_pooling_is_truncation_for_long_documents(tiny):
  texts = [LONG, *SHORT]
  np.testing.assert_allclose(tiny.embed(texts, batch_size=4, window=64, pooling="first"),
                             tiny.embed(texts, batch_size=4, max_length=64), rtol=1e-5, atol=1e-6)


def test_long_document_against_windows_embedded_one_by_one(tiny):
  """The independent route: the text's ids cut by hand (stride 8 -> 54 new tokens per 62-token window),
  each window wrapped in [CLS] .. [SEP] and embedded alone (no batching, no padding), pooled in NumPy."""
  from jaxemb.models.encoder import pooled_embeddings
  tok = tiny.tokenizer(LONG, add_special_tokens=False)["input_ids"]
  cls, sep = tiny.tokenizer.cls_token_id, tiny.tokenizer.sep_token_id
  starts = list(range(0, len(tok) - 8, 54))
  windows = [[cls, *tok[s:s + 62], sep] for s in starts]
  assert len(windows) >= 4 and windows[-1][-2] == tok[-1]
  v = np.stack([np.asarray(pooled_embeddings(tiny.params["encoder"], np.array([w], np.int32),
                                             np.ones((1, len(w)), np.int32), config=tiny.config))[0]
                for w in windows])
  n = np.array([len(w) for w in windows], np.float64)
  out = tiny.embed_documents([SHORT[0], LONG], Windowing(64, 8, "mean"), poolings=POOLINGS, batch_size=4,
                             windows_per_pass=3, docs_per_pass=1)  # several passes: streaming keeps the pools
  np.testing.assert_allclose(out["mean"][1], (v * n[:, None]).sum(0) / n.sum(), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out["mean_unweighted"][1], v.mean(0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out["max"][1], v.max(0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out["first"][1], v[0], rtol=1e-4, atol=1e-5)
  capped = tiny.embed([LONG], batch_size=4, window=64, stride=8, pooling="mean_unweighted", max_windows=2)
  np.testing.assert_allclose(capped[0], v[:2].mean(0), rtol=1e-4, atol=1e-5)


def test_pooling_without_windows_is_an_error(tiny):
  with pytest.raises(ValueError, match="needs windows"):
    tiny.embed(SHORT, pooling="mean")


# ------------------------------------------------------------------------------------ eval.py and the CLI
def test_eval_compares_poolings_side_by_side(tiny_model_dir, tmp_path):
  """window 192 mean and first next to truncation: documents of one window get the same vector under both,
  each row names its embedding, and the validation choice is the arg-max recomputed here from the rows."""
  import json

  from conftest import load_module
  from jaxemb.eval.cache import embedding_settings
  cfg = load_module("configs/eval.py", "jaxemb_eval_config_w").get_config("smoke")
  m = str(tiny_model_dir)
  cfg.models = f"{m},{m}#window=192#pooling=mean,{m}#window=192#pooling=first"
  cfg.data.max_docs, cfg.modes, cfg.tfidf, cfg.geometry.enabled = 120, "probe", False, False
  cfg.shots, cfg.seeds, cfg.probe.heads, cfg.probe.max_steps = "all", "0", "logreg", 50
  out = tmp_path / "out"
  doc = load_module("eval.py", "jaxemb_eval_cli_w").run(cfg, out)

  labels = {r["model"]: r["embedding"] for r in doc["runs"]}
  assert labels == {m: "first 64 tokens", f"{m}#window=192#pooling=mean": "mean of 192-token windows",
                    f"{m}#window=192#pooling=first": "first 192 tokens (window)"}
  assert {v["model"] for v in doc["verdict"]} == set(labels) - {m}
  # the cached vectors: one entry per pooling of the one window-192 pass
  entries = {}
  for meta in (out / "cache").glob("emb-*.json"):
    info = json.loads(meta.read_text())
    entries[json.dumps(info["settings"], sort_keys=True)] = np.load(meta.with_suffix(".npy"))
  mean = entries[json.dumps(embedding_settings(64, windowing=Windowing(192, 0, "mean")), sort_keys=True)]
  first = entries[json.dumps(embedding_settings(64, windowing=Windowing(192, 0, "first")), sort_keys=True)]
  from jaxemb import Encoder
  from jaxemb.eval.dataset import load_eval_data
  texts = load_eval_data(cfg.data).texts
  n_tok = np.array([len(t) for t in Encoder.from_pretrained(m).tokenizer(texts, add_special_tokens=False)["input_ids"]])
  short = n_tok <= 190
  assert short.any() and (~short).any()
  np.testing.assert_array_equal(mean[short], first[short])
  assert not np.allclose(mean[~short], first[~short])

  (chosen,) = doc["chosen_embedding"]
  val = {e: np.mean([r["macro_f1"] for r in doc["runs"] if r["model"] == e and r["split"] == "validation"])
         for e in labels}
  assert chosen["chosen"] == max(labels, key=lambda e: (val[e], -list(labels).index(e)))
  assert chosen["val_macro_f1"] == pytest.approx(val)
  report = (out / "report.md").read_text()
  assert "Embedding chosen on the validation split" in report and "mean of 192-token windows" in report


@pytest.mark.parametrize("entry, msg", [("#pooling=mean", "names no model"),
                                        ("M#pool=mean", "is not one of"),
                                        ("M#window=x", "must be an integer"),
                                        ("M#pooling=mean", "needs windows"),
                                        ("M#window=32#stride=40#pooling=mean", "stride 40")])
def test_bad_model_entries_name_the_entry(tiny_model_dir, entry, msg):
  from conftest import load_module
  from jaxemb.eval.dataset import EvalError
  from jaxemb.eval.evaluators import Plan
  cfg = load_module("configs/eval.py", "jaxemb_eval_config_w2").get_config("smoke")
  cfg.models = entry.replace("M", str(tiny_model_dir))
  with pytest.raises(EvalError, match=msg):
    Plan.from_config(cfg)


def test_truncation_keeps_the_cache_keys_written_before_windows():
  from jaxemb.eval.cache import embedding_settings
  # the settings of eval/cache.py before windows existed (git history): old cache entries stay valid
  assert embedding_settings(256) == {"max_length": 256, "pooling": "mean_last_hidden"}
  assert embedding_settings(256, windowing=Windowing()) == {"max_length": 256, "pooling": "mean_last_hidden"}
  assert embedding_settings(256, "bfloat16", Windowing(128, 16, "max")) == {
      "window": 128, "stride": 16, "max_windows": 0, "pooling": "max", "dtype": "bfloat16"}


def test_embed_cli_windows(tiny, tiny_model_dir, tmp_path):
  import json

  from jaxemb.eval.embed import write_embeddings
  data = tmp_path / "d.jsonl"
  data.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate([LONG, *SHORT])))
  meta = write_embeddings(str(tiny_model_dir), str(data), "text", str(tmp_path / "e"), window=64, stride=8,
                          pooling="mean_max", cache_dir=str(tmp_path / "cache"))
  z = np.load(tmp_path / "e.npy")
  assert meta["embedding"] == "mean_max of 64-token windows, stride 8" and z.shape == (5, 64)
  np.testing.assert_allclose(z, tiny.embed([LONG, *SHORT], window=64, stride=8, pooling="mean_max"),
                             rtol=1e-5, atol=1e-6)
  assert len(list((tmp_path / "cache").glob("emb-*.npy"))) == 5  # every pooling of the pass cached
  from jaxemb.cli import UserError
  with pytest.raises(UserError, match="needs windows"):
    write_embeddings(str(tiny_model_dir), str(data), "text", str(tmp_path / "f"), pooling="max")


def test_training_validator_embeds_documents_through_the_same_windows(tiny):
  """validation.ValidationSet / validation.embed (training-time validation) against Encoder.embed on the same texts:
  the validator reads the prepared corpus's token ids, eval.py the texts; the vectors must agree."""
  from jaxemb.data.masking import SpecialTokens
  from jaxemb.train import validation

  texts = [LONG, *SHORT, LONG[:400]]
  tok = tiny.tokenizer(texts, add_special_tokens=False)["input_ids"]

  class Prepared:  # the four things ValidationSet.from_prepared reads of a data.prepare.PreparedCorpus
    special = SpecialTokens.from_tokenizer(tiny.tokenizer)
    lengths = np.array([len(t) for t in tok])
    labels, label_index = ["a", "b"], [0, 1, 0, 1, 0, 1]

    def indices(self, splits):
      return np.arange(len(tok))

    def tokens_many(self, idx):
      return [np.asarray(tok[i], np.int32) for i in idx]

  for w in (Windowing(64, 8, "mean"), Windowing(64, 0, "max", max_windows=2)):
    vs = validation.ValidationSet.from_prepared(Prepared(), max_docs=100, max_length=256, seed=0, windowing=w)
    got = validation.embed(tiny.params["encoder"], vs, tiny.config)
    want = tiny.embed(texts, batch_size=4, window=w.window, stride=w.stride, pooling=w.pooling,
                      max_windows=w.max_windows)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(vs.labels_N, Prepared.label_index)


def test_model_card_names_the_embedding_and_how_to_reproduce_it():
  from jaxemb.models.card import verdict_markdown
  row = {"base": "minilm", "mode": "probe_logreg", "shots": "all", "diff": 0.031, "ci_low": 0.004,
         "ci_high": 0.058, "verdict": "better"}
  md = verdict_markdown([{**row, "model": "runs/a/model#window=128#pooling=mean",
                          "embedding": "mean of 128-token windows", "windowing": Windowing(128, 16, "mean")},
                         {**row, "model": "runs/a/model", "embedding": "first 256 tokens", "windowing": Windowing()}],
                        "notes.jsonl.gz", 256)
  lines = md.splitlines()
  assert lines[-2] == ("| `runs/a/model#window=128#pooling=mean` | probe_logreg | all | +0.031 | [+0.004, +0.058] | "
                       "better | mean of 128-token windows | `embed(texts, window=128, pooling=\"mean\", stride=16)` |")
  assert lines[-1].endswith("| first 256 tokens | `embed(texts, max_length=256)` |")
