"""The public API: `Encoder.from_pretrained(path)`, `enc.embed(texts)`, `enc.save_pretrained(out_dir)`."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxemb.models.inference import inference_batches, pad_sequences
from jaxemb.models import convert
from jaxemb.models import lora as lora_lib
from jaxemb.models.config import EncoderConfig
from jaxemb.models.encoder import init_mlm_head, jitted_embed_fn
from jaxemb.models.windows import Pooler, Windowing
from jaxemb.resolve import load_tokenizer, packaged_minilm_dir, resolve

# Small files sentence-transformers reads; copied through on export so the adapted folder loads there unchanged.
_ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
             "1_Pooling/config.json", "README.md")


class Encoder:
  """A BERT/RoBERTa encoder with its tokenizer; embeddings are masked means of the last hidden layer."""

  def __init__(self, config: EncoderConfig, params: dict, tokenizer, *, hf_config: dict, names: dict,
               extras: dict, head_loaded: bool, source_dir: Path | None, name: str):
    self.config = config
    self.params = params
    self.tokenizer = tokenizer
    self.hf_config = hf_config
    self.names = names
    self.extras = extras
    self.head_loaded = head_loaded
    self.source_dir = source_dir
    self.name = name
    self._placed = None  # (mesh devices, the encoder leaves placed from, the placed copy): see _replicated_encoder

  # ------------------------------------------------------------------------------------------ loading
  @classmethod
  def from_pretrained(cls, path: str | os.PathLike | None = None, *, head_seed: int = 0) -> "Encoder":
    """Load an HF folder, `"minilm"` (the packaged all-MiniLM-L6-v2) or a jaxemb workdir (`DIR` or `DIR@STEP`).
    A bad spec raises jaxemb.resolve.ModelSpecError (a ValueError; ModelNotFoundError for a missing path)."""
    r = resolve(path)
    enc = cls._from_hf_folder(r.folder, head_seed, name=r.name)
    if r.kind == "workdir":
      like = {k: enc.params[k] for k in ("encoder", "mlm_head")}
      rank, scale, targets = _lora_settings(r.workdir)
      if rank:  # a LoRA run's checkpoint keeps the frozen encoder and its adapters apart: merge them
        like["lora"] = lora_lib.init_lora(enc.params["encoder"], rank, targets)
      params = r.checkpoint_params(like)
      if rank:
        params = {"encoder": jax.tree.map(np.asarray, lora_lib.merge(params["encoder"], params.pop("lora"), scale)),
                  "mlm_head": params["mlm_head"]}
      enc.params = _read_only(params)
      enc.head_loaded = True
    return enc

  @classmethod
  def _from_hf_folder(cls, folder: Path, head_seed: int, name: str) -> "Encoder":
    config = EncoderConfig.from_file(folder / "config.json")
    hf_config = json.loads((folder / "config.json").read_text())
    tensors = convert.read_safetensors(folder)
    params, names, extras, head_loaded = convert.import_hf_tensors(tensors, config, source=str(folder))
    if not head_loaded:
      # all-MiniLM-L6-v2 ships no MLM head: a fresh one, HF-initialised, seeded.
      params["mlm_head"] = init_mlm_head(config, head_seed)
    tokenizer = load_tokenizer(folder)
    if len(tokenizer) > config.vocab_size:
      raise ValueError(f"{folder}: tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                       f"{config.vocab_size}")
    return cls(config, _read_only(params), tokenizer, hf_config=hf_config, names=names, extras=extras,
               head_loaded=head_loaded, source_dir=folder, name=name)

  @classmethod
  def from_config(cls, config: EncoderConfig, tokenizer_dir: str | os.PathLike | None = None, seed: int = 0,
                  name: str = "random") -> "Encoder":
    """A randomly initialised encoder (HF-style init) with the tokenizer of `tokenizer_dir` (default MiniLM's).
    For tests and from-scratch experiments."""
    from jaxemb.models.encoder import init_params
    tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else packaged_minilm_dir()
    hf_config = {"model_type": config.family, "architectures": ["BertModel" if config.family == "bert"
                                                                 else "RobertaModel"],
                 "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
                 "num_hidden_layers": config.num_layers, "num_attention_heads": config.num_heads,
                 "intermediate_size": config.intermediate_size,
                 "max_position_embeddings": config.max_position_embeddings,
                 "type_vocab_size": config.type_vocab_size, "layer_norm_eps": config.layer_norm_eps,
                 "hidden_act": config.hidden_act, "hidden_dropout_prob": config.hidden_dropout,
                 "attention_probs_dropout_prob": config.attention_dropout, "pad_token_id": config.pad_token_id,
                 "initializer_range": config.initializer_range, "position_embedding_type": "absolute"}
    return cls(config, init_params(config, seed), load_tokenizer(tok_dir), hf_config=hf_config,
               names=convert.default_names(config), extras={}, head_loaded=False, source_dir=None, name=name)

  # ------------------------------------------------------------------------------------------ embedding
  def tokenize(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids with special tokens, truncated to max_length (special tokens included)."""
    _check_texts(texts)
    if max_length < 2:
      raise ValueError(f"max_length must be >= 2 (room for the special tokens), got {max_length}")
    if max_length > self.config.max_tokens:
      raise ValueError(f"max_length {max_length} exceeds what the model's position table allows "
                       f"({self.config.max_tokens})")
    if not texts:
      return []
    return self.tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True,
                          return_attention_mask=False, return_token_type_ids=False)["input_ids"]

  def embed(self, texts: Sequence[str], batch_size: int = 32, max_length: int = 256, normalize: bool = False,
            dtype: str = "float32", *, window: int = 0, stride: int = 0, pooling: str = "first",
            max_windows: int = 0) -> np.ndarray:
    """Embeddings float32 [N, D] in input order (mean_max: [N, 2 D]).

    window = 0 (the default): each text's first `max_length` tokens (special tokens included), masked mean of
    the last hidden layer over its non-pad tokens. window > 0: the whole document, cut into windows of
    `window` tokens (special tokens included) overlapping by `stride`, at most `max_windows` of them (0 = all),
    each embedded like a short text and pooled per document by `pooling` (first, mean = token-weighted,
    mean_unweighted, max, mean_max; jaxemb/models/windows.py). A text that fits one window gets exactly the
    vector of window = 0 with max_length = window. `normalize` L2-normalises the final (pooled) rows.

    Texts (or windows) are sorted by length and each batch is padded to the next multiple of 32 tokens; a last
    partial batch is split into halvings of batch_size (`inference_batch_sizes`: 20 rows run as 16 + 4, not
    padded to 32). So little padding is computed, and the forward pass compiles once per (rows, length)
    bucket. With several devices each batch is sharded over them. On CPU each device runs its rows in chunks
    of ~512 tokens whose activations stay in cache (`encoder.rows_per_chunk`; 1.2-2x faster at 128-512
    tokens, docs/PERFORMANCE.md), and rows of 448+ tokens through attention in blocks of queries (~10% at 512).
    """
    if window == 0:
      if pooling != "first":
        Windowing(0, stride, pooling, max_windows).check()  # the one message for pooling without windows
      ids = self.tokenize(texts, max_length)
      out = np.zeros((len(ids), self.config.hidden_size), np.float32)
      for rows, z_BxD in self._embed_ids(ids, batch_size, max_length, dtype, normalize):
        out[rows] = z_BxD
      return out
    z = self.embed_documents(texts, Windowing(window, stride, pooling, max_windows), batch_size=batch_size,
                             dtype=dtype)[pooling]
    if normalize:
      z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return z

  def embed_documents(self, texts: Sequence[str], windowing: Windowing, *, poolings: Sequence[str] | None = None,
                      batch_size: int = 32, dtype: str = "float32", docs_per_pass: int = 256,
                      windows_per_pass: int = 2048) -> dict[str, np.ndarray]:
    """Whole-document embeddings under several poolings from one pass: {pooling: float32 [N, D]} for
    `poolings` (default: windowing.pooling; POOLINGS gives all of them for the cost of one).

    Streamed: texts are tokenised `docs_per_pass` at a time and their windows embedded once
    `windows_per_pass` have gathered (sorted by length, batched like texts: windows of many documents share a
    batch), then added to running per-document pools, so memory holds one pass of windows however long the
    documents are. With only `first` asked for, only each document's first window is cut."""
    _check_texts(texts)
    # Each window is wrapped as the model's tokenizer wraps a single text, [CLS] .. [SEP] (RoBERTa: <s> .. </s>),
    # the same wrapping as the training batch builders (data/batching.py pad_rows).
    cls, sep, n_special = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id, 2
    windowing.check(n_special, self.config.max_tokens)
    if windowing.window == 0:
      raise ValueError("embed_documents needs window > 0; window 0 is embed(texts, max_length=...)")
    poolings = tuple(dict.fromkeys(poolings or (windowing.pooling,)))
    for p in poolings:
      dataclasses.replace(windowing, pooling=p).check(n_special)
    if poolings == ("first",):
      windowing = dataclasses.replace(windowing, max_windows=1)
    pool = Pooler(len(texts), self.config.hidden_size, poolings)
    pending: list[tuple[int, bool, list[int]]] = []  # (document, first window?, ids with special tokens)

    def flush():
      ids = [w[2] for w in pending]
      doc_W = np.array([w[0] for w in pending], np.int64)
      first_W = np.array([w[1] for w in pending])
      tokens_W = np.array([len(x) for x in ids], np.float64)
      for rows, z_BxD in self._embed_ids(ids, batch_size, windowing.window, dtype, False):
        pool.add(doc_W[rows], first_W[rows], tokens_W[rows], z_BxD)
      pending.clear()

    for lo in range(0, len(texts), docs_per_pass):
      # verbose=False: documents longer than the model's window are expected here (they are cut below)
      content = self.tokenizer(list(texts[lo:lo + docs_per_pass]), add_special_tokens=False, verbose=False,
                               return_attention_mask=False, return_token_type_ids=False)["input_ids"]
      for d, tok in enumerate(content, start=lo):
        for k, (a, b) in enumerate(windowing.spans(len(tok), n_special)):
          pending.append((d, k == 0, [cls, *tok[a:b], sep]))
        if len(pending) >= windows_per_pass:
          flush()
    if pending:
      flush()
    return {p: pool.result(p) for p in poolings}

  def _embed_ids(self, ids: list[list[int]], batch_size: int, max_length: int, dtype: str, normalize: bool):
    """Yields (row indices, float32 [rows, D]) covering every id list once: the batched, sharded forward pass
    both embed paths share (one batch kept in flight while the next is prepared)."""
    if not ids:
      return
    fn = jitted_embed_fn(self.config, dtype, normalize)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rep, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    plan = inference_batches([len(x) for x in ids], batch_size, max_length, jax.device_count())
    params = self._replicated_encoder(mesh, rep)
    pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.config.pad_token_id
    pending = []
    for rows, size, length in plan:
      ids_BxL, mask_BxL = pad_sequences([ids[i] for i in rows], size, length, pad)
      # Dispatch the next batch before reading this one back: keeps the device busy.
      pending.append((rows, fn(params, jax.device_put(ids_BxL, shard), jax.device_put(mask_BxL, shard))))
      if len(pending) > 1:
        r0, y0 = pending.pop(0)
        yield r0, np.asarray(y0)[:len(r0)]
    for r0, y0 in pending:
      yield r0, np.asarray(y0)[:len(r0)]

  def _replicated_encoder(self, mesh: Mesh, rep: NamedSharding):
    """The encoder parameters on every device of `mesh`, copied once and reused while they are the same
    immutable arrays (a copy of MiniLM to 2 CPU devices costs ~80 ms, more than embedding one short text).
    Immutable: jax arrays, or read-only numpy arrays (what from_pretrained loads). Replacing self.params or any
    array in it makes a new copy; writable numpy arrays (e.g. passed to replace_params) are copied every call."""
    leaves = jax.tree.leaves(self.params["encoder"])
    devices = tuple(mesh.devices.flat)
    if self._placed is not None:
      placed_devices, placed_from, placed = self._placed
      if placed_devices == devices and len(placed_from) == len(leaves) and all(
          a is b for a, b in zip(placed_from, leaves)):
        return placed
    placed = jax.device_put(self.params["encoder"], rep)
    immutable = all(isinstance(x, jax.Array) or (isinstance(x, np.ndarray) and not x.flags.writeable)
                    for x in leaves)
    self._placed = (devices, leaves, placed) if immutable else None
    return placed

  # ------------------------------------------------------------------------------------------ export
  def save_pretrained(self, out_dir: str | os.PathLike, include_mlm_head: bool = True,
                      extra_files: dict[str, str] | None = None) -> Path:
    """Write an HF folder (config.json, model.safetensors with the original tensor names, tokenizer files)
    that loads in transformers / sentence-transformers unchanged. Written to a temporary folder first and
    moved into place, so an interrupted save never leaves a half-written model. `extra_files` (name -> text,
    e.g. a model card and its export record) are written into the same temporary folder: they appear with the
    weights or not at all."""
    out = Path(out_dir).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
      params = jax.tree.map(np.asarray, self.params)
      include = include_mlm_head and "mlm_head" in params
      if not include:
        params = {"encoder": params["encoder"]}
      tensors = convert.export_hf_tensors(params, self.names, self.extras, include_head=include)
      convert.save_tensors(tensors, tmp / "model.safetensors")
      hf_config = copy.deepcopy(self.hf_config)
      (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
      self.tokenizer.save_pretrained(str(tmp))
      if self.source_dir is not None:
        for rel in _ST_FILES:
          src = self.source_dir / rel
          if src.exists():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / rel)
      for rel, text in (extra_files or {}).items():
        (tmp / rel).write_text(text)
      if out.exists():
        old = out.with_name(f".{out.name}.old")
        if old.exists():
          shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
      else:
        os.replace(tmp, out)
    finally:
      if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    return out

  def replace_params(self, params: dict[str, Any]) -> "Encoder":
    """A copy of this encoder with other parameters (same architecture, tokenizer and names)."""
    enc = copy.copy(self)
    enc.params = params
    return enc

  def __repr__(self) -> str:
    c = self.config
    return (f"Encoder({self.name!r}, {c.family}, layers={c.num_layers}, hidden={c.hidden_size}, "
            f"heads={c.num_heads}, vocab={c.vocab_size})")


def _read_only(params: dict) -> dict:
  """The loaded arrays are ours: read-only, so the device copy embed() keeps of them cannot go stale."""
  for leaf in jax.tree.leaves(params):
    if isinstance(leaf, np.ndarray):
      leaf.flags.writeable = False
  return params


def _check_texts(texts) -> None:
  if isinstance(texts, (str, bytes)):
    raise TypeError("texts must be a sequence of strings, not a single string; wrap it in a list")
  if not isinstance(texts, Sequence) and not hasattr(texts, "__len__"):
    raise TypeError(f"texts must be a sequence of strings, got {type(texts).__name__}")
  for i, t in enumerate(texts):
    if not isinstance(t, str):
      raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")


def _lora_settings(workdir: Path) -> tuple[int, float, str]:
  """(rank, alpha / rank, targets) of a training workdir's LoRA adapters (config.json); rank 0 = none."""
  path = Path(workdir) / "config.json"
  lora = json.loads(path.read_text()).get("lora", {}) if path.is_file() else {}
  rank = int(lora.get("rank", 0) or 0)
  return rank, (float(lora.get("alpha", 16.0)) / rank if rank else 0.0), str(lora.get("targets", "attention,ffn"))
