"""Embedding cache: one `.npy` (float32 [N, D]) + one `.json` (what it is) per (model, texts, settings).

The key is a hash of
- the model's identity without loading it: the resolved path, the checkpoint step asked for, and
  (relative path, size, mtime) of every weight/config file that defines it (for a training workdir: the
  `model/` folder and the chosen step's checkpoint folder only, so a later checkpoint does not invalidate an
  embedding of `DIR@STEP`; "latest" naturally moves when a new step appears);
- the exact texts (a hash of their UTF-8 bytes, in order) and the embedding settings (max_length for
  truncation; window, stride, max_windows and pooling for whole documents; dtype).
No pickle: arrays load with allow_pickle=False.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from jaxemb import atomic

# Bump when the embedding computation changes meaning (pooling, cleaning): old cache entries then miss.
EMBED_VERSION = 1
_IGNORED_DIRS = {"cache", "eval", "tb", "logs", "tensorboard", "__pycache__"}
_MAX_FILES = 20000


def _file_stats(root: Path, base: Path) -> list[list[Any]]:
  out = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
    for f in sorted(filenames):
      if f.startswith("events.") or f.endswith(".log") or f == "README.md":
        # Training logs change while a run goes on, and eval.py writes its verdict into an exported model's
        # card (README.md): neither defines the weights, so neither invalidates cached embeddings or results.
        continue
      p = Path(dirpath) / f
      st = p.stat()
      out.append([str(p.relative_to(base)), st.st_size, st.st_mtime_ns])
      if len(out) > _MAX_FILES:
        raise ValueError(f"{root}: more than {_MAX_FILES} files; point the model at a model folder or workdir")
  return out


def model_fingerprint(spec: str) -> dict[str, Any]:
  """JSON-able identity of a model spec ("minilm", an HF folder, a workdir, "DIR@STEP").

  Raises jaxemb.resolve.ModelSpecError (a one-line user error) for a spec that names no model.
  """
  from jaxemb.resolve import resolve

  r = resolve(spec)
  folder = r.path.resolve()
  fp: dict[str, Any] = {"spec": spec, "path": str(folder), "step": r.requested_step}
  if r.kind == "workdir":
    fp["resolved_step"] = r.step
    fp["files"] = _file_stats(folder / "model", folder) + _file_stats(folder / "checkpoints" / str(r.step), folder)
  else:
    fp["files"] = _file_stats(folder, folder)
  return fp


def texts_digest(texts: Sequence[str]) -> str:
  h = hashlib.sha256()
  for t in texts:
    b = t.encode("utf-8")
    h.update(len(b).to_bytes(8, "little"))  # length-prefixed: ["ab", "c"] != ["a", "bc"]
    h.update(b)
  return h.hexdigest()


def cache_key(fingerprint: dict[str, Any], texts_sha: str, settings: dict[str, Any]) -> str:
  blob = json.dumps({"model": fingerprint, "texts": texts_sha, "settings": settings,
                     "version": EMBED_VERSION}, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:32]


def embedding_settings(max_length: int, dtype: str = "float32", windowing=None) -> dict[str, Any]:
  """The key's embedding settings. Truncation (no windowing, or window 0) keeps the settings keys written before
  windows existed, so those cache entries stay valid; windows key on window, stride, max_windows, pooling."""
  if windowing is None or windowing.window == 0:
    settings: dict[str, Any] = {"max_length": int(max_length), "pooling": "mean_last_hidden"}
  else:
    settings = {"window": int(windowing.window), "stride": int(windowing.stride),
                "max_windows": int(windowing.max_windows), "pooling": str(windowing.pooling)}
  if dtype != "float32":  # compute dtype of the encoder; float32 keys predate this field and stay valid
    settings["dtype"] = str(dtype)
  return settings


def cached_embeddings(spec: str, texts: Sequence[str], *, max_length: int, cache_dir: Path,
                      embed_fn: Callable[[], Any], log: Callable[[str], None] = print,
                      dtype: str = "float32", windowing=None) -> tuple[np.ndarray, dict[str, Any]]:
  """The [N, D] float32 embeddings of `texts` under model `spec`: from the cache, or `embed_fn()` then cached.

  embed_fn is only called on a miss (so the model is only loaded when needed); it must compute in `dtype`,
  which is part of the key, as is `windowing` (jaxemb.models.windows.Windowing; None = truncation at
  max_length). With windows, embed_fn may return {pooling: array} for several poolings of one pass: each is
  cached under its own key, and the one `windowing.pooling` names is returned. Returns (array, info).
  """
  fp = model_fingerprint(spec)
  sha = texts_digest(texts)
  settings = embedding_settings(max_length, dtype, windowing)
  key = cache_key(fp, sha, settings)
  cache_dir = Path(cache_dir)
  npy, meta = cache_dir / f"emb-{key}.npy", cache_dir / f"emb-{key}.json"
  if npy.exists() and meta.exists():
    info = json.loads(meta.read_text())
    z = np.load(npy, allow_pickle=False)
    if z.shape == (len(texts), info["dim"]) and z.dtype == np.float32:
      log(f"  embeddings of {spec}: cache hit {npy.name} ({z.shape[0]} x {z.shape[1]})")
      return z, {**info, "cache_hit": True, "cache_file": str(npy)}
    log(f"  embeddings of {spec}: cache entry {npy.name} has shape {z.shape}, expected ({len(texts)}, ...); "
        "recomputing")
  t0 = time.time()
  got = embed_fn()
  seconds = time.time() - t0
  for z_any in (got.values() if isinstance(got, dict) else [got]):
    if np.shape(z_any)[0] != len(texts):
      raise RuntimeError(f"embedder returned {np.shape(z_any)[0]} rows for {len(texts)} texts")
  if isinstance(got, dict):
    if windowing is None or windowing.pooling not in got:
      raise RuntimeError(f"embedder returned poolings {sorted(got)} without the one asked for")
    for pooling, z_other in got.items():  # the other poolings of the same pass: later entries hit the cache
      if pooling != windowing.pooling:
        other = dataclasses.replace(windowing, pooling=pooling)
        _store(cache_dir, spec, fp, sha, embedding_settings(max_length, dtype, other), z_other, seconds, log)
    got = got[windowing.pooling]
  z, info = _store(cache_dir, spec, fp, sha, settings, got, seconds, log)
  return z, {**info, "cache_hit": False, "cache_file": str(npy)}


def _store(cache_dir: Path, spec: str, fp: dict[str, Any], sha: str, settings: dict[str, Any], z: np.ndarray,
           seconds: float, log: Callable[[str], None]) -> tuple[np.ndarray, dict[str, Any]]:
  """Checks and writes one cache entry (write-then-rename); returns (array, info)."""
  key = cache_key(fp, sha, settings)
  npy, meta = cache_dir / f"emb-{key}.npy", cache_dir / f"emb-{key}.json"
  z = np.ascontiguousarray(z, np.float32)
  if not np.isfinite(z).all():
    raise FloatingPointError(f"embeddings of {spec} contain NaN/Inf")
  info = {"model": spec, "fingerprint": fp, "texts_sha256": sha, "settings": settings, "n": int(z.shape[0]),
          "dim": int(z.shape[1]), "seconds": round(seconds, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
          "embed_version": EMBED_VERSION}
  cache_dir.mkdir(parents=True, exist_ok=True)
  # write-then-rename: a crash mid-write never leaves a truncated entry that a later run would trust
  tmp = cache_dir / f".emb-{key}.{os.getpid()}.npy"
  np.save(tmp, z, allow_pickle=False)
  os.replace(tmp, npy)
  atomic.write_json(meta, info, indent=1)
  log(f"  embeddings of {spec}: computed {z.shape[0]} x {z.shape[1]} ({settings['pooling']}) in {seconds:.1f}s "
      f"-> {npy.name}")
  return z, info
