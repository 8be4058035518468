"""``mns-consumer demo``: the emulator and the daemon in one process, seeded, drained and summed up.

What a run does, in order:

1. Claims ``--data-dir``. A missing or empty folder gets a marker file (:data:`MARKER_NAME`). A folder
   with that marker had a demo before: the demo's own files in it (:meth:`DemoPaths.demo_files`) are
   deleted and nothing else. A non-empty folder without the marker is refused, so the demo never
   deletes or mixes with a user's files.
2. Starts the emulator on a free loopback port and seeds realistic receipts into the SmsReport, SmsUp,
   SignSmsReport and TemplateSmsReport queues, with a few malformed bodies among them.
3. Runs the :class:`~mns_consumer.consume.supervisor.Supervisor` in a background thread
   (``handle_signals=False``) with a SQLite sink, a JSON Lines file sink and the dead-letter file, and
   serves its metrics at ``--http-listen``. The main thread watches, shows progress and owns Ctrl-C.
4. Stops once drained: every emulator queue is empty (active, inactive and delayed) *and* no poller
   has a batch in flight. With ``--forever`` receipts keep trickling in until Ctrl-C instead.
5. Prints a summary: per queue what was seeded, received, stored and dead-lettered and at what rate,
   where the data is, and a query to try on it.

Logs go to stderr at warning level, so they do not drown the progress display; the per-message
dead-letter warnings are left out too, because the summary counts them by reason.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shlex
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

import structlog
import yaml
from structlog.typing import EventDict, WrappedLogger

from mns_consumer.config import parse_config
from mns_consumer.consume.supervisor import Supervisor
from mns_consumer.emulator import Emulator, EmulatorSettings
from mns_consumer.emulator.consumer_config import emulator_config
from mns_consumer.errors import ConfigError
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_KILLED, EXIT_OK
from mns_consumer.observe.logging import LoggingConfig, configure_logging
from mns_consumer.sinks.dead_letter import read_dead_letters

__all__ = [
    "DEMO_MESSAGE_TYPES",
    "MARKER_NAME",
    "DemoOptions",
    "DemoPaths",
    "DemoSummary",
    "QueueTally",
    "claim_data_dir",
    "run_demo",
]

DEMO_MESSAGE_TYPES: Final = ("SmsReport", "SmsUp", "SignSmsReport", "TemplateSmsReport")
"""The receipt types the demo seeds and consumes, one queue each."""

MARKER_NAME: Final = ".mns-consumer-demo"
"""The file that marks a folder as the demo's own, so that a later run may delete the demo's files in it."""

DEMO_ACCOUNT_UID: Final = "1092397003988387"
"""The account id in the demo's queue names (Alibaba names them ``Alicom-Queue-<uid>-<MessageType>``)."""

MALFORMED_SHARE: Final = 0.02
"""Poison bodies seeded per valid receipt (at least one per queue when any receipts are seeded)."""

TICK_SECONDS: Final = 0.1
"""How often the main thread checks the queues and redraws the progress display, s."""

PLAIN_PROGRESS_SECONDS: Final = 1.0
"""Interval between plain progress lines (no TTY) while draining, s."""

PLAIN_PROGRESS_FOREVER_SECONDS: Final = 10.0
"""Interval between plain progress lines (no TTY) with ``--forever``, s."""

STALL_SECONDS: Final = 60.0
"""Without ``--forever``, the demo gives up (exit 1) after this long without any receipt settling, s."""

FINISH_SECONDS: Final = 10.0
"""With ``--forever``, how long the first Ctrl-C waits for the receipts already queued, s."""

TRICKLE_PER_SECOND: Final = 3.0
"""Mean receipts per second enqueued with ``--forever``."""

TRICKLE_MALFORMED_CHANCE: Final = 0.05
"""Chance that a trickled message is a poison body."""

EXIT_STALLED: Final = EXIT_FAILURE
"""Nothing settled for a minute: the demo gives up."""

_SUMMARIZED_EVENTS: Final = frozenset({"receipt.undecodable", "receipt.rejected"})
_SAMPLE_SQL: Final = (
    "SELECT status, COUNT(*) AS receipts, ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (), 1) AS percent "
    "FROM sms_receipts WHERE message_type = 'SmsReport' GROUP BY status ORDER BY receipts DESC"
)
_BAR_WIDTH: Final = 24


