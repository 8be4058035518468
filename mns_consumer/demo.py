"""``mns-consumer demo``: the emulator and the daemon in one process, seeded, drained and summed up.

The emulator's four receipt queues get realistic receipts and a few poison bodies; the supervisor runs in
a thread into SQLite, JSON Lines and the dead-letter file until every queue is drained (or Ctrl-C with
``--forever``), then the summary shows counts, rates, delivery classes, opt-outs, dead letters and a query.
Logs go to stderr at warning level, without the per-message dead-letter warnings that would drown the display.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

import structlog
import yaml
from structlog.typing import EventDict, WrappedLogger

from mns_consumer.config import host_and_port, parse_config
from mns_consumer.consume.supervisor import Supervisor
from mns_consumer.emulator import Emulator, EmulatorSettings
from mns_consumer.emulator.consumer_config import emulator_config
from mns_consumer.errors import ConfigError
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_KILLED, EXIT_OK
from mns_consumer.files import open_private
from mns_consumer.observe.logging import LoggingConfig, configure_logging
from mns_consumer.sinks.dead_letter import read_dead_letters

__all__ = ["DEMO_MESSAGE_TYPES", "MARKER_NAME", "DemoOptions", "run_demo"]

DEMO_MESSAGE_TYPES: Final = ("SmsReport", "SmsUp", "SignSmsReport", "TemplateSmsReport")
MARKER_NAME: Final = ".mns-consumer-demo"  # makes a folder the demo's own, so a later run may delete its files
DEMO_ACCOUNT_UID: Final = "1092397003988387"  # Alibaba names queues Alicom-Queue-<uid>-<MessageType>
MALFORMED_SHARE: Final = 0.02  # poison bodies per valid receipt, at least one per seeded queue
TICK_SECONDS: Final = 0.1  # how often the main thread reads the queues and redraws
PLAIN_PROGRESS_SECONDS: Final = 1.0  # between progress lines without a TTY
PLAIN_PROGRESS_FOREVER_SECONDS: Final = 10.0
STALL_SECONDS: Final = 60.0  # without --forever, give up (exit 1) when nothing settles this long
FINISH_SECONDS: Final = 10.0  # with --forever, how long the first Ctrl-C waits for what is queued
TRICKLE_PER_SECOND: Final = 3.0  # mean receipts enqueued per second with --forever
TRICKLE_MALFORMED_CHANCE: Final = 0.05

_SAMPLE_SQL: Final = (
    "SELECT status, COUNT(*) AS receipts, ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (), 1) AS percent "
    "FROM sms_receipts WHERE message_type = 'SmsReport' GROUP BY status ORDER BY receipts DESC"
)
_BAR_WIDTH: Final = 24
_TOTAL_COLUMNS: Final = ("seeded", "received", "stored", "dead_lettered", "rows")


@dataclass(frozen=True)
class DemoOptions:
    """What ``mns-consumer demo`` was asked to do (its command-line options)."""

    receipts_per_queue: int
    seed: int
    data_dir: Path
    forever: bool
    http_listen: str
    as_json: bool


@dataclass(frozen=True)
class DemoPaths:
    """Where a demo's files are, all inside one folder (the layout ``emulator_config`` writes)."""

    data_dir: Path
    sqlite: Path
    jsonl: dict[str, Path]
    dead_letter: Path
    config: Path  # written, so that the commands the summary prints run after the demo ended

    @classmethod
    def for_dir(cls, data_dir: Path) -> DemoPaths:
        folder = data_dir.resolve()
        jsonl = {message_type: folder / f"{message_type}.jsonl" for message_type in DEMO_MESSAGE_TYPES}
        return cls(folder, folder / "receipts.db", jsonl, folder / "dead-letter.jsonl", folder / "config.yaml")

    def demo_files(self) -> list[Path]:
        """Every file a demo run may leave behind but the marker: what the next run deletes."""
        sqlite_files = [self.sqlite.with_name(self.sqlite.name + suffix) for suffix in ("-wal", "-shm", "-journal")]
        return [self.sqlite, *sqlite_files, *self.jsonl.values(), self.dead_letter, self.config]


