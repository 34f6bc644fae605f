"""Cache: decisions by image identity, so a sticker posted again is decided without any work."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

Value = TypeVar("Value")


def content_key(data: bytes) -> str:
    """Identity of downloaded bytes (used when the OneBot segment names no file)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def versioned_key(model_version: str, key: str) -> str:
    """The cache key of a decision: the image under the model version that decided it, so a model
    swapped in never answers with its predecessor's decisions (and a rollback finds them again)."""
    return f"{model_version}|{key}"


class TTLCache(Generic[Value]):
    """A bounded LRU whose entries also expire ``ttl`` seconds after they were stored."""

    def __init__(self, max_entries: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Value]] = OrderedDict()
        # Bumped by clear(): a value computed before a clear may be stale and must not be stored.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Value | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, value = entry
        if self._clock() - stored_at > self.ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: Value, generation: int | None = None) -> None:
        """Store ``value``; with the ``generation`` read before computing it, a value computed
        across a clear() is dropped instead."""
        if self.max_entries <= 0 or (generation is not None and generation != self.generation):
            return
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self.generation += 1
