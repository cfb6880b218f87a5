"""Files written whole or not at all: a temporary file beside the target, then one rename (os.replace is atomic
on POSIX file systems), so a reader, or a rerun after a crash, sees the previous file or the new one, never a
torn one. The one writer of jaxemb's JSON records (config.json, data_spec.json, export.json, results.json,
cache metadata). Imports nothing from jaxemb."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def write_text(path: str | os.PathLike, text: str) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # the pid keeps two processes writing the same target (hosts of one run) from sharing a temporary file
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_text(text)
  os.replace(tmp, path)
  return path


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = False,
               default: Callable[[Any], Any] | None = None) -> Path:
  return write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n")