def claim_data_dir(paths: DemoPaths) -> None:
    """Ready ``paths.data_dir`` for a run without deleting a file the demo did not write.

    Raises:
        ConfigError: If the folder holds files but no marker, or is not a usable folder.
    """
    folder, marker = paths.data_dir, paths.data_dir / MARKER_NAME
    try:
        if folder.exists() and not folder.is_dir():
            raise ConfigError("--data-dir", "", f"{folder} is not a folder", "pass a new or empty folder")
        foreign = sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []
        if foreign and not marker.is_file():
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
        marker.write_text(
            "This folder holds the data of `mns-consumer demo`. The next demo run here deletes the demo's\n"
            "files (receipts.db, <MessageType>.jsonl, dead-letter.jsonl, config.yaml) and keeps anything else.\n",
            encoding="utf-8",
        )
    except OSError as exc:
        raise ConfigError("--data-dir", "", f"cannot use {folder}: {exc}", "pass a folder you can write to") from None


@dataclass
class QueueTally:
    """One demo queue: messages seeded, received, stored and dead-lettered, and the files' counts."""

    message_type: str
    queue_name: str
    seeded: int = 0  # valid receipts and malformed bodies
    malformed: int = 0
    received: int = 0  # a redelivery counts again
    stored: int = 0
    dead_lettered: int = 0
    rows: int = 0  # in the SQLite table, read after the stop
    jsonl_lines: int = 0
    drained_at: float | None = None  # monotonic time the queue was last seen empty; None while busy
    busy_seconds: float = 0.0

    @property
    def settled(self) -> int:
        return self.stored + self.dead_lettered

    @property
    def rate(self) -> float:
        return self.settled / self.busy_seconds if self.busy_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_type": self.message_type,
            "queue": self.queue_name,
            **{name: getattr(self, name) for name in ("seeded", "malformed", "received", "stored", "dead_lettered")},
            "sqlite_rows": self.rows,
            "jsonl_lines": self.jsonl_lines,
            "rate_per_second": round(self.rate, 1),
        }


