"""A third-party sink written only against the public plugin API; ``mypy --strict`` must accept it.

``make lint`` type-checks this file strictly, so a change to the sink interface that would break
plugin authors breaks the build first. The registry test also loads it through an entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from mns_consumer.errors import SinkUnavailable
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import Sink, SinkConfig, SinkResult


class MemorySinkConfig(SinkConfig):
    """Keeps receipts in a list; refuses phone numbers on a block list."""

    type: Literal["memory"]
    blocked_numbers: tuple[str, ...] = ()
    sink_type: ClassVar[str] = "memory"

    def build(self, name: str) -> MemorySink:
        """Make the sink."""
        return MemorySink(name, self)


class MemorySink:
    """Stores receipts in memory, once per dedupe key."""

    def __init__(self, name: str, config: MemorySinkConfig) -> None:
        self.name = name
        self._config = config
        self.stored: dict[str, Receipt] = {}
        self.available = True

    def open(self) -> None:
        """Nothing to acquire."""

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
        """Store what is not blocked; blocked numbers are permanent rejects."""
        if not self.available:
            raise SinkUnavailable(self.name, "switched off")
        rejected = {r.dedupe_key: "blocked number" for r in batch if r.phone_number in self._config.blocked_numbers}
        for receipt in batch:
            if receipt.dedupe_key not in rejected:
                self.stored.setdefault(receipt.dedupe_key, receipt)
        accepted = frozenset(r.dedupe_key for r in batch if r.dedupe_key not in rejected)
        return SinkResult(accepted=accepted, rejected=rejected)

    def close(self) -> None:
        """Nothing to release."""


def as_sink(sink: MemorySink) -> Sink:
    """Structural typing: a MemorySink is a Sink without inheriting from anything."""
    return sink