@dataclass(frozen=True)
class DemoOptions:
    """What ``mns-consumer demo`` was asked to do.

    Attributes:
        receipts_per_queue: Valid receipts seeded into each queue (malformed ones come on top).
        seed: Seed of the sample receipts and of the trickle.
        data_dir: Folder for the SQLite database, the JSON Lines files and the dead letters.
        forever: Keep running, with receipts trickling in, until Ctrl-C.
        http_listen: ``host:port`` of the metrics and health endpoint; port 0 picks a free one.
        as_json: Also print the summary as one JSON line at the very end.
    """

    receipts_per_queue: int = 200
    seed: int = 0
    data_dir: Path = Path("mns-consumer-demo")
    forever: bool = False
    http_listen: str = "127.0.0.1:9464"
    as_json: bool = False


@dataclass(frozen=True)
class DemoPaths:
    """Where a demo's files are, all inside one folder.

    Attributes:
        data_dir: The folder (absolute).
        marker: The marker file that makes the folder the demo's own.
        sqlite: The SQLite database of the ``db`` sink.
        jsonl: The ``archive`` sink's file per MessageType.
        dead_letter: The dead-letter file.
        config: The run's configuration, written so that the commands the summary prints (such as
            ``dead-letters replay --config``) run as shown after the demo has ended.
    """

    data_dir: Path
    marker: Path
    sqlite: Path
    jsonl: dict[str, Path]
    dead_letter: Path
    config: Path

    @classmethod
    def for_dir(cls, data_dir: Path) -> DemoPaths:
        """The paths of a demo in ``data_dir`` (made absolute); the layout ``emulator_config`` uses."""
        folder = data_dir.resolve()
        return cls(
            data_dir=folder,
            marker=folder / MARKER_NAME,
            sqlite=folder / "receipts.db",
            jsonl={message_type: folder / f"{message_type}.jsonl" for message_type in DEMO_MESSAGE_TYPES},
            dead_letter=folder / "dead-letter.jsonl",
            config=folder / "config.yaml",
        )

    def demo_files(self) -> list[Path]:
        """Every file a demo run may leave behind, except the marker: what the next run deletes."""
        sqlite_files = [self.sqlite.with_name(self.sqlite.name + suffix) for suffix in ("-wal", "-shm", "-journal")]
        return [self.sqlite, *sqlite_files, *self.jsonl.values(), self.dead_letter, self.config]


def claim_data_dir(paths: DemoPaths) -> None:
    """Make ``paths.data_dir`` ready for a fresh run, without ever deleting a file the demo did not write.

    A missing or empty folder is created and marked. A marked folder loses the demo's files
    (:meth:`DemoPaths.demo_files`); anything else in it stays.

    Raises:
        ConfigError: If the folder holds files but no marker, or is not a usable folder.
    """
    folder = paths.data_dir
    try:
        if folder.exists() and not folder.is_dir():
            raise ConfigError("--data-dir", "", f"{folder} is not a folder", "pass a new or empty folder")
        if folder.is_dir() and not paths.marker.is_file():
            foreign = sorted(entry.name for entry in folder.iterdir())
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise ConfigError(
                    "--data-dir",
                    "",
                    f"{folder} already holds files the demo did not create ({shown}); "
                    f"the demo only reuses a folder with its {MARKER_NAME} marker, and never deletes other files",
                    "pass a new or empty folder",
                )
        folder.mkdir(parents=True, exist_ok=True)
        for path in paths.demo_files():
            path.unlink(missing_ok=True)
        paths.marker.write_text(
            "This folder holds the data of `mns-consumer demo`. The next demo run here deletes the demo's\n"
            "files (receipts.db, <MessageType>.jsonl, dead-letter.jsonl, config.yaml) and keeps anything else.\n",
            encoding="utf-8",
        )
    except OSError as exc:
        raise ConfigError("--data-dir", "", f"cannot use {folder}: {exc}", "pass a folder you can write to") from None


