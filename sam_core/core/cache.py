"""A thread-safe LRU cache bounded by entry count and bytes, with single-flight creation."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """LRU map ``key -> value`` shared by every session of a server.

    ``get_or_create(key, factory)`` runs ``factory`` at most once per missing key even when
    many threads ask at once: the first caller computes, the others wait for its result.
    ``sizeof(value)`` gives a value's size in bytes for the byte bound.
    """

    def __init__(self, max_entries: int, max_bytes: int, sizeof: Callable[[V], int]) -> None:
        self.max_entries = max(1, int(max_entries))
        self.max_bytes = max(1, int(max_bytes))
        self._sizeof = sizeof
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._pending: dict[Hashable, Future[V]] = {}
        self._bytes = 0
        self.creations = 0  # how many times a factory ran (and succeeded)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._insert(key, value)

    def get_or_create(self, key: Hashable, factory: Callable[[], V]) -> tuple[V, bool]:
        """Return ``(value, hit)``; ``hit`` is False only for the caller that ran ``factory``."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item[0], True
            waiting = self._pending.get(key)
            if waiting is None:
                future: Future[V] = Future()
                self._pending[key] = future
        if waiting is not None:
            return waiting.result(), True
        try:
            value = factory()
        except BaseException as err:
            with self._lock:
                self._pending.pop(key, None)
            future.set_exception(err)
            raise
        with self._lock:
            self._insert(key, value)
            self.creations += 1
            self._pending.pop(key, None)
        future.set_result(value)
        return value, False

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _insert(self, key: Hashable, value: V) -> None:
        size = int(self._sizeof(value))
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._items[key] = (value, size)
        self._bytes += size
        while len(self._items) > 1 and (len(self._items) > self.max_entries or self._bytes > self.max_bytes):
            _, (_, evicted) = self._items.popitem(last=False)
            self._bytes -= evicted
