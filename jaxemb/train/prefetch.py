"""Batches built and placed on the devices ahead of the step that uses them, in a background thread.

The train step is dispatched asynchronously, so the host is free while the devices compute: a thread that
builds the next host batch (tokens, masks, windows: 4-60 ms) and copies it to the devices keeps `depth`
batches ready, and the loop never waits on the host pipeline unless it is slower than the step. Order and
content are those of the synchronous loop (one producer, a FIFO queue): same batches, same losses.

Each item carries the iterator's state right after its batch was drawn, so a checkpoint saved after step n
records the data position of step n, not of the batches already queued beyond it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator


class Prefetch(Iterator):
  """Iterator over `produce()` results computed up to `depth` items ahead by one daemon thread.

  depth 0: no thread; `produce()` runs inline in `__next__` (the synchronous loop). An exception raised by
  `produce` (StopIteration included) is raised by the `__next__` that would have returned its item.
  `close()` stops the thread (the loop calls it in its `finally`)."""

  def __init__(self, produce: Callable[[], Any], depth: int = 2):
    if depth < 0:
      raise ValueError(f"config.data.prefetch must be >= 0, got {depth}")
    self.produce, self.depth = produce, depth
    self._stop = threading.Event()
    self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    self._thread = None
    if depth > 0:
      self._thread = threading.Thread(target=self._run, name="jaxemb-prefetch", daemon=True)
      self._thread.start()

  def _run(self) -> None:
    while not self._stop.is_set():
      try:
        item = (True, self.produce())
      except BaseException as e:  # handed to the consumer, which raises it in the loop's thread
        item = (False, e)
      while not self._stop.is_set():
        try:
          self._queue.put(item, timeout=0.1)
          break
        except queue.Full:
          continue
      if not item[0]:
        return

  def __next__(self):
    if self._thread is None:
      return self.produce()
    ok, value = self._queue.get()
    if not ok:
      raise value
    return value

  def close(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=10)