@dataclass
class QueueTally:
    """One demo queue: what was put in, what came out, and when it was last drained.

    Attributes:
        message_type: The MessageType of the queue.
        queue_name: The MNS queue name.
        seeded: Messages enqueued (valid receipts and malformed bodies).
        malformed: How many of those are malformed.
        received: Messages the daemon received (a redelivery counts again).
        stored: Messages every sink accepted, and then deleted from MNS.
        dead_lettered: Messages written to the dead-letter file.
        rows: Rows of this queue in the SQLite table (filled in after the stop).
        jsonl_lines: Lines in the queue's JSON Lines file (filled in after the stop).
        drained_at: ``time.monotonic()`` when the queue was last seen becoming empty; None while busy.
        busy_seconds: From the start of consumption to ``drained_at`` (or to now while busy).
    """

    message_type: str
    queue_name: str
    seeded: int = 0
    malformed: int = 0
    received: int = 0
    stored: int = 0
    dead_lettered: int = 0
    rows: int = 0
    jsonl_lines: int = 0
    drained_at: float | None = None
    busy_seconds: float = 0.0

    @property
    def settled(self) -> int:
        """Messages done with: stored or dead-lettered."""
        return self.stored + self.dead_lettered

    @property
    def rate(self) -> float:
        """Settled messages per second of consumption."""
        return self.settled / self.busy_seconds if self.busy_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        """The tally as plain JSON data."""
        return {
            "message_type": self.message_type,
            "queue": self.queue_name,
            "seeded": self.seeded,
            "malformed": self.malformed,
            "received": self.received,
            "stored": self.stored,
            "dead_lettered": self.dead_lettered,
            "sqlite_rows": self.rows,
            "jsonl_lines": self.jsonl_lines,
            "rate_per_second": round(self.rate, 1),
        }


