"""A bounded memory of recently stored dedupe keys, for sinks that cannot ask their destination.

File, S3 and webhook destinations cannot answer "is this key stored already?" cheaply, yet
duplicates arrive close together in time (a visibility timeout, a lost delete, Alibaba re-sending),
so remembering the most recent keys absorbs them. The window is bounded: a duplicate older than
``capacity`` stored receipts is written again, which the database sink (exactly once, by a unique
key) and downstream consumers (by ``dedupe_key``) absorb.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

DEFAULT_CAPACITY = 100_000


def _compact(key: str) -> str | bytes:
    """Dedupe keys are 64 hex digits; as 32 raw bytes they take half the memory (a 100,000-key window)."""
    if len(key) == 64:
        try:
            compact = bytes.fromhex(key)
        except ValueError:
            return key
        # Only exact lower-case hex round-trips; "AB.." and "ab.." must stay two different keys.
        if compact.hex() == key:
            return compact
    return key


class RecentKeys:
    """A thread-safe set of the last ``capacity`` keys added, oldest evicted first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._keys: OrderedDict[str | bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self._lock:
            return _compact(key) in self._keys

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def add_all(self, keys: Iterable[str]) -> None:
        """Remember keys (they become the most recent), evicting the oldest beyond capacity."""
        with self._lock:
            for key in keys:
                compact = _compact(key)
                self._keys[compact] = None
                self._keys.move_to_end(compact)
            while len(self._keys) > self.capacity:
                self._keys.popitem(last=False)

    def unseen(self, keys: Iterable[str]) -> list[str]:
        """The keys not remembered, in order, each once (a batch's internal duplicates collapse)."""
        fresh: dict[str, None] = {}
        with self._lock:
            for key in keys:
                if _compact(key) not in self._keys:
                    fresh[key] = None
        return list(fresh)
