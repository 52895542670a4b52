"""A tiny time-to-live cache: many viewers of one live run, or a scraper and a page, cost one store read.

A live run page polls about once a second and ``/metrics`` may be scraped by several Prometheus servers;
what they read changes at the run's commits, so answering them from a read made a fraction of a second ago
shows the same thing for less work on the store the job writes to.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    def __init__(self, seconds: float, size: int = 64) -> None:
        self.seconds = seconds
        self._size = size
        self._items: OrderedDict[Hashable, tuple[float, T]] = OrderedDict()
        self._mutex = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The value for ``key`` made less than ``seconds`` ago, else ``make()`` (outside the lock)."""
        now = time.monotonic()
        with self._mutex:
            hit = self._items.get(key)
            if hit is not None and now - hit[0] < self.seconds:
                return hit[1]
        value = make()
        with self._mutex:
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._mutex:
            self._items.clear()
