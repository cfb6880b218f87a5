"""Hugging Face safetensors <-> Flax parameter trees, with every tensor accounted for.

The Flax tree mirrors HF's module names (see jaxemb/models/encoder.py) and keeps PyTorch's (out, in)
weight layout, so conversion is a rename: no transposes, bit-identical both ways.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from jaxemb.models.config import EncoderConfig

# Tensors HF checkpoints carry that the encoder does not use. They are kept aside (not dropped) and written
# back on export so the folder still loads in transformers without "newly initialised" warnings.
IGNORABLE = (
    re.compile(r"^(?:\w+\.)?embeddings\.position_ids$"),
    re.compile(r"^(?:\w+\.)?pooler\..*"),
    re.compile(r"^cls\.seq_relationship\..*"),  # BERT's next-sentence-prediction head
)
_PREFIXES = ("bert.", "roberta.", "model.")

_EMB = re.compile(r"^embeddings\.(word_embeddings|position_embeddings|token_type_embeddings)\.weight$")
_EMB_LN = re.compile(r"^embeddings\.LayerNorm\.(weight|bias|gamma|beta)$")
_LAYER = re.compile(
    r"^encoder\.layer\.(\d+)\.(attention\.self\.(?:query|key|value)|attention\.output\.dense|"
    r"attention\.output\.LayerNorm|intermediate\.dense|output\.dense|output\.LayerNorm)\.(weight|bias|gamma|beta)$")
_HEAD = {
    "cls.predictions.transform.dense": ("dense",),
    "cls.predictions.transform.LayerNorm": ("LayerNorm",),
    "lm_head.dense": ("dense",),
    "lm_head.layer_norm": ("LayerNorm",),
}
# The decoder is tied to the word embeddings, and its bias is the head bias under a second name.
_TIED = ("cls.predictions.decoder.weight", "lm_head.decoder.weight")
_BIAS_ALIASES = ("cls.predictions.decoder.bias", "lm_head.decoder.bias")
_HEAD_BIAS = ("cls.predictions.bias", "lm_head.bias")


class WeightsError(ValueError):
  """A checkpoint folder whose tensors do not match the encoder it describes."""


def _leaf(kind: str, is_ln: bool) -> str:
  if is_ln:
    return {"weight": "scale", "gamma": "scale", "bias": "bias", "beta": "bias"}[kind]
  return kind


def hf_name_to_path(name: str) -> tuple[str, ...] | None:
  """Flax path of an HF tensor name (prefix already stripped), or None if the name is not an encoder tensor."""
  if m := _EMB.match(name):
    return ("encoder", "embeddings", m.group(1), "embedding")
  if m := _EMB_LN.match(name):
    return ("encoder", "embeddings", "LayerNorm", _leaf(m.group(1), True))
  if m := _LAYER.match(name):
    i, mod, kind = m.groups()
    parts = mod.split(".")
    if parts[:2] == ["attention", "self"]:
      parts = ["attention", parts[2]]
    return ("encoder", f"layer_{i}", *parts, _leaf(kind, parts[-1] == "LayerNorm"))
  for hf, path in _HEAD.items():
    if name.startswith(hf + "."):
      kind = name[len(hf) + 1:]
      if kind in ("weight", "bias", "gamma", "beta"):
        return ("mlm_head", *path, _leaf(kind, path[-1] == "LayerNorm"))
  if name in _HEAD_BIAS:
    return ("mlm_head", "bias")
  return None


def _default_head_names(family: str) -> dict[tuple[str, ...], str]:
  if family == "roberta":
    base = {("dense",): "lm_head.dense", ("LayerNorm",): "lm_head.layer_norm"}
    bias = "lm_head.bias"
  else:
    base = {("dense",): "cls.predictions.transform.dense", ("LayerNorm",): "cls.predictions.transform.LayerNorm"}
    bias = "cls.predictions.bias"
  out = {("mlm_head", "bias"): bias}
  for p, hf in base.items():
    ln = p[-1] == "LayerNorm"
    out[("mlm_head", *p, "scale" if ln else "weight")] = f"{hf}.weight"
    out[("mlm_head", *p, "bias")] = f"{hf}.bias"
  return out


def expected_paths(config: EncoderConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Every encoder tensor path with its shape (the MLM head excluded)."""
  d, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
  e = {
      ("encoder", "embeddings", "word_embeddings", "embedding"): (v, d),
      ("encoder", "embeddings", "position_embeddings", "embedding"): (config.max_position_embeddings, d),
      ("encoder", "embeddings", "token_type_embeddings", "embedding"): (config.type_vocab_size, d),
      ("encoder", "embeddings", "LayerNorm", "scale"): (d,),
      ("encoder", "embeddings", "LayerNorm", "bias"): (d,),
  }
  for i in range(config.num_layers):
    l = ("encoder", f"layer_{i}")
    for name in ("query", "key", "value"):
      e[(*l, "attention", name, "weight")] = (d, d)
      e[(*l, "attention", name, "bias")] = (d,)
    e[(*l, "attention", "output", "dense", "weight")] = (d, d)
    e[(*l, "intermediate", "dense", "weight")] = (f, d)
    e[(*l, "intermediate", "dense", "bias")] = (f,)
    e[(*l, "output", "dense", "weight")] = (d, f)
    for sub in (("attention", "output"), ("output",)):
      e[(*l, *sub, "dense", "bias")] = (d,)
      e[(*l, *sub, "LayerNorm", "scale")] = (d,)
      e[(*l, *sub, "LayerNorm", "bias")] = (d,)
  return e


