"""A bounded micro-batcher: callers on many threads submit work with a key; one worker thread runs the oldest waiting
item together with up to `max_batch - 1` others of the same key that arrive within `max_wait` seconds, in one call
of `run`. The service batches generations of the same subject and settings this way (`hifilight.serving`).

Bounded: at most `max_queue` items wait (one more is refused at once with `QueueFull`). An item whose `cancelled()`
is true when its batch starts is dropped without running, and its `submit` returns None. The worker always takes
the oldest item first, so no key starves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


class QueueFull(RuntimeError):
    """More items are waiting than the batcher holds."""


@dataclass
class _Item:
    key: Hashable
    payload: Any
    cancelled: Callable[[], bool]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class KeyedBatcher:
    """`run(key, payloads) -> results` (one result per payload, in order) is called on the worker thread."""

    def __init__(self, run: Callable[[Hashable, list], list], max_batch: int, max_wait: float, max_queue: int):
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError(f"max_batch {max_batch} and max_queue {max_queue} must be >= 1, max_wait {max_wait} >= 0")
        self.run, self.max_batch, self.max_wait, self.max_queue = run, max_batch, max_wait, max_queue
        self._queue: list[_Item] = []
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batches: list[int] = []  # the size of every batch run, for tests and benchmarks

    def submit(self, key: Hashable, payload: Any, cancelled: Callable[[], bool] = lambda: False) -> Any:
        """Block until the payload's batch has run; return its result (None when it was cancelled before its
        batch started) or raise what `run` raised."""
        item = _Item(key, payload, cancelled)
        with self._ready:
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are waiting, the most this service queues")
            self._queue.append(item)
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name="batcher", daemon=True)
                self._worker.start()
            self._ready.notify_all()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def _take(self) -> list[_Item]:
        """The oldest item and the same-key items that arrive before its wait ends (or the batch is full)."""
        with self._ready:
            while not self._queue:
                self._ready.wait()
            first = self._queue[0]
            deadline = time.monotonic() + self.max_wait
            while True:
                batch = [i for i in self._queue if i.key == first.key][: self.max_batch]
                left = deadline - time.monotonic()
                if len(batch) >= self.max_batch or left <= 0:
                    break
                self._ready.wait(left)
            for i in batch:
                self._queue.remove(i)
            return batch

    def _serve(self) -> None:
        while True:
            batch = []
            for i in self._take():
                if i.cancelled():
                    i.done.set()  # dropped: its submit returns None
                else:
                    batch.append(i)
            if not batch:
                continue
            self.batches.append(len(batch))
            try:
                results = self.run(batch[0].key, [i.payload for i in batch])
                for i, r in zip(batch, results, strict=True):
                    i.result = r
            except BaseException as err:  # noqa: BLE001 - handed to every caller of the batch
                for i in batch:
                    i.error = err
            for i in batch:
                i.done.set()
