"""Write a corpus's embeddings to disk:

  python -m jaxemb.eval.embed --model M --data FILE --text-field F --out PREFIX
      [--id-field id] [--max-length 256] [--batch-size 32] [--normalize] [--cache-dir DIR]
      [--window 0 --stride 0 --pooling first --max-windows 0]

M: "minilm", an HF folder, or a jaxemb training workdir (DIR = latest step, DIR@STEP). FILE: .jsonl(.gz) /
.csv / .parquet. Writes PREFIX.npy (float32 [N, D], masked mean of the last hidden layer of each document's
first --max-length tokens, or with --window W > 0 of the whole document in windows of W tokens pooled by
--pooling (first, mean, mean_unweighted, max, mean_max: [N, 2 D]; jaxemb/models/windows.py); row i = the
i-th kept document in file order), PREFIX.ids.json (the N document ids, same order) and PREFIX.json (model,
corpus, settings, and the reader's skip report: rows without text are skipped and counted, never silently).
No pickle. With --cache-dir the embeddings also go through the evaluator's cache (same keys as eval.py).
Expected errors print one line `python -m jaxemb.eval.embed: error: ...` and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from jaxemb import atomic, cli
from jaxemb.cli import UserError


def write_embeddings(model: str, data: str, text_field: str, out_prefix: str, *, id_field: str | None = "id",
                     max_length: int = 256, batch_size: int = 32, normalize: bool = False,
                     cache_dir: str | None = None, dtype: str = "float32", window: int = 0, stride: int = 0,
                     pooling: str = "first", max_windows: int = 0) -> dict:
  """Embeds every document of `data` with `model`; returns the metadata written to PREFIX.json."""
  from jaxemb.data.corpus import Fields, load_documents
  from jaxemb.data.readers import peek_fields
  from jaxemb.models.windows import POOLINGS, Windowing

  windowing = Windowing(window, stride, pooling, max_windows)
  try:
    windowing.check()
  except ValueError as e:
    raise UserError(f"--window/--stride/--pooling/--max-windows: {e}") from None

  path = Path(data).expanduser()
  if not path.exists():
    raise UserError(f"--data {path} does not exist")
  present = peek_fields(path)
  if text_field not in present:
    raise UserError(f"--text-field {text_field!r} is not a field of {path} (fields seen: "
                    f"{', '.join(sorted(present))})")
  if id_field and id_field not in present:
    id_field = None  # ids then default to "file:line", which the reader guarantees unique
  docs, skips = load_documents(path, Fields(text=text_field, id=id_field))
  if not docs:
    raise UserError(f"{path}: no documents with a non-empty {text_field!r} ({skips.summary().splitlines()[0]})")
  texts = [d.text for d in docs]

  def compute() -> np.ndarray:
    from jaxemb import Encoder
    try:
      enc = Encoder.from_pretrained(model)
    except UserError:  # a bad spec (jaxemb.resolve): its message names the model already
      raise
    except (ValueError, FileNotFoundError, OSError) as e:
      raise UserError(f"--model {model!r}: {e}".replace("\n", " ")) from None
    try:
      if window == 0:
        return enc.embed(texts, batch_size=batch_size, max_length=max_length, dtype=dtype)
      # every pooling of the one pass: the cache then holds them all (as eval.py's does)
      return enc.embed_documents(texts, windowing, poolings=POOLINGS if cache_dir else None,
                                 batch_size=batch_size, dtype=dtype)
    except ValueError as e:  # e.g. max_length beyond the model's position table
      raise UserError(f"--model {model!r}: {e}") from None

  if cache_dir:
    from jaxemb.eval.cache import cached_embeddings
    try:
      z_NxD, _ = cached_embeddings(model, texts, max_length=max_length, cache_dir=Path(cache_dir),
                                   embed_fn=compute, dtype=dtype, log=lambda m: print(m, file=sys.stderr),
                                   windowing=windowing)
    except FileNotFoundError as e:
      raise UserError(str(e)) from None
  else:
    z_NxD = compute()
    if isinstance(z_NxD, dict):
      z_NxD = z_NxD[pooling]
  if normalize:
    z_NxD = z_NxD / np.maximum(np.linalg.norm(z_NxD, axis=1, keepdims=True), 1e-12)

  prefix = Path(out_prefix).expanduser()
  prefix.parent.mkdir(parents=True, exist_ok=True)
  meta = {"model": model, "data": str(path), "text_field": text_field, "id_field": id_field,
          "n": int(z_NxD.shape[0]), "dim": int(z_NxD.shape[1]), "max_length": max_length,
          "normalized": normalize, "pooling": "mean_last_hidden", "window": window, "stride": stride,
          "window_pooling": pooling, "max_windows": max_windows, "embedding": windowing.label(max_length), "dtype": dtype, "skip_report": skips.to_dict()}
  # Write-then-rename so a crash never leaves a truncated .npy next to a complete ids file.
  with tempfile.NamedTemporaryFile(dir=prefix.parent, suffix=".npy", delete=False) as f:
    np.save(f, z_NxD.astype(np.float32), allow_pickle=False)
  os.replace(f.name, f"{prefix}.npy")
  atomic.write_json(f"{prefix}.ids.json", [d.id for d in docs], indent=None)
  atomic.write_json(f"{prefix}.json", meta, indent=1)
  return meta


def use_every_cpu_core_as_a_device() -> None:
  """One CPU device per core, so that Encoder.embed runs one chunked program per core at the same time (~18%
  faster on 2 cores than XLA's intra-op threading alone; docs/PERFORMANCE.md). Kept off when the user chose a
  count (JAX_NUM_CPU_DEVICES, or --xla_force_host_platform_device_count in XLA_FLAGS) and when jax's backends
  have already started. Only the CPU backend is shaped by it; single-device work (probes, fine-tuning) still
  uses every core."""
  import jax
  if "JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    return
  try:
    jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
  except RuntimeError:  # backends already initialised (e.g. called from a notebook): keep what is there
    pass


PROG = "python -m jaxemb.eval.embed"


def main(argv: list[str] | None = None) -> int:
  cli.set_environment_defaults()  # before transformers is imported
  parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", required=True)
  parser.add_argument("--data", required=True)
  parser.add_argument("--text-field", default="text")
  parser.add_argument("--id-field", default="id")
  parser.add_argument("--out", required=True, help="output prefix: PREFIX.npy, PREFIX.ids.json, PREFIX.json")
  parser.add_argument("--max-length", type=int, default=256)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--normalize", action="store_true", help="L2-normalise the rows")
  parser.add_argument("--cache-dir", default=None)
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                      help="encoder compute dtype (bfloat16: ~2x faster on CPUs with AMX, slower on CPUs without "
                      "bf16 units such as AMD Zen 3; slightly different numbers)")
  parser.add_argument("--window", type=int, default=0,
                      help="tokens per window incl. special tokens; 0 = the first --max-length tokens only")
  parser.add_argument("--stride", type=int, default=0, help="overlap of consecutive windows, in tokens")
  parser.add_argument("--pooling", default="first",
                      help="first | mean (token-weighted) | mean_unweighted | max | mean_max (needs --window)")
  parser.add_argument("--max-windows", type=int, default=0, help="windows kept per document (0 = all)")
  parser.add_argument("--verbose", action="store_true", help="show library logs and error tracebacks")
  args = parser.parse_args(argv)
  cli.quiet_library_logs(args.verbose)
  use_every_cpu_core_as_a_device()
  return cli.run_main(PROG, _write, args, verbose=args.verbose)


def _write(args: argparse.Namespace) -> int:
  meta = write_embeddings(args.model, args.data, args.text_field, args.out, id_field=args.id_field,
                          max_length=args.max_length, batch_size=args.batch_size, normalize=args.normalize,
                          cache_dir=args.cache_dir, dtype=args.dtype, window=args.window, stride=args.stride,
                          pooling=args.pooling, max_windows=args.max_windows)
  skipped = meta["skip_report"]["skipped"]
  print(f"wrote {meta['n']} x {meta['dim']} embeddings to {args.out}.npy (+ .ids.json, .json); "
        f"{skipped} rows skipped" + (f" (see {args.out}.json)" if skipped else ""))
  return 0


if __name__ == "__main__":
  sys.exit(main())