@dataclass
class DemoSummary:
    """The outcome of a demo run, as printed at the end (text or JSON).

    Attributes:
        tallies: One per queue, in :data:`DEMO_MESSAGE_TYPES` order.
        paths: Where the data is.
        seconds: From the start of consumption to the stop, s.
        drained: Whether every queue was empty and nothing in flight at the stop.
        forever: Whether the run was a ``--forever`` one.
        seed: The seed of the sample receipts.
        metrics_url: Where the metrics were served.
        dead_letter_reasons: Dead letters by (shortened) reason.
        delivery: Messages per outcome class (state for messages without one), read from the SQLite
            status table: one row per sent message, whatever number of reports it had.
        opt_outs: Numbers (per sign and extension code) that replied with an unsubscribe keyword, and
            their replies, read from the SQLite opt-out table.
    """

    tallies: list[QueueTally]
    paths: DemoPaths
    seconds: float
    drained: bool
    forever: bool
    seed: int
    metrics_url: str | None
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    delivery: Counter[str] = field(default_factory=Counter)
    opt_outs: tuple[int, int] = (0, 0)

    def delivery_to_dict(self) -> dict[str, object]:
        """Messages, the delivered share and each class's count and share (what ``--json`` prints)."""
        messages = sum(self.delivery.values())

        def percent(count: int) -> float:
            return round(100.0 * count / messages, 1) if messages else 0.0

        return {
            "table": "sms_receipts_status",
            "messages": messages,
            "delivered_percent": percent(self.delivery["delivered"]),
            "by_class": {
                name: {"messages": count, "percent": percent(count)} for name, count in self.delivery.most_common()
            },
        }

    def sample_commands(self) -> dict[str, str]:
        """The sample query as SQL, as a ``sqlite3`` command line and as a Python one-liner."""
        database = str(self.paths.sqlite)
        python_code = (
            f"import sqlite3; rows = sqlite3.connect({database!r}).execute({_SAMPLE_SQL!r}).fetchall(); "
            "print(*rows, sep=chr(10))"
        )
        return {
            "sql": _SAMPLE_SQL,
            "sqlite3": f"sqlite3 -header -column {shlex.quote(database)} {_shell_double_quoted(_SAMPLE_SQL)}",
            "python": f"python3 -c {_shell_double_quoted(python_code)}",
        }

    def to_dict(self) -> dict[str, object]:
        """The summary as plain JSON data (what ``--json`` prints)."""
        totals = {
            name: sum(int(getattr(tally, name)) for tally in self.tallies)
            for name in ("seeded", "malformed", "received", "stored", "dead_lettered", "rows", "jsonl_lines")
        }
        totals["sqlite_rows"] = totals.pop("rows")
        return {
            "drained": self.drained,
            "forever": self.forever,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "queues": [tally.to_dict() for tally in self.tallies],
            "totals": totals,
            "dead_letter_reasons": dict(self.dead_letter_reasons.most_common()),
            "delivery": self.delivery_to_dict(),
            "opt_outs": {"table": "sms_receipts_opt_outs", "numbers": self.opt_outs[0], "replies": self.opt_outs[1]},
            "paths": {
                "data_dir": str(self.paths.data_dir),
                "sqlite": str(self.paths.sqlite),
                "jsonl": {t.message_type: str(self.paths.jsonl[t.message_type]) for t in self.tallies},
                "dead_letter": str(self.paths.dead_letter),
                "config": str(self.paths.config),
            },
            "metrics_url": self.metrics_url,
            "sample_query": self.sample_commands(),
        }

    def render(self) -> str:
        """The summary as the table and notes a person reads."""
        if self.forever:
            state = f"ran for {self.seconds:.1f} s, " + ("drained at the stop" if self.drained else "stopped undrained")
        else:
            state = (
                f"drained in {self.seconds:.1f} s" if self.drained else f"stopped undrained after {self.seconds:.1f} s"
            )
        lines = [f"Summary: {state} (seed {self.seed})", ""]
        lines.extend(self._table())
        lines.extend(
            f"  {t.message_type}: {t.stored - t.rows} stored receipt(s) repeated an earlier dedupe key: one row each"
            for t in self.tallies
            if 0 < t.rows < t.stored
        )
        lines.append("")
        lines.extend(self._delivery_lines())
        lines.append("")
        lines.extend(self._dead_letter_lines())
        lines.append("")
        lines.extend(self._where_lines())
        lines.append("")
        commands = self.sample_commands()
        lines.append("Try a query (SmsReport delivery rate by status):")
        lines.append(f"  {commands['sqlite3']}")
        lines.append(f"  {commands['python']}")
        return "\n".join(lines)

    def _table(self) -> list[str]:
        header = ("queue", "seeded", "received", "stored", "dead-lettered", "SQLite rows", "rate/s")
        rows: list[tuple[str, ...]] = [
            (t.message_type, *(str(getattr(t, name)) for name in _TOTAL_COLUMNS), f"{t.rate:.1f}") for t in self.tallies
        ]
        busiest = max((t.busy_seconds for t in self.tallies), default=0.0)
        settled = sum(t.settled for t in self.tallies)
        totals = (str(sum(int(getattr(t, name)) for t in self.tallies)) for name in _TOTAL_COLUMNS)
        rows.append(("total", *totals, f"{settled / busiest if busiest > 0 else 0.0:.1f}"))
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(cells: tuple[str, ...]) -> str:
            first = cells[0].ljust(widths[0])
            rest = "  ".join(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
            return f"  {first}  {rest}"

        rule = "  " + "-" * (sum(widths) + 2 * (len(widths) - 1))
        return [line(header), rule, *(line(row) for row in rows[:-1]), rule, line(rows[-1])]

    def _delivery_lines(self) -> list[str]:
        delivery = self.delivery_to_dict()
        if not delivery["messages"]:
            return ["Delivery: no SmsReport stored."]
        lines = [
            f"Delivery by outcome class (table sms_receipts_status, one row per message): {delivery['messages']} "
            f"messages, {delivery['delivered_percent']}% delivered"
        ]
        by_class: dict[str, dict[str, Any]] = delivery["by_class"]  # type: ignore[assignment]
        width = max(len(name) for name in by_class)
        lines.extend(
            f"  {name:<{width}}  {entry['messages']:>5}  {entry['percent']:>5.1f}%" for name, entry in by_class.items()
        )
        numbers, replies = self.opt_outs
        lines.append(
            f"Opt-outs (table sms_receipts_opt_outs): {numbers} number(s) replied with an unsubscribe keyword "
            f"({replies} replies)"
        )
        return lines

    def _dead_letter_lines(self) -> list[str]:
        total = sum(self.dead_letter_reasons.values())
        if not total:
            return ["Dead letters: none."]
        lines = [f"Dead letters: {total} (their warnings were kept off the screen), by reason:"]
        lines.extend(f"  {count:>4} x {reason}" for reason, count in self.dead_letter_reasons.most_common())
        lines.append(f"  replay them once fixed: {self.replay_command()}")
        return lines

    def replay_command(self) -> str:
        """The ``dead-letters replay`` command line for this demo's dead letters and configuration."""
        letters = shlex.quote(str(self.paths.dead_letter))
        return f"mns-consumer dead-letters replay {letters} --config {shlex.quote(str(self.paths.config))}"

    def _where_lines(self) -> list[str]:
        lines = [f"Where the data is ({self.paths.data_dir}):"]
        lines.append(f"  SQLite database  {self.paths.sqlite}  (table sms_receipts)")
        for index, tally in enumerate(self.tallies):
            label = "JSON Lines" if index == 0 else ""
            path = self.paths.jsonl[tally.message_type]
            note = f"{tally.jsonl_lines} lines" if path.exists() else "not written: nothing stored"
            lines.append(f"  {label:<15}  {path}  ({note})")
        letters = sum(self.dead_letter_reasons.values())
        note = f"{letters} lines" if self.paths.dead_letter.exists() else "not written: no dead letters"
        lines.append(f"  Dead letters     {self.paths.dead_letter}  ({note})")
        return lines


_TOTAL_COLUMNS: Final = ("seeded", "received", "stored", "dead_lettered", "rows")


def _shell_double_quoted(text: str) -> str:
    """``text`` inside double quotes for a POSIX shell (single quotes inside stay readable)."""
    escaped = "".join("\\" + char if char in '\\"$`' else char for char in text)
    return f'"{escaped}"'


def _short_reason(reason: str, message_type: str) -> str:
    """A dead letter's reason without per-message detail, so that equal causes are counted together."""
    text = reason.removeprefix("undecodable: ")
    text = text.removeprefix(f"{message_type}: ")
    if text.startswith(f"{message_type}."):
        text = f"field {text[len(message_type) + 1 :]}"
    return text.split(" (", 1)[0]


# -- logging -------------------------------------------------------------------------------------


def _drop_summarized_events(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Drop the per-message dead-letter warnings: the summary counts them by reason instead."""
    if event_dict.get("event") in _SUMMARIZED_EVENTS:
        raise structlog.DropEvent
    return event_dict


def _configure_demo_logging() -> None:
    """Warnings and worse to stderr, without the per-message dead-letter warnings."""
    configure_logging(LoggingConfig(level="warning"))
    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[_drop_summarized_events, *processors])


# -- the process around the run --------------------------------------------------------------------


@contextlib.contextmanager
def _without_proxy_variables(environ: MutableMapping[str, str]) -> Iterator[None]:
    """Unset proxy variables while the demo runs, and restore them afterwards.

    The Tea transport sends even loopback requests through ``HTTP_PROXY``/``HTTPS_PROXY`` and honours no
    exemption (reference pitfall 15); every endpoint of the demo is its own emulator on loopback.
    """
    saved = {key: value for key, value in environ.items() if "proxy" in key.lower()}
    for key in saved:
        del environ[key]
    try:
        yield
    finally:
        environ.update(saved)


class _Interrupts:
    """Counts Ctrl-C (and SIGTERM) in the main thread; past ``kill_at`` the process leaves at once."""

    def __init__(self, kill_at: int) -> None:
        self.count = 0
        self.kill_at = kill_at
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count >= self.kill_at:
            # Asked once more than the demo needs to stop: leave now, as the daemon does.
            os._exit(EXIT_KILLED)


class _SupervisorThread(threading.Thread):
    """Runs the supervisor and keeps its exit code or the exception it died of."""

    def __init__(self, supervisor: Supervisor) -> None:
        super().__init__(name="demo-supervisor", daemon=True)
        self.supervisor = supervisor
        self.exit_code: int | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.exit_code = self.supervisor.run()
        except Exception as exc:  # noqa: BLE001  (handed to the main thread, which raises it)
            self.error = exc


# -- seeding -------------------------------------------------------------------------------------


def _malformed_count(receipts: int) -> int:
    return 0 if receipts <= 0 else max(1, round(receipts * MALFORMED_SHARE))


def _seed(emulator: Emulator, tally: QueueTally, receipts: int) -> None:
    """Enqueue ``receipts`` valid receipts with a few poison bodies spread among them."""
    malformed = _malformed_count(receipts)
    chunks = malformed + 1
    for index in range(chunks):
        count = receipts // chunks + (1 if index < receipts % chunks else 0)
        poison = 1 if index < malformed else 0
        emulator.produce(tally.message_type, count, malformed=poison)
        tally.seeded += count + poison
        tally.malformed += poison


class _Trickle:
    """Enqueues a few receipts per second of random types, now and then a malformed one (``--forever``)."""

    def __init__(self, emulator: Emulator, tallies: list[QueueTally], seed: int) -> None:
        self._emulator = emulator
        self._tallies = tallies
        self._random = random.Random(seed)
        self._next_at = time.monotonic()

    def tick(self, now: float) -> None:
        """Enqueue whatever is due by ``now``."""
        while self._next_at <= now:
            tally = self._random.choice(self._tallies)
            poison = self._random.random() < TRICKLE_MALFORMED_CHANCE
            self._emulator.produce(tally.message_type, 0 if poison else 1, malformed=1 if poison else 0)
            tally.seeded += 1
            tally.malformed += 1 if poison else 0
            self._next_at += self._random.expovariate(TRICKLE_PER_SECOND)


# -- watching ------------------------------------------------------------------------------------


class _Watch:
    """Reads the emulator's queues and the daemon's counters into the tallies."""

    def __init__(self, emulator: Emulator, supervisor: Supervisor, tallies: list[QueueTally], started: float) -> None:
        self._emulator = emulator
        self._supervisor = supervisor
        self.tallies = tallies
        self.started = started

    def refresh(self, now: float) -> bool:
        """Update every tally; True when every queue is drained.

        A queue is drained when the emulator holds none of its messages (active, inactive or delayed)
        and its poller has nothing in flight. The emulator is read first: a message it no longer holds
        was deleted, and once the poller then shows nothing in flight, that delete has been counted.
        """
        in_flight = {slot.queue.queue_name: slot for slot in self._supervisor.slots}
        drained_all = True
        for tally in self.tallies:
            counts = self._emulator.queue(tally.queue_name).counts()
            backlog = counts.active + counts.inactive + counts.delayed
            slot = in_flight.get(tally.queue_name)
            busy = backlog > 0 or slot is None or slot.poller.in_flight > 0
            events = self._supervisor.events
            tally.received = events.total("received", tally.queue_name)
            tally.dead_lettered = events.total("dead_lettered", tally.queue_name)
            tally.stored = max(0, events.total("deleted", tally.queue_name) - tally.dead_lettered)
            if busy:
                tally.drained_at = None
                tally.busy_seconds = now - self.started
            elif tally.drained_at is None:
                tally.drained_at = now
                tally.busy_seconds = now - self.started if tally.seeded else 0.0
            drained_all = drained_all and not busy
        return drained_all

    def settled(self) -> int:
        """Messages stored or dead-lettered so far, over every queue."""
        return sum(tally.settled for tally in self.tallies)


class _Progress:
    """The live display: one line per queue redrawn in place on a TTY, a few plain lines otherwise."""

    def __init__(self, out: TextIO, *, tty: bool, forever: bool) -> None:
        self._out = out
        self._tty = tty
        self._interval = PLAIN_PROGRESS_FOREVER_SECONDS if forever else PLAIN_PROGRESS_SECONDS
        self._drawn = 0
        self._last_plain: float | None = None

    def show(self, watch: _Watch, now: float, *, final: bool = False) -> None:
        """Redraw (TTY), or print a plain line when one is due or ``final``."""
        if self._tty:
            self._redraw(watch)
            return
        if final or self._last_plain is None or now - self._last_plain >= self._interval:
            self._last_plain = now
            parts = ", ".join(f"{t.message_type} {t.settled}/{t.seeded}" for t in watch.tallies)
            self._out.write(f"progress {now - watch.started:5.1f} s: {parts}\n")
            self._out.flush()

    def note(self, text: str) -> None:
        """Print a message below the display; a TTY display then starts a new block under it."""
        self._out.write(f"{text}\n")
        self._out.flush()
        self._drawn = 0

    def _redraw(self, watch: _Watch) -> None:
        text = []
        if self._drawn:
            # Back to the first line of the block, then each line is cleared and rewritten.
            text.append(f"\x1b[{self._drawn}F")
        for tally in watch.tallies:
            done = min(1.0, tally.settled / tally.seeded) if tally.seeded else 1.0
            filled = math.floor(done * _BAR_WIDTH)
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            text.append(
                f"\x1b[2K  {tally.message_type:<18} [{bar}] {tally.settled:>6}/{tally.seeded:<6} "
                f"stored {tally.stored:>6}  dead-lettered {tally.dead_lettered:>4}  {tally.rate:8.1f}/s\n"
            )
        self._drawn = len(watch.tallies)
        self._out.write("".join(text))
        self._out.flush()


# -- the run -------------------------------------------------------------------------------------


def _demo_config(emulator: Emulator, options: DemoOptions, paths: DemoPaths) -> dict[str, Any]:
    data = emulator_config(emulator.describe(), paths.data_dir)
    queues = data["queues"]
    assert isinstance(queues, list)  # noqa: S101  (emulator_config builds a list)
    for queue in queues:
        # A short long poll: an empty queue answers within a second, so the end is noticed quickly.
        queue["wait_seconds"] = 1
    data["logging"] = {"level": "warning"}
    data["http"] = {"listen": options.http_listen}
    return data


def _write_config(path: Path, data: dict[str, Any]) -> None:
    """Write the run's configuration as YAML, 0600 like every file the daemon creates (it holds a key)."""
    text = "# The configuration of the last `mns-consumer demo` run in this folder.\n" + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)


def _wait_until_ready(runner: _SupervisorThread, interrupts: _Interrupts) -> bool:
    """Wait for the pollers to run; False if the run ended (or was interrupted) first.

    Raises:
        ConfigError: If the supervisor could not start (e.g. the metrics address is taken).
    """
    supervisor = runner.supervisor
    while not supervisor.ready.wait(TICK_SECONDS):
        if interrupts.count:
            return False
        if not runner.is_alive():
            break
    if runner.error is not None:
        error = runner.error
        if isinstance(error, ConfigError) and error.key_path == "http.listen":
            raise ConfigError("--http-listen", "", error.problem, "pass a free HOST:PORT; port 0 picks one") from None
        raise error
    return supervisor.ready.is_set()


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as file:
        return sum(1 for line in file if line.strip())


def _sqlite_rows(path: Path) -> dict[str, int]:
    """Rows per queue in the SQLite table (read-only; empty when the file is missing)."""
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as database:
        rows = database.execute("SELECT queue, COUNT(*) FROM sms_receipts GROUP BY queue").fetchall()
    return {str(queue): int(count) for queue, count in rows}


def _sqlite_delivery(path: Path) -> tuple[Counter[str], tuple[int, int]]:
    """Messages per outcome class (or state) and the opt-outs, from the SQLite status and opt-out tables."""
    if not path.exists():
        return Counter(), (0, 0)
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as database:
        classes = database.execute(
            "SELECT COALESCE(outcome_class, state), COUNT(*) FROM sms_receipts_status GROUP BY 1"
        ).fetchall()
        numbers, replies = database.execute(
            "SELECT COUNT(*), COALESCE(SUM(replies), 0) FROM sms_receipts_opt_outs"
        ).fetchone()
    return Counter({str(name): int(count) for name, count in classes}), (int(numbers), int(replies))


def _dead_letter_reasons(path: Path) -> Counter[str]:
    reasons: Counter[str] = Counter()
    if path.exists():
        for letter in read_dead_letters(path):
            reasons[_short_reason(letter.reason, letter.message_type)] += 1
    return reasons


def _header(options: DemoOptions, emulator: Emulator, tallies: list[QueueTally], metrics_url: str | None) -> str:
    seeded = tallies[0].seeded - tallies[0].malformed if tallies else 0
    malformed = tallies[0].malformed if tallies else 0
    lines = [
        f"mns-consumer demo: emulator at {emulator.url}, {len(tallies)} queues seeded with {seeded} receipts "
        f"and {malformed} malformed bodies each (seed {options.seed})",
        f"  data:    {options.data_dir.resolve()}",
        f"  metrics: {metrics_url or 'off'}",
    ]
    if options.forever:
        lines.append("Consuming while receipts trickle in; Ctrl-C to stop (the summary follows).")
    else:
        lines.append("Consuming until every queue is drained (Ctrl-C stops early).")
    return "\n".join(lines)


def _metrics_url(supervisor: Supervisor, listen: str) -> str | None:
    if supervisor.health is None:
        return None
    host = listen.rpartition(":")[0].strip("[]") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # noqa: S104  (a wildcard bind is reached through loopback)
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{supervisor.health.port}/metrics"


def _consume(watch: _Watch, progress: _Progress, interrupts: _Interrupts, trickle: _Trickle | None) -> int:
    """The main thread's loop until drained, stalled or interrupted; returns the exit code."""
    last_settled, last_progress = -1, time.monotonic()
    finish_by: float | None = None
    while True:
        now = time.monotonic()
        if trickle is not None and not interrupts.count:
            trickle.tick(now)
        drained = watch.refresh(now)
        progress.show(watch, now)
        if trickle is None and (drained or interrupts.count):
            return EXIT_OK
        if trickle is not None and interrupts.count:
            if finish_by is None:
                progress.note("Stopping: finishing the receipts already queued (Ctrl-C again to stop now).")
                finish_by = now + FINISH_SECONDS
            if drained or interrupts.count > 1 or now >= finish_by:
                return EXIT_OK
        if watch.settled() != last_settled:
            last_settled, last_progress = watch.settled(), now
        elif trickle is None and now - last_progress > STALL_SECONDS:
            progress.note(f"Nothing settled for {STALL_SECONDS:.0f} s: giving up (see the warnings on stderr).")
            return EXIT_STALLED
        time.sleep(TICK_SECONDS)


def run_demo(
    options: DemoOptions, *, out: TextIO | None = None, environ: MutableMapping[str, str] | None = None
) -> int:
    """Run the demo (see the module docstring) and print its summary.

    Args:
        options: What to run.
        out: Where the progress and the summary go; standard output by default. Progress is drawn in
            place when it is a terminal.
        environ: The process environment, whose proxy variables are unset during the run
            (``os.environ`` by default).

    Returns:
        0 when the demo ran (drained, or stopped with Ctrl-C), 1 when it gave up because nothing settled.

    Raises:
        ConfigError: If ``--data-dir`` holds foreign files, or the metrics address cannot be used.
    """
    stream = out if out is not None else sys.stdout
    paths = DemoPaths.for_dir(options.data_dir)
    claim_data_dir(paths)
    _configure_demo_logging()
    tallies = [
        QueueTally(message_type, f"Alicom-Queue-{DEMO_ACCOUNT_UID}-{message_type}")
        for message_type in DEMO_MESSAGE_TYPES
    ]
    settings = EmulatorSettings(queues={t.message_type: t.queue_name for t in tallies}, seed=options.seed)
    kill_at = 3 if options.forever else 2
    with (
        _without_proxy_variables(os.environ if environ is None else environ),
        Emulator(settings) as emulator,
        _Interrupts(kill_at) as interrupts,
    ):
        for tally in tallies:
            _seed(emulator, tally, options.receipts_per_queue)
        data = _demo_config(emulator, options, paths)
        config = parse_config(data, "demo")
        _write_config(paths.config, data)
        supervisor = Supervisor(config, handle_signals=False, environ={})
        runner = _SupervisorThread(supervisor)
        runner.start()
        try:
            if not _wait_until_ready(runner, interrupts):
                stream.write("Stopped before the daemon was ready.\n")
                return EXIT_OK
            started = time.monotonic()
            metrics_url = _metrics_url(supervisor, options.http_listen)
            stream.write(_header(options, emulator, tallies, metrics_url) + "\n")
            stream.flush()
            watch = _Watch(emulator, supervisor, tallies, started)
            progress = _Progress(stream, tty=_is_tty(stream), forever=options.forever)
            trickle = _Trickle(emulator, tallies, options.seed) if options.forever else None
            code = _consume(watch, progress, interrupts, trickle)
            stopped = time.monotonic()
        finally:
            # Stop the daemon before the emulator goes: its drain still deletes from the emulator.
            supervisor.request_stop()
            runner.join()
        # Read again after the stop: the drain settled the batches that were still in flight.
        drained = watch.refresh(stopped)
        progress.show(watch, stopped, final=True)
    summary = _summarize(watch, paths, options, drained=drained, seconds=stopped - started, metrics_url=metrics_url)
    stream.write("\n" + summary.render() + "\n")
    if options.as_json:
        stream.write(json.dumps(summary.to_dict(), ensure_ascii=False) + "\n")
    stream.flush()
    return code


def _summarize(
    watch: _Watch, paths: DemoPaths, options: DemoOptions, *, drained: bool, seconds: float, metrics_url: str | None
) -> DemoSummary:
    rows = _sqlite_rows(paths.sqlite)
    delivery, opt_outs = _sqlite_delivery(paths.sqlite)
    for tally in watch.tallies:
        tally.rows = rows.get(tally.queue_name, 0)
        tally.jsonl_lines = _count_lines(paths.jsonl[tally.message_type])
    return DemoSummary(
        tallies=watch.tallies,
        paths=paths,
        seconds=seconds,
        drained=drained,
        forever=options.forever,
        seed=options.seed,
        metrics_url=metrics_url,
        dead_letter_reasons=_dead_letter_reasons(paths.dead_letter),
        delivery=delivery,
        opt_outs=opt_outs,
    )


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False
