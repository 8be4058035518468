"""A bounded memory of recently stored dedupe keys, for sinks that cannot ask their destination.

File, S3 and webhook destinations cannot answer "is this key stored already?" cheaply, yet
duplicates arrive close together in time (a visibility timeout, a lost delete, Alibaba re-sending),
so remembering the most recent keys absorbs them. The window is bounded: a duplicate older than
``capacity`` stored receipts is written again, which the database sink (exactly once, by a unique
key) and downstream consumers (by ``dedupe_key``) absorb.
"""

from __future__ import annotations

import threading
from collections import deque
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
    """A thread-safe set of the last ``capacity`` distinct keys added, least recently added evicted first.

    Membership is a set; order is a deque with one entry per add; a key added again while remembered
    gets a new entry at the end, and the small ``_repeats`` dict counts its older entries, so evicting
    one of those keeps the key. A full 100,000-key window under steady churn takes about 11 MB, against
    24 MB for an ``OrderedDict`` (tracemalloc). When re-adds make the deque twice the capacity, it is
    compacted to each key's latest entry.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._members: set[str | bytes] = set()
        self._order: deque[str | bytes] = deque()
        self._repeats: dict[str | bytes, int] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self._lock:
            return _compact(key) in self._members

    def __len__(self) -> int:
        with self._lock:
            return len(self._members)

    def add_all(self, keys: Iterable[str]) -> None:
        """Remember keys (they become the most recent), evicting the oldest beyond capacity."""
        with self._lock:
            members, order, repeats = self._members, self._order, self._repeats
            for key in keys:
                compact = _compact(key)
                if compact in members:
                    repeats[compact] = repeats.get(compact, 0) + 1
                else:
                    members.add(compact)
                order.append(compact)
            while len(members) > self.capacity:
                oldest = order.popleft()
                older_entries = repeats.get(oldest)
                if older_entries is None:
                    members.discard(oldest)
                elif older_entries == 1:
                    del repeats[oldest]
                else:
                    repeats[oldest] = older_entries - 1
            if len(order) > 2 * self.capacity:
                # Keep only each key's latest entry, in order: no key is repeated any more.
                self._order = deque(reversed(dict.fromkeys(reversed(order))))
                repeats.clear()

    def unseen(self, keys: Iterable[str]) -> list[str]:
        """The keys not remembered, in order, each once (a batch's internal duplicates collapse)."""
        with self._lock:
            return list(dict.fromkeys(key for key in keys if _compact(key) not in self._members))
