"""Public helpers for testing code that consumes receipts: the emulator and an in-memory sink.

Example::

    from mns_consumer.testing import RecordingSink, running_emulator

    with running_emulator(queues={"SmsUp": "Alicom-Queue-i1-SmsUp"}, seed_receipts=5) as emulator:
        ...  # emulator.url is the MNS endpoint, emulator.endpoint the Dybaseapi/Dysmsapi one
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from mns_consumer.emulator import Emulator, EmulatorSettings, FaultRule, FlowLimits, WanProfile, running_emulator
from mns_consumer.errors import SinkUnavailable
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import DeadLetter, SinkResult

__all__ = [
    "Emulator",
    "EmulatorSettings",
    "FaultRule",
    "FlowLimits",
    "RecordingDeadLetterSink",
    "RecordingSink",
    "WanProfile",
    "running_emulator",
]


class RecordingSink:
    """A sink that keeps receipts in memory, once per dedupe key, and can be switched off.

    Attributes:
        stored: Receipts by dedupe key, in the order first stored.
        writes: How many times ``write`` was called (including failed calls).
        available: While False, ``write`` raises :class:`~mns_consumer.errors.SinkUnavailable`.
        reject: Receipts for which it returns a reason are rejected instead of stored.
    """

    def __init__(self, name: str = "recording", reject: Callable[[Receipt], str | None] | None = None) -> None:
        self.name = name
        self.stored: dict[str, Receipt] = {}
        self.writes = 0
        self.available = True
        self.reject = reject
        self.opened = False
        self.closed = False
        self._lock = threading.Lock()

    def open(self) -> None:
        """Mark the sink open."""
        self.opened = True

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
        """Store the batch (or fail, or reject) as configured.

        Raises:
            SinkUnavailable: While ``available`` is False.
        """
        with self._lock:
            self.writes += 1
            if not self.available:
                raise SinkUnavailable(self.name, "switched off")
            rejected: dict[str, str] = {}
            for receipt in batch:
                reason = self.reject(receipt) if self.reject else None
                if reason is not None:
                    rejected[receipt.dedupe_key] = reason
                else:
                    self.stored.setdefault(receipt.dedupe_key, receipt)
            accepted = frozenset(r.dedupe_key for r in batch if r.dedupe_key not in rejected)
            return SinkResult(accepted=accepted, rejected=rejected)

    def close(self) -> None:
        """Mark the sink closed."""
        self.closed = True


class RecordingDeadLetterSink:
    """A dead-letter sink that keeps letters in memory and can be switched off."""

    def __init__(self, name: str = "dead_letter") -> None:
        self.name = name
        self.letters: list[DeadLetter] = []
        self.available = True

    def open(self) -> None:
        """Nothing to open."""

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Keep the letters.

        Raises:
            SinkUnavailable: While ``available`` is False.
        """
        if not self.available:
            raise SinkUnavailable(self.name, "switched off")
        self.letters.extend(letters)

    def close(self) -> None:
        """Nothing to close."""