@dataclass
class DemoSummary:
    """The outcome of a demo run: :meth:`render` for people, :meth:`to_dict` for ``--json``.

    ``delivery`` counts messages per outcome class (state when there is none) in the status table, one
    row per sent message; ``opt_outs`` is (numbers, replies) from the opt-out table.
    """

    tallies: list[QueueTally]
    paths: DemoPaths
    seconds: float
    drained: bool
    forever: bool
    seed: int
    metrics_url: str
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    delivery: Counter[str] = field(default_factory=Counter)
    opt_outs: tuple[int, int] = (0, 0)

    def delivery_to_dict(self) -> dict[str, Any]:
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
        queues = [tally.to_dict() for tally in self.tallies]
        columns = ("seeded", "malformed", "received", "stored", "dead_lettered", "jsonl_lines", "sqlite_rows")
        paths = self.paths
        return {
            "drained": self.drained,
            "forever": self.forever,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "queues": queues,
            "totals": {name: sum(queue[name] for queue in queues) for name in columns},
            "dead_letter_reasons": dict(self.dead_letter_reasons.most_common()),
            "delivery": self.delivery_to_dict(),
            "opt_outs": {"table": "sms_receipts_opt_outs", "numbers": self.opt_outs[0], "replies": self.opt_outs[1]},
            "paths": {
                "data_dir": str(paths.data_dir),
                "sqlite": str(paths.sqlite),
                "jsonl": {t.message_type: str(paths.jsonl[t.message_type]) for t in self.tallies},
                "dead_letter": str(paths.dead_letter),
                "config": str(paths.config),
            },
            "metrics_url": self.metrics_url,
            "sample_query": self.sample_commands(),
        }

    def render(self) -> str:
        took = f"{self.seconds:.1f} s"
        if self.forever:
            state = f"ran for {took}, " + ("drained at the stop" if self.drained else "stopped undrained")
        else:
            state = f"drained in {took}" if self.drained else f"stopped undrained after {took}"
        commands = self.sample_commands()
        lines = [
            f"Summary: {state} (seed {self.seed})",
            "",
            *self._table(),
            *(
                f"  {t.message_type}: {t.stored - t.rows} stored receipt(s) repeated an earlier dedupe key: "
                "one row each"
                for t in self.tallies
                if 0 < t.rows < t.stored
            ),
            "",
            *self._delivery_lines(),
            "",
            *self._dead_letter_lines(),
            "",
            *self._where_lines(),
            "",
            "Try a query (SmsReport delivery rate by status):",
            f"  {commands['sqlite3']}",
            f"  {commands['python']}",
        ]
        return "\n".join(lines)

    def _table(self) -> list[str]:
        header = ("queue", "seeded", "received", "stored", "dead-lettered", "SQLite rows", "rate/s")
        rows = [(t.message_type, *(str(getattr(t, c)) for c in _TOTAL_COLUMNS), f"{t.rate:.1f}") for t in self.tallies]
        busiest = max((t.busy_seconds for t in self.tallies), default=0.0)
        settled = sum(t.settled for t in self.tallies)
        totals = (str(sum(int(getattr(t, c)) for t in self.tallies)) for c in _TOTAL_COLUMNS)
        total = ("total", *totals, f"{settled / busiest if busiest > 0 else 0.0:.1f}")
        widths = [max(len(row[i]) for row in [header, *rows, total]) for i in range(len(header))]

        def line(cells: tuple[str, ...]) -> str:
            rest = "  ".join(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
            return f"  {cells[0].ljust(widths[0])}  {rest}"

        rule = "  " + "-" * (sum(widths) + 2 * (len(widths) - 1))
        return [line(header), rule, *map(line, rows), rule, line(total)]

    def _delivery_lines(self) -> list[str]:
        delivery = self.delivery_to_dict()
        if not delivery["messages"]:
            return ["Delivery: no SmsReport stored."]
        by_class: dict[str, dict[str, Any]] = delivery["by_class"]
        width = max(map(len, by_class))
        numbers, replies = self.opt_outs
        return [
            f"Delivery by outcome class (table sms_receipts_status, one row per message): {delivery['messages']} "
            f"messages, {delivery['delivered_percent']}% delivered",
            *(f"  {name:<{width}}  {e['messages']:>5}  {e['percent']:>5.1f}%" for name, e in by_class.items()),
            f"Opt-outs (table sms_receipts_opt_outs): {numbers} number(s) replied with an unsubscribe keyword "
            f"({replies} replies)",
        ]

    def _dead_letter_lines(self) -> list[str]:
        total = sum(self.dead_letter_reasons.values())
        if not total:
            return ["Dead letters: none."]
        return [
            f"Dead letters: {total} (their warnings were kept off the screen), by reason:",
            *(f"  {count:>4} x {reason}" for reason, count in self.dead_letter_reasons.most_common()),
            f"  replay them once fixed: mns-consumer dead-letters replay {shlex.quote(str(self.paths.dead_letter))} "
            f"--config {shlex.quote(str(self.paths.config))}",
        ]

    def _where_lines(self) -> list[str]:
        paths = self.paths
        lines = [f"Where the data is ({paths.data_dir}):", f"  SQLite database  {paths.sqlite}  (table sms_receipts)"]
        for index, tally in enumerate(self.tallies):
            path = paths.jsonl[tally.message_type]
            note = f"{tally.jsonl_lines} lines" if path.exists() else "not written: nothing stored"
            lines.append(f"  {'JSON Lines' if index == 0 else '':<15}  {path}  ({note})")
        letters = sum(self.dead_letter_reasons.values())
        note = f"{letters} lines" if paths.dead_letter.exists() else "not written: no dead letters"
        lines.append(f"  Dead letters     {paths.dead_letter}  ({note})")
        return lines


def _shell_double_quoted(text: str) -> str:
    """``text`` in double quotes for a POSIX shell, so that the single quotes of the SQL stay readable."""
    escaped = "".join("\\" + char if char in '\\"$`' else char for char in text)
    return f'"{escaped}"'


def _short_reason(reason: str, message_type: str) -> str:
    """A dead letter's reason without per-message detail, so that equal causes are counted together."""
    text = reason.removeprefix("undecodable: ").removeprefix(f"{message_type}: ")
    if text.startswith(f"{message_type}."):
        text = f"field {text[len(message_type) + 1 :]}"
    return text.split(" (", 1)[0]


def _drop_summarized_events(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # The per-message dead-letter warnings would drown the display; the summary counts them by reason.
    if event_dict.get("event") in ("receipt.undecodable", "receipt.rejected"):
        raise structlog.DropEvent
    return event_dict


@contextlib.contextmanager
def _without_proxy_variables() -> Iterator[None]:
    """Unset proxy variables during the run: the Tea transport sends even loopback requests through them."""
    saved = {key: value for key, value in os.environ.items() if "proxy" in key.lower()}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


class _Interrupts:
    """Counts Ctrl-C (and SIGTERM) in the main thread; at ``kill_at`` the process leaves at once."""

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
            os._exit(EXIT_KILLED)


def _seed(emulator: Emulator, tally: QueueTally, receipts: int) -> None:
    """Enqueue ``receipts`` valid receipts with a few poison bodies spread among them."""
    malformed = 0 if receipts <= 0 else max(1, round(receipts * MALFORMED_SHARE))
    chunks = malformed + 1
    for index in range(chunks):
        count = receipts // chunks + (1 if index < receipts % chunks else 0)
        poison = 1 if index < malformed else 0
        emulator.produce(tally.message_type, count, malformed=poison)
        tally.seeded += count + poison
        tally.malformed += poison


class _Console:
    """The main thread's side of a run: trickles receipts in (``--forever``), reads the tallies, draws."""

    def __init__(
        self, emulator: Emulator, supervisor: Supervisor, tallies: list[QueueTally], options: DemoOptions, out: TextIO
    ) -> None:
        self.emulator = emulator
        self.supervisor = supervisor
        self.tallies = tallies
        self.forever = options.forever
        self.out = out
        self.tty = out.isatty()
        self.random = random.Random(options.seed)
        self.started = self.next_trickle = time.monotonic()
        self.drawn = 0  # lines of the TTY display to redraw
        self.last_plain: float | None = None

    def trickle(self, now: float) -> None:
        """Enqueue a few receipts per second of random types, now and then a malformed one."""
        while self.next_trickle <= now:
            tally = self.random.choice(self.tallies)
            poison = self.random.random() < TRICKLE_MALFORMED_CHANCE
            self.emulator.produce(tally.message_type, 0 if poison else 1, malformed=int(poison))
            tally.seeded += 1
            tally.malformed += int(poison)
            self.next_trickle += self.random.expovariate(TRICKLE_PER_SECOND)

    def refresh(self, now: float) -> bool:
        """Update every tally; True when every queue is drained.

        Drained means the emulator holds none of the queue's messages and its poller has nothing in
        flight. The emulator is read first: a message gone from it was deleted, and once the poller
        shows nothing in flight, that delete has been counted.
        """
        slots = {slot.queue.queue_name: slot for slot in self.supervisor.slots}
        events = self.supervisor.events
        drained_all = True
        for tally in self.tallies:
            counts = self.emulator.queue(tally.queue_name).counts()
            slot = slots.get(tally.queue_name)
            busy = counts.active + counts.inactive + counts.delayed > 0 or slot is None or slot.poller.in_flight > 0
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

    def show(self, now: float, *, final: bool = False) -> None:
        """Redraw the bars in place on a TTY; otherwise print a plain line when one is due."""
        if self.tty:
            # Back to the first line of the block, then each line is cleared and rewritten.
            text = [f"\x1b[{self.drawn}F"] if self.drawn else []
            for tally in self.tallies:
                filled = math.floor((min(1.0, tally.settled / tally.seeded) if tally.seeded else 1.0) * _BAR_WIDTH)
                text.append(
                    f"\x1b[2K  {tally.message_type:<18} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] "
                    f"{tally.settled:>6}/{tally.seeded:<6} stored {tally.stored:>6}  "
                    f"dead-lettered {tally.dead_lettered:>4}  {tally.rate:8.1f}/s\n"
                )
            self.out.write("".join(text))
            self.out.flush()
            self.drawn = len(self.tallies)
            return
        interval = PLAIN_PROGRESS_FOREVER_SECONDS if self.forever else PLAIN_PROGRESS_SECONDS
        if final or self.last_plain is None or now - self.last_plain >= interval:
            self.last_plain = now
            parts = ", ".join(f"{t.message_type} {t.settled}/{t.seeded}" for t in self.tallies)
            self.note(f"progress {now - self.started:5.1f} s: {parts}")

    def note(self, text: str) -> None:
        """Print below the display; a TTY display then starts a new block under it."""
        self.out.write(f"{text}\n")
        self.out.flush()
        self.drawn = 0

    def consume(self, interrupts: _Interrupts) -> int:
        """Loop until drained, stalled or interrupted; returns the exit code."""
        last_settled, last_progress = -1, time.monotonic()
        finish_by: float | None = None
        while True:
            now = time.monotonic()
            if self.forever and not interrupts.count:
                self.trickle(now)
            drained = self.refresh(now)
            self.show(now)
            if not self.forever and (drained or interrupts.count):
                return EXIT_OK
            if self.forever and interrupts.count:
                if finish_by is None:
                    self.note("Stopping: finishing the receipts already queued (Ctrl-C again to stop now).")
                    finish_by = now + FINISH_SECONDS
                if drained or interrupts.count > 1 or now >= finish_by:
                    return EXIT_OK
            settled = sum(tally.settled for tally in self.tallies)
            if settled != last_settled:
                last_settled, last_progress = settled, now
            elif not self.forever and now - last_progress > STALL_SECONDS:
                self.note(f"Nothing settled for {STALL_SECONDS:.0f} s: giving up (see the warnings on stderr).")
                return EXIT_FAILURE
            time.sleep(TICK_SECONDS)


def _wait_until_ready(
    supervisor: Supervisor, runner: threading.Thread, errors: list[Exception], interrupts: _Interrupts
) -> bool:
    """Wait for the pollers to run; False if the run ended (or was interrupted) first.

    Raises:
        ConfigError: If the supervisor could not start (e.g. the metrics address is taken).
    """
    while not supervisor.ready.wait(TICK_SECONDS) and runner.is_alive():
        if interrupts.count:
            return False
    for error in errors:
        if isinstance(error, ConfigError) and error.key_path == "http.listen":
            raise ConfigError("--http-listen", "", error.problem, "pass a free HOST:PORT; port 0 picks one") from None
        raise error
    return supervisor.ready.is_set()


def _summarize(
    options: DemoOptions, paths: DemoPaths, tallies: list[QueueTally], seconds: float, drained: bool, url: str
) -> DemoSummary:
    """The summary, with rows per queue, messages per outcome class (or state) and opt-outs read-only
    from SQLite, and dead letters counted by reason."""
    summary = DemoSummary(tallies, paths, seconds, drained, options.forever, options.seed, url)
    rows: dict[str, int] = {}
    if paths.sqlite.exists():
        with contextlib.closing(sqlite3.connect(f"{paths.sqlite.as_uri()}?mode=ro", uri=True)) as database:
            rows = dict(database.execute("SELECT queue, COUNT(*) FROM sms_receipts GROUP BY queue").fetchall())
            by_class = "SELECT COALESCE(outcome_class, state), COUNT(*) FROM sms_receipts_status GROUP BY 1"
            summary.delivery.update(dict(database.execute(by_class).fetchall()))
            opt_outs = "SELECT COUNT(*), COALESCE(SUM(replies), 0) FROM sms_receipts_opt_outs"
            numbers, replies = database.execute(opt_outs).fetchone()
            summary.opt_outs = (int(numbers), int(replies))
    if paths.dead_letter.exists():
        summary.dead_letter_reasons.update(
            _short_reason(letter.reason, letter.message_type) for letter in read_dead_letters(paths.dead_letter)
        )
    for tally in tallies:
        tally.rows = rows.get(tally.queue_name, 0)
        if (jsonl := paths.jsonl[tally.message_type]).exists():
            tally.jsonl_lines = sum(1 for line in jsonl.read_bytes().splitlines() if line.strip())
    return summary


def _metrics_url(listen: str, port: int) -> str:
    host = host_and_port(listen)[0]
    if host in ("0.0.0.0", "::"):  # noqa: S104  (a wildcard bind is reached through loopback)
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"


def run_demo(options: DemoOptions) -> int:
    """Run the demo and print its summary to stdout; proxy variables are unset meanwhile.

    Returns:
        0 when the demo ran (drained, or stopped with Ctrl-C), 1 when it gave up because nothing settled.

    Raises:
        ConfigError: If ``--data-dir`` holds foreign files, or the metrics address cannot be used.
    """
    stream = sys.stdout
    paths = DemoPaths.for_dir(options.data_dir)
    claim_data_dir(paths)
    configure_logging(LoggingConfig(level="warning"))
    structlog.configure(processors=[_drop_summarized_events, *structlog.get_config()["processors"]])
    tallies = [QueueTally(t, f"Alicom-Queue-{DEMO_ACCOUNT_UID}-{t}") for t in DEMO_MESSAGE_TYPES]
    settings = EmulatorSettings(queues={t.message_type: t.queue_name for t in tallies}, seed=options.seed)
    with (
        _without_proxy_variables(),
        Emulator(settings) as emulator,
        _Interrupts(3 if options.forever else 2) as interrupts,
    ):
        for tally in tallies:
            _seed(emulator, tally, options.receipts_per_queue)
        data: dict[str, Any] = emulator_config(emulator.describe(), paths.data_dir)
        for queue in data["queues"]:
            queue["wait_seconds"] = 1  # a short long poll, so that the end is noticed quickly
        data["logging"] = {"level": "warning"}
        data["http"] = {"listen": options.http_listen}
        config = parse_config(data, "demo")
        # 0600 like every file the daemon creates: it holds the emulator's key.
        with os.fdopen(open_private(str(paths.config), os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as file:
            file.write("# The configuration of the last `mns-consumer demo` run in this folder.\n")
            yaml.safe_dump(data, file, sort_keys=False, allow_unicode=True)
        supervisor = Supervisor(config, handle_signals=False, environ={})
        errors: list[Exception] = []  # what the supervisor died of, for the main thread to raise

        def run_supervisor() -> None:
            try:
                supervisor.run()
            except Exception as exc:  # noqa: BLE001  (handed to the main thread, which raises it)
                errors.append(exc)

        runner = threading.Thread(target=run_supervisor, name="demo-supervisor", daemon=True)
        runner.start()
        try:
            if not _wait_until_ready(supervisor, runner, errors, interrupts):
                stream.write("Stopped before the daemon was ready.\n")
                return EXIT_OK
            assert supervisor.health is not None  # noqa: S101  (http.listen is set: it started before ready)
            metrics_url = _metrics_url(options.http_listen, supervisor.health.port)
            malformed = tallies[0].malformed
            stream.write(
                f"mns-consumer demo: emulator at {emulator.url}, {len(tallies)} queues seeded with "
                f"{tallies[0].seeded - malformed} receipts and {malformed} malformed bodies each "
                f"(seed {options.seed})\n"
                f"  data:    {paths.data_dir}\n  metrics: {metrics_url}\n"
                + (
                    "Consuming while receipts trickle in; Ctrl-C to stop (the summary follows).\n"
                    if options.forever
                    else "Consuming until every queue is drained (Ctrl-C stops early).\n"
                )
            )
            stream.flush()
            console = _Console(emulator, supervisor, tallies, options, stream)
            code = console.consume(interrupts)
            stopped = time.monotonic()
        finally:
            # Stop the daemon before the emulator goes: its drain still deletes from the emulator.
            supervisor.request_stop()
            runner.join()
        # Read again after the stop: the drain settled the batches that were still in flight.
        drained = console.refresh(stopped)
        console.show(stopped, final=True)
    summary = _summarize(options, paths, tallies, stopped - console.started, drained, metrics_url)
    stream.write("\n" + summary.render() + "\n")
    if options.as_json:
        stream.write(json.dumps(summary.to_dict(), ensure_ascii=False) + "\n")
    stream.flush()
    return code