def head_paths(config: EncoderConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
  d = config.hidden_size
  return {("mlm_head", "dense", "weight"): (d, d), ("mlm_head", "dense", "bias"): (d,),
          ("mlm_head", "LayerNorm", "scale"): (d,), ("mlm_head", "LayerNorm", "bias"): (d,),
          ("mlm_head", "bias"): (config.vocab_size,)}


def read_safetensors(folder: Path) -> dict[str, np.ndarray]:
  """All tensors of a folder's model.safetensors (or its sharded index). Refuses pickle checkpoints."""
  single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
  if single.exists():
    return load_file(str(single))
  if index.exists():
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    out: dict[str, np.ndarray] = {}
    for s in shards:
      out.update(load_file(str(folder / s)))
    return out
  if (folder / "pytorch_model.bin").exists():
    raise WeightsError(
        f"{folder}: only pytorch_model.bin found. jaxemb refuses pickle-based checkpoints: unpickling an "
        "untrusted file can execute arbitrary code. Convert it once, in an environment with torch, with:\n"
        f"  python -c \"from transformers import AutoModel; m = AutoModel.from_pretrained('{folder}'); "
        f"m.save_pretrained('{folder}', safe_serialization=True)\"\n"
        "which writes model.safetensors next to it.")
  raise WeightsError(f"{folder}: no model.safetensors (or model.safetensors.index.json) found")


def _strip_prefix(names: list[str]) -> str:
  for p in _PREFIXES:
    if any(n.startswith(p + "embeddings.") for n in names):
      return p
  return ""


def import_hf_tensors(tensors: dict[str, np.ndarray], config: EncoderConfig, source: str = "model.safetensors"):
  """HF tensors -> (params, names, extras, head_loaded).

  params: {"encoder": ..., "mlm_head": ...} float32 numpy (mlm_head only if present in the file);
  names: flax path -> original HF name (export writes the same names back);
  extras: ignorable tensors kept verbatim. Raises WeightsError listing every problem at once.
  """
  prefix = _strip_prefix(list(tensors))
  flat: dict[tuple[str, ...], np.ndarray] = {}
  names: dict[tuple[str, ...], str] = {}
  extras: dict[str, np.ndarray] = {}
  unexpected, problems = [], []
  wte_name = None
  for full, arr in tensors.items():
    name = full[len(prefix):] if prefix and full.startswith(prefix) else full
    if any(p.match(full) or p.match(name) for p in IGNORABLE):
      extras[full] = arr
      continue
    if full in _TIED or full in _BIAS_ALIASES:
      extras[full] = arr  # checked below: must equal what it is tied to
      continue
    path = hf_name_to_path(name)
    if path is None:
      unexpected.append(full)
      continue
    flat[path] = np.asarray(arr, dtype=np.float32)
    names[path] = full
    if path[-2] == "word_embeddings":
      wte_name = full
  want = expected_paths(config)
  head_want = head_paths(config)
  head_found = [p for p in flat if p[0] == "mlm_head"]
  head_loaded = bool(head_found)
  if head_loaded:
    want = {**want, **head_want}
  expected_names = default_names(config)
  missing = [prefix + expected_names[p] if p[0] == "encoder" else expected_names[p] for p in want if p not in flat]
  for p, shape in want.items():
    if p in flat and flat[p].shape != shape:
      problems.append(f"{names[p]}: shape {flat[p].shape}, config expects {shape}")
  for tied in _TIED:
    if tied in extras and wte_name is not None and tied in tensors:
      if tensors[tied].shape != tensors[wte_name].shape or not np.array_equal(tensors[tied], tensors[wte_name]):
        problems.append(f"{tied}: decoder weight differs from {wte_name}; jaxemb ties them (untied heads are "
                        "not supported)")
  if missing or unexpected or problems:
    lines = [f"{source}: tensors do not match the encoder described by config.json"]
    if missing:
      lines.append(f"  missing ({len(missing)}): " + ", ".join(sorted(missing)))
    if unexpected:
      lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(sorted(unexpected)))
    lines += ["  " + p for p in problems]
    raise WeightsError("\n".join(lines))
  params: dict[str, Any] = {}
  for path, arr in flat.items():
    node = params
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = arr
  for p, n in _default_head_names(config.family).items():
    names.setdefault(p, n)  # head names are top level in every HF *ForMaskedLM class
  return params, names, extras, head_loaded


def flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def export_hf_tensors(params: dict, names: dict[tuple[str, ...], str], extras: dict[str, np.ndarray],
                      include_head: bool = True) -> dict[str, np.ndarray]:
  """params -> HF-named tensors (inverse of import_hf_tensors). Tied decoder weights are rewritten from the
  current word embeddings so they stay tied after training."""
  out: dict[str, np.ndarray] = {}
  for path, arr in flatten(params).items():
    if path[0] == "mlm_head" and not include_head:
      continue
    name = names.get(path)
    if name is None:
      raise KeyError(f"no Hugging Face name known for parameter {'/'.join(path)}")
    out[name] = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
  wte = out[names[("encoder", "embeddings", "word_embeddings", "embedding")]]
  for name, arr in extras.items():
    if name in _TIED:
      if include_head:
        out[name] = wte.copy()
    elif name in _BIAS_ALIASES:
      if include_head and ("mlm_head", "bias") in names and names[("mlm_head", "bias")] in out:
        out[name] = out[names[("mlm_head", "bias")]].copy()
    else:
      out[name] = arr
  return out


def save_tensors(tensors: dict[str, np.ndarray], path: Path) -> None:
  save_file(tensors, str(path), metadata={"format": "pt"})


def default_names(config: EncoderConfig) -> dict[tuple[str, ...], str]:
  """HF names of a freshly initialised model (BertModel / RobertaModel layout, no prefix) plus head names."""
  names = {}
  for path in expected_paths(config):
    _, mod, *rest = path
    if mod == "embeddings":
      sub, leaf = rest
      names[path] = f"embeddings.{sub}.weight" if sub != "LayerNorm" else f"embeddings.LayerNorm.{_hf_leaf(leaf)}"
    else:
      i = mod.split("_")[1]
      *subs, leaf = rest
      if subs[0] == "attention" and subs[1] in ("query", "key", "value"):
        subs = ["attention", "self", subs[1]]
      names[path] = f"encoder.layer.{i}.{'.'.join(subs)}.{_hf_leaf(leaf)}"
  names.update(_default_head_names(config.family))
  return names


def _hf_leaf(leaf: str) -> str:
  return "weight" if leaf in ("scale", "weight") else leaf
