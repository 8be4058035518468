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
    """A sink keeping receipts in memory, once per dedupe key, in ``stored``.

    ``writes`` counts calls (failed ones too); while ``available`` is False, ``write`` raises
    :class:`~mns_consumer.errors.SinkUnavailable`; receipts for which ``reject`` returns a reason are
    rejected instead of stored.
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
        self.opened = True

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
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
        self.closed = True


class RecordingDeadLetterSink:
    """A dead-letter sink keeping letters in memory, raising SinkUnavailable while ``available`` is False."""

    def __init__(self, name: str = "dead_letter") -> None:
        self.name = name
        self.letters: list[DeadLetter] = []
        self.available = True

    def open(self) -> None:
        pass

    def write(self, letters: Sequence[DeadLetter]) -> None:
        if not self.available:
            raise SinkUnavailable(self.name, "switched off")
        self.letters.extend(letters)

    def close(self) -> None:
        pass
