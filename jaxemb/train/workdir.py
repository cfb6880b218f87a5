"""What keeps a training workdir consistent: one run at a time (a lock), a metrics log with each step once, and a
rerun that resumes only the same run (its objective, initial model and checkpoint step unit; `config.json`).

The lock is `DIR/.lock` (`DIR/.lock.<i>` for process i > 0 of a multi-host run), held with `fcntl.flock`
for the life of the run. The kernel releases a flock when its process dies, even by kill -9, so a lock whose
holder is gone is never mistaken for a live one; the file's JSON body (pid, host, start time) is only there to
name the holder. A second run on a workdir in use stops at once naming that holder; a lock file left by a
dead run is taken over with a message.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from absl import logging

from jaxemb import atomic
from jaxemb.cli import UserError, say


class WorkdirMismatchError(UserError, ValueError):
  """A workdir that already holds a different run."""


class WorkdirLockedError(UserError):
  """Another run holds the workdir."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except OSError as e:
    return e.errno == errno.EPERM  # alive, but another user's
  return True


class WorkdirLock:
  """Exclusive use of a workdir by this process until `release()` (or the process's end)."""

  def __init__(self, workdir: str | os.PathLike, process_index: int = 0):
    self.path = Path(workdir) / (".lock" if process_index == 0 else f".lock.{process_index}")
    self.fd: int | None = None

  def acquire(self) -> "WorkdirLock":
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a filesystem without locks
          say(f"warning: {self.path.parent} cannot be locked on this filesystem ({e.strerror}): nothing stops a "
               "second run on it")
          self.fd = fd
          return self
        if e.errno not in (errno.EAGAIN, errno.EACCES):
          os.close(fd)
          raise
        holder = _read_holder(fd)
        os.close(fd)
        raise WorkdirLockedError(
            f"{self.path.parent} is in use by another training run (pid {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')}, since {holder.get('started', '?')}); wait for it to finish or use "
            "another --workdir") from None
      # A run that was releasing may have unlinked the file between our open and our flock: then we hold a
      # lock on a file nobody else will look at. Only a lock on the file at self.path counts.
      try:
        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)
    previous = _read_holder(fd)
    if previous:
      pid, host = previous.get("pid"), previous.get("host")
      state = ("no longer running" if host == socket.gethostname() and isinstance(pid, int)
               and not _pid_alive(pid) else "its lock is released")
      say(f"taking over the stale lock {self.path} of pid {pid} on host {host} ({state})")
    body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, body, 0)
    os.fsync(fd)
    self.fd = fd
    return self

  def release(self) -> None:
    """Removes the lock file, then drops the lock: a run waiting on it finds no stale body."""
    if self.fd is None:
      return
    try:
      self.path.unlink()
    except FileNotFoundError:
      pass
    os.close(self.fd)
    self.fd = None

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _read_holder(fd: int) -> dict[str, Any]:
  try:
    data = os.pread(fd, 4096, 0)
    return json.loads(data) if data.strip() else {}
  except (OSError, ValueError):
    return {"pid": "?", "host": "?"}


def truncate_metrics(path: str | os.PathLike, step: int) -> int:
  """Drops the rows of `path` (metrics.jsonl) logged after `step`, the step a run resumes from: the resumed
  run logs them again, so each step appears once. Rows without a step stay; a torn line (a crash mid-write)
  goes. Atomic (write-then-rename). Returns the number of rows dropped."""
  path = Path(path)
  if not path.exists():
    return 0
  kept, dropped = [], 0
  for line in path.read_text().splitlines():
    try:
      row = json.loads(line)
    except ValueError:
      keep = False
    else:  # rows without a step (e.g. a header of counts) stay
      keep = not (isinstance(row, dict) and isinstance(row.get("step"), (int, float)) and row["step"] > step)
    if keep:
      kept.append(line)
    else:
      dropped += 1
  if dropped:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)
  return dropped


class MetricsLog:
  """metrics.jsonl + TensorBoard events (tensorboardX: no TensorFlow), written by host 0 only."""

  def __init__(self, workdir: Path, enabled: bool):
    self.enabled = enabled
    self.writer = None
    if enabled:
      self.file = open(workdir / "metrics.jsonl", "a", buffering=1)
      try:
        from tensorboardX import SummaryWriter
        self.writer = SummaryWriter(str(workdir / "tb"))
      except ImportError:  # optional: metrics.jsonl is the record of truth
        logging.warning("tensorboardX not installed: no TensorBoard events")

  def write(self, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    self.file.write(json.dumps({"step": step, **metrics}) + "\n")
    if self.writer is not None:
      for k, v in metrics.items():
        if isinstance(v, (int, float)):  # a verdict word stays in metrics.jsonl only
          self.writer.add_scalar(f"train/{k}", v, step)

  def close(self) -> None:
    if self.enabled:
      self.file.close()
      if self.writer is not None:
        self.writer.close()


def check_step_unit(meta: dict | None, accumulate: int, workdir: Path) -> None:
  """Checkpoints number optimiser updates ("step_unit": "update"); ones without the field numbered
  micro-batches, which differ only under gradient accumulation. Resuming those would restart at the wrong
  update, so they are refused with the way out."""
  if accumulate > 1 and (meta or {}).get("step_unit") != "update":
    raise WorkdirMismatchError(
        f"the checkpoints in {workdir / 'checkpoints'} number micro-batches, and this run accumulates "
        f"{accumulate} of them per optimiser update, and steps count updates: train into another --workdir, or "
        "finish this one with the jaxemb version that wrote it")


def check_workdir(cfg, workdir: Path, is_host0: bool) -> None:
  """Rerunning the same command resumes; a workdir of a different run is refused rather than mixed (the
  config is written by write_config once the corpus's data spec has been checked too)."""
  path = workdir / "config.json"
  current = json.loads(cfg.to_json_best_effort())
  if path.exists():
    previous = json.loads(path.read_text())
    for key in ("objective",):
      if previous.get(key) != current.get(key):
        raise WorkdirMismatchError(f"{workdir} holds a {previous.get(key)!r} run; this config is "
                                   f"{current.get(key)!r}. Use another --workdir.")
    if previous.get("model", {}).get("init") != current["model"]["init"]:
      raise WorkdirMismatchError(f"{workdir} was initialised from {previous['model']['init']!r}, this config "
                                 f"from {current['model']['init']!r}. Use another --workdir.")


def write_config(cfg, workdir: Path) -> None:
  atomic.write_json(workdir / "config.json", json.loads(cfg.to_json_best_effort()), sort_keys=True)
