"""Replaying dead letters: re-decode each one and deliver it again once its cause is fixed.

A dead letter is replayed when it decodes and every sink its queue routes to accepts it. The dead-letter
file itself is never edited (it is an append-only record); the letters that still fail are written to
a separate file, with their new reason, for the operator to swap in or inspect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from mns_consumer.config import Config
from mns_consumer.errors import DecodeError, SinkUnavailable
from mns_consumer.observe.redaction import redact_text
from mns_consumer.receipt_model import Receipt, Source
from mns_consumer.receipts import decode_mns_body
from mns_consumer.sinks.base import DeadLetter, Sink
from mns_consumer.sinks.dead_letter import DeadLetterSinkConfig, read_dead_letters

REPLAY_BATCH = 256


@dataclass
class ReplayReport:
    """What a replay did: letters read, replayed to every routed sink, still failing (rejected, still
    undecodable or unrouted), the sink whose outage stopped it, and the letters not replayed with their
    current reason, redacted (a file written by an older version may hold unredacted ones)."""

    read: int = 0
    replayed: int = 0
    still_failing: int = 0
    stopped_by: str | None = None
    remaining: list[DeadLetter] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the operator."""
        text = f"read {self.read}, replayed {self.replayed}, still failing {len(self.remaining)}"
        if self.stopped_by:
            text += f" (stopped: sink {self.stopped_by!r} is unavailable; the rest was not tried)"
        return text


def replay_dead_letters(path: Path, config: Config, *, build_sink: Callable[[str], Sink] | None = None) -> ReplayReport:
    """Re-decode the dead letters of ``path`` and deliver them to the sinks ``config`` routes them to.

    ``build_sink`` makes a sink by name (default: from ``config.sinks``).

    Raises:
        ValueError: If the file has a malformed line (its number is in the message).
        OSError: If the file cannot be read.
    """
    report = ReplayReport()
    letters = list(read_dead_letters(path))
    report.read = len(letters)
    opened: dict[str, Sink] = {}

    def sink(name: str) -> Sink:
        if name not in opened:
            made = build_sink(name) if build_sink else config.sinks[name].build(name)
            made.open()
            opened[name] = made
        return opened[name]

    try:
        pending: list[tuple[DeadLetter, Receipt, list[str]]] = []
        for letter in letters:
            routed = config.sinks_for(letter.message_type, letter.queue) or config.sinks_for(letter.message_type)
            if not routed:
                report.remaining.append(_fail(letter, "no configured queue routes this MessageType"))
                continue
            source = cast(Source, letter.source if letter.source in ("push", "query") else "mns")
            try:
                receipt = decode_mns_body(letter.message_type, letter.raw, queue=letter.queue, source=source)
            except DecodeError as exc:
                report.remaining.append(_fail(letter, f"still does not decode: {exc}"))
                continue
            pending.append((letter, receipt, routed))
        for start in range(0, len(pending), REPLAY_BATCH):
            chunk = pending[start : start + REPLAY_BATCH]
            try:
                _deliver(chunk, sink, report)
            except SinkUnavailable as exc:
                report.stopped_by = exc.sink
                report.remaining.extend(
                    replace(letter, reason=redact_text(letter.reason)) for letter, _, _ in pending[start:]
                )
                break
    finally:
        for made in opened.values():
            made.close()
    report.still_failing = len(report.remaining)
    return report


def _deliver(
    chunk: Sequence[tuple[DeadLetter, Receipt, list[str]]],
    sink: Callable[[str], Sink],
    report: ReplayReport,
) -> None:
    names = sorted({name for _, _, routed in chunk for name in routed})
    refusals: dict[str, str] = {}
    for name in names:
        batch = [receipt for _, receipt, routed in chunk if name in routed]
        result = sink(name).write(batch)
        for receipt in batch:
            if receipt.dedupe_key in result.rejected:
                refusals.setdefault(
                    receipt.dedupe_key, f"sink {name!r} rejected it: {result.rejected[receipt.dedupe_key]}"
                )
            elif receipt.dedupe_key not in result.accepted:
                refusals.setdefault(receipt.dedupe_key, f"sink {name!r} did not accept it")
    for letter, receipt, _ in chunk:
        reason = refusals.get(receipt.dedupe_key)
        if reason is None:
            report.replayed += 1
        else:
            report.remaining.append(_fail(replace(letter, dedupe_key=receipt.dedupe_key), reason))


def _fail(letter: DeadLetter, reason: str) -> DeadLetter:
    return replace(letter, reason=redact_text(reason), failed_at=datetime.now(UTC))


def write_remaining(letters: Sequence[DeadLetter], path: Path) -> None:
    """Write letters to a new dead-letter file (durably).

    Raises:
        SinkUnavailable: If the file cannot be written.
    """
    target = DeadLetterSinkConfig(path=str(path)).build("replay-remaining")
    target.open()
    try:
        target.write(letters)
    finally:
        target.close()
