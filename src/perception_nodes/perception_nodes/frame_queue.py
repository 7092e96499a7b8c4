"""The frame hand-over between a subscription callback and a node's processing thread.

* ``live``: holds only the newest frame. A frame replaced before it was taken
  is counted in :attr:`FrameQueue.dropped`, so latency cannot grow however
  slow the model is (the OpenDR lesson: depth 10 + slow inference = unbounded lag).
* ``replay``: holds up to ``capacity`` frames in arrival order; every frame is
  processed unless the queue overflows (then the oldest is dropped and counted).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")
MODES = ("live", "replay")


class FrameQueue(Generic[T]):
    def __init__(self, mode: str, capacity: int = 1000):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self._items: deque[T] = deque(maxlen=1 if mode == "live" else max(1, int(capacity)))
        self._cond = threading.Condition()
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Add a frame; returns False when an older frame had to be dropped for it."""
        with self._cond:
            self.received += 1
            full = len(self._items) == self._items.maxlen
            if full:
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
            return not full

    def get(self, timeout: float | None = None) -> T | None:
        """The next frame, or None when closed or after ``timeout`` seconds without one."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            return None if self._closed else self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
