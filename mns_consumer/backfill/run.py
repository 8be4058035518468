"""One backfill run: query the sends a few at a time, store what they found, report."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from prometheus_client import CollectorRegistry

from mns_consumer.alicom.credentials import resolve_access_key
from mns_consumer.alicom.endpoints import Endpoints, resolve_endpoints
from mns_consumer.alicom.send_details import (
    SEND_STATUS_PENDING,
    SendDetail,
    SendDetailsClient,
    beijing_today,
)
from mns_consumer.backfill.records import MESSAGE_TYPE, SEND_STATUSES, receipt_from_detail
from mns_consumer.backfill.sends import Send
from mns_consumer.config import Config
from mns_consumer.delivery import Abandoned, Dispatcher, Item, write_until_settled
from mns_consumer.errors import (
    ConfigError,
    DecodeError,
    SendDetailsAuthError,
    SendDetailsError,
    SendDetailsUnavailable,
    SinkUnavailable,
)
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE
from mns_consumer.observe.events import Events
from mns_consumer.observe.metrics import BACKFILL_QUEUE, Metrics
from mns_consumer.observe.textfile import carry_over, write_textfile
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import DeadLetter, DeadLetterSink, Sink, SinkResult

_T = TypeVar("_T")


@runtime_checkable
class StoredKeys(Protocol):
    """A sink that can say which dedupe keys it holds already (the database sink can; files, webhooks can't).

    When every sink of a run can, the report tells receipts already stored apart from the ones the run
    recovered; otherwise it counts them together, since a sink's write accepts both alike.
    """

    def stored_keys(self, keys: Sequence[str]) -> frozenset[str]:
        """The subset of ``keys`` stored already.

        Raises:
            SinkUnavailable: If the destination cannot be asked now.
        """
        ...


@dataclass(frozen=True)
class BackfillOptions:
    """How one run behaves, beyond the ``backfill`` configuration section.

    Attributes:
        sinks: Sink names to write to; empty: the sinks SmsReport is routed to (queues and push routes).
        dry_run: Query and map, but open no sink and store nothing (``emit`` sees what would be stored).
        include_pending: Store SendStatus 1 records as ``pending`` receipts (default: the configuration's).
        concurrency: Queries in flight (default: the configuration's).
    """

    sinks: tuple[str, ...] = ()
    dry_run: bool = False
    include_pending: bool | None = None
    concurrency: int | None = None


@dataclass(frozen=True)
class SendFailure:
    """A send that could not be queried: Alibaba's code or a local one (``InvalidSendDate``,
    ``NetworkError``, ...), and what went wrong, with what to do where that is known."""

    send: Send
    code: str
    message: str


@dataclass
class BackfillReport:
    """What a run did; :meth:`summary` is its last line, :attr:`exit_code` its exit code.

    ``stored`` counts receipts every sink durably accepted, new or not; ``already_stored`` and
    ``newly_stored`` split it (None when a sink cannot tell, see :class:`StoredKeys`). ``unstored``
    were found but not stored because the run stopped first, ``not_tried`` sends were not queried
    for the same reason. ``beijing_today`` is Alibaba's calendar day when the run started, and
    ``unavailable`` says Dysmsapi or a sink stayed down (rerun later).
    """

    sends: int = 0
    queried: int = 0
    pages: int = 0
    found: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    stored: int = 0
    already_stored: int | None = 0
    newly_stored: int | None = 0
    would_store: int = 0
    dead_lettered: int = 0
    unstored: int = 0
    not_tried: int = 0
    failures: list[SendFailure] = field(default_factory=list)
    unmatched: list[Send] = field(default_factory=list)
    beijing_today: date | None = None
    stopped: str | None = None
    unavailable: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every send queried, every receipt found stored (pending ones may wait for a later run)."""
        return self.stopped is None and not self.failures and not self.dead_lettered and not self.unstored

    @property
    def exit_code(self) -> int:
        """0 when :attr:`ok`; 4 when stopped by an unavailable Dysmsapi or sink (rerun later); else 1."""
        if self.unavailable:
            return EXIT_UNAVAILABLE
        return EXIT_OK if self.ok else EXIT_FAILURE

    def counts(self) -> dict[str, int | None]:
        """The counters, by name, for the summary line, JSON output and the log (None: a sink cannot tell)."""
        return {
            "sends": self.sends,
            "queried": self.queried,
            "pages": self.pages,
            "found": self.found,
            "delivered": self.delivered,
            "failed": self.failed,
            "pending": self.pending,
            "stored": self.stored,
            "already_stored": self.already_stored,
            "newly_stored": self.newly_stored,
            "unmatched": len(self.unmatched),
            "would_store": self.would_store,
            "dead_lettered": self.dead_lettered,
            "unstored": self.unstored,
            "errors": len(self.failures),
            "not_tried": self.not_tried,
        }

    def summary(self, *, dry_run: bool = False) -> str:
        """One line for the operator: sends queried, records found, then what happened to the receipts."""
        text = (
            f"backfill: {self.sends} send(s), {self.queried} queried in {self.pages} page(s); "
            f"{self.found} record(s) found ({self.delivered} delivered, {self.failed} delivery failed, "
            f"{self.pending} pending)"
        )
        if dry_run:
            text += f"; would store {self.would_store}"
        elif self.already_stored is None or self.newly_stored is None:
            text += f"; {self.stored} stored (new or already present: a sink cannot tell which)"
        else:
            text += f"; {self.already_stored} already stored, {self.newly_stored} newly stored (recovered)"
        text += f", {self.pending} still pending, {self._failed_text()}"
        if self.not_tried:
            text += f", {self.not_tried} send(s) not tried"
        text += f" in {self.seconds:.1f} s"
        if self.stopped:
            text += f"; stopped: {self.stopped}"
        return text

    def _failed_text(self) -> str:
        unqueried, unstored = len(self.failures), self.dead_lettered + self.unstored
        parts = [f"{unqueried} send(s) not queried"] if unqueried else []
        if self.dead_lettered:
            parts.append(f"{self.dead_lettered} dead-lettered")
        if self.unstored:
            parts.append(f"{self.unstored} found but not stored")
        detail = f" ({', '.join(parts)})" if parts else ""
        return f"{unqueried + unstored} failed{detail}"

    def to_json(self, *, mask: bool = True) -> dict[str, Any]:
        """The report as JSON-ready data (phone numbers masked unless ``mask`` is False)."""
        return {
            **self.counts(),
            "ok": self.ok,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "failures": [
                {**failure.send.to_json(mask), "code": failure.code, "message": failure.message}
                for failure in self.failures
            ],
        }


@dataclass
class _Queried:
    """What one worker brings back for one send (None instead: not tried, the run was stopping)."""

    send: Send
    records: list[SendDetail] = field(default_factory=list)
    pages: int = 0
    error: SendDetailsError | None = None


class _Stop(Exception):  # noqa: N818  (a flow signal, STYLE.md 4)
    """The run must stop: ``reason`` for the report; ``unavailable`` when retrying later will help."""

    def __init__(self, reason: str, *, unavailable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unavailable = unavailable


def run_backfill(
    config: Config,
    sends: Sequence[Send],
    options: BackfillOptions | None = None,
    *,
    environ: Mapping[str, str],
    events: Events | None = None,
    build_sink: Callable[[str], Sink] | None = None,
    stop: threading.Event | None = None,
    emit: Callable[[Receipt], None] | None = None,
) -> BackfillReport:
    """Query each send, map its records to receipts and store them in the SmsReport sinks.

    Args:
        sends: The sends; repeated ones are queried once.
        environ: The process environment (AccessKey variables).
        build_sink: Makes a sink by name (default: from ``config.sinks``); for tests and embedding.
        stop: Set it (e.g. from a signal handler) to stop querying; in-flight sends finish.
        emit: Called with every receipt that is stored (or, in a dry run, would be).

    Returns:
        The report; its ``exit_code`` is the command's.

    Raises:
        ConfigError: If no sink is routed for SmsReport and none is named, a named sink is not defined,
            the credentials or endpoints cannot be resolved, or a sink cannot ever work.
    """
    options = options or BackfillOptions()
    emit = emit or (lambda receipt: None)
    run = _Run(config, options, environ, events or Events(), build_sink, stop or threading.Event(), emit)
    return run.execute(list(dict.fromkeys(sends)))


@dataclass(repr=False, eq=False)  # no repr: ``environ`` holds the AccessKey
class _Run:
    """One backfill run: queries on worker threads, everything else (sinks, counts) on the caller's."""

    config: Config
    options: BackfillOptions
    environ: Mapping[str, str]
    events: Events
    build_sink: Callable[[str], Sink] | None
    stop: threading.Event
    emit: Callable[[Receipt], None]

    def __post_init__(self) -> None:
        config, options = self.config, self.options
        self.settings = config.backfill
        self.report = BackfillReport()
        self.include_pending = (
            options.include_pending if options.include_pending is not None else self.settings.include_pending
        )
        self.sink_names = self._sink_names()
        if config.dead_letter is None and not options.dry_run:
            raise ConfigError(
                "config",
                "dead_letter",
                "is required for a backfill: receipts a sink rejects must go somewhere",
                "add dead_letter: {type: file, path: /var/lib/mns-consumer/dead-letter.jsonl}",
            )
        self._stopped: _Stop | None = None
        self._sinks: list[Sink] = []
        self._dead_letter: DeadLetterSink | None = None
        self._delivery: _Delivery | None = None
        self._buffer: dict[str, Receipt] = {}
        self._current = threading.local()
        endpoints = resolve_endpoints(config.region, config.endpoints)
        self.client = send_details_client(
            config, endpoints, self.environ, on_retry=self._on_retry, sleep=self.stop.wait
        )

    def _sink_names(self) -> list[str]:
        if self.options.sinks:
            unknown = [name for name in self.options.sinks if name not in self.config.sinks]
            if unknown:
                known = ", ".join(sorted(self.config.sinks)) or "none defined"
                raise ConfigError("--sink", "", f"undefined sink(s) {', '.join(unknown)}", f"defined: {known}")
            return list(dict.fromkeys(self.options.sinks))
        names = self.config.sinks_for(MESSAGE_TYPE)
        if not names and not self.options.dry_run:
            raise ConfigError(
                "config",
                "queues",
                "no sink receives SmsReport receipts",
                "route SmsReport to sinks in queues (or push.routes), or name sinks with --sink",
            )
        return names

    # -- the whole run ---------------------------------------------------------------------------

    def execute(self, sends: list[Send]) -> BackfillReport:
        started = time.monotonic()
        self.report.sends = len(sends)
        self.report.beijing_today = beijing_today()
        if self.events.metrics is not None:
            self.events.metrics.watch_backfill(MESSAGE_TYPE, self.sink_names)
        try:
            if not self.options.dry_run:
                self._open()
            self._query_all(sends)
            # Receipts found before a stop on the query side are still stored.
            self._flush()
            if self._stopped is not None:
                raise self._stopped
            if self.stop.is_set() and self.report.not_tried:
                self.report.stopped = f"interrupted; {self.report.not_tried} send(s) not tried: rerun them"
        except _Stop as exc:
            self.report.stopped = exc.reason
            self.report.unavailable = exc.unavailable
            self.report.unstored += len(self._buffer)
            self._buffer.clear()
        finally:
            self._close()
            self.report.seconds = time.monotonic() - started
            self.events.backfill_finished(
                MESSAGE_TYPE,
                self.report.ok,
                self.report.seconds,
                time.time(),
                stopped=self.report.stopped,
                **self.report.counts(),
            )
        return self.report

    def _open(self) -> None:
        for name in self.sink_names:
            sink = self.build_sink(name) if self.build_sink else self.config.sinks[name].build(name)
            _open_or_stop(f"sink {name!r}", sink)
            self._sinks.append(sink)
        if not all(isinstance(sink, StoredKeys) for sink in self._sinks):
            self.report.already_stored = self.report.newly_stored = None
        assert self.config.dead_letter is not None  # noqa: S101  (__init__ requires one unless dry_run)
        self._dead_letter = self.config.dead_letter.build()
        _open_or_stop("the dead-letter sink", self._dead_letter)
        self._delivery = _Delivery(self, self._sinks, self._dead_letter)

    def _close(self) -> None:
        for sink in self._sinks:
            sink.close()
        if self._dead_letter is not None:
            self._dead_letter.close()

    def _query_all(self, sends: list[Send]) -> None:
        concurrency = self.options.concurrency or self.settings.concurrency
        settled = 0
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill") as pool:
            futures: list[Future[_Queried | None]] = [pool.submit(self._query, send) for send in sends]
            try:
                for future in as_completed(futures):
                    if future.cancelled():
                        continue
                    settled += 1
                    try:
                        self._settle(future.result())
                    except _Stop as exc:
                        self._stopped = self._stopped or exc
                        self._cancel(futures)
                        continue
                    if len(self._buffer) >= self.settings.batch_size:
                        self._flush()
            except BaseException:
                self._cancel(futures)
                raise
            finally:
                # Sends never started, or whose answer was not used because a sink stopped the run.
                self.report.not_tried += len(futures) - settled

    def _cancel(self, futures: list[Future[_Queried | None]]) -> None:
        """Start no more queries; running ones end at their next retry wait (it watches ``stop``)."""
        self.stop.set()
        for future in futures:
            future.cancel()

    # -- one send (worker threads) ---------------------------------------------------------------

    def _query(self, send: Send) -> _Queried | None:
        if self.stop.is_set():
            return None
        result = _Queried(send)
        self._current.send = send
        try:
            for page in self.client.pages(send.phone_number, send.send_date, send.biz_id):
                result.pages += 1
                result.records.extend(page.records)
                self.events.backfill_page(MESSAGE_TYPE, send.where, page.page, len(page.records), page.total_count)
        except SendDetailsError as exc:
            result.error = exc
        return result

    def _on_retry(self, attempt: int, error: SendDetailsUnavailable, delay: float) -> None:
        """Called by the client on the worker thread querying ``self._current.send``."""
        send: Send = self._current.send
        self.events.backfill_query_retry(MESSAGE_TYPE, send.where, attempt, error.code, str(error), round(delay, 3))

    # -- results (caller's thread) ---------------------------------------------------------------

    def _settle(self, result: _Queried | None) -> None:
        report = self.report
        if result is None:
            report.not_tried += 1
            return
        report.pages += result.pages
        if result.error is not None:
            self._failed(result.send, result.error)
            return
        report.queried += 1
        if not result.records:
            report.unmatched.append(result.send)
        statuses: Counter[str] = Counter()
        for detail in result.records:
            status = SEND_STATUSES[detail.send_status]
            statuses[status] += 1
            if detail.send_status == SEND_STATUS_PENDING and not self.include_pending:
                continue
            try:
                receipt = receipt_from_detail(detail, result.send.biz_id, phone_number=result.send.phone_number)
            except DecodeError as exc:
                # An unreadable record (a time that does not parse) costs only itself, and is reported.
                self._failed(result.send, SendDetailsError("InvalidResponse", f"unreadable record: {exc}"))
                continue
            self._buffer.setdefault(receipt.dedupe_key, receipt)
        report.found += len(result.records)
        report.delivered += statuses["delivered"]
        report.failed += statuses["failed"]
        report.pending += statuses["pending"]
        for name, count in statuses.items():
            self.events.backfill_found(MESSAGE_TYPE, name, count)

    def _failed(self, send: Send, error: SendDetailsError) -> None:
        message = str(error)
        self.report.failures.append(SendFailure(send, error.code, message))
        self.events.backfill_query_failed(MESSAGE_TYPE, send.where, send.phone_number, error.code, message)
        if isinstance(error, SendDetailsAuthError):
            raise _Stop(f"Dysmsapi refused the AccessKey ({error.code}); fix credentials and rerun", unavailable=False)
        if isinstance(error, SendDetailsUnavailable):
            raise _Stop(
                f"Dysmsapi stayed unavailable through {self.settings.query_attempts} tries ({error.code}); "
                "rerun later (sends already stored are skipped by their dedupe keys)",
                unavailable=True,
            )

    # -- storing ---------------------------------------------------------------------------------

    def _flush(self) -> None:
        batch = list(self._buffer.values())
        if not batch:
            return
        if self.options.dry_run:
            self._buffer.clear()
            self.report.would_store += len(batch)
            for receipt in batch:
                self.emit(receipt)
            return
        assert self._delivery is not None  # noqa: S101  (opened unless dry_run)
        self._delivery.held_before = self._held_by_every_sink([receipt.dedupe_key for receipt in batch])
        self._delivery.dispatch([Item(receipt.raw, receipt.dedupe_key, receipt) for receipt in batch])
        self._buffer.clear()

    def _held_by_every_sink(self, keys: list[str]) -> frozenset[str]:
        """The keys every sink holds already, asked just before the write; empty when a sink cannot tell.

        A receipt that MNS delivers between this question and the write counts as recovered: the run
        stored it first. An unavailable sink stops the telling apart for the rest of the run (the
        write that follows has its own retries), rather than failing the run over a count.
        """
        report = self.report
        if report.already_stored is None:
            return frozenset()
        try:
            held = [cast(StoredKeys, sink).stored_keys(keys) for sink in self._sinks]  # StoredKeys: checked in _open
        except SinkUnavailable:
            report.already_stored = report.newly_stored = None
            return frozenset()
        return frozenset.intersection(*held) if held else frozenset()


class _Delivery(Dispatcher):
    """The delivery core as a run uses it: the backfill's own events and report counts, ``sink_attempts``
    tries of an unavailable sink, and then a :class:`_Stop` rather than an abandoned batch."""

    def __init__(self, run: _Run, sinks: list[Sink], dead_letter: DeadLetterSink) -> None:
        config = run.config
        super().__init__(
            BACKFILL_QUEUE,
            MESSAGE_TYPE,
            sinks,
            dead_letter,
            run.events,
            run.stop,
            retry_initial_seconds=config.sink_retry_initial_seconds,
            retry_max_seconds=config.sink_retry_max_seconds,
            source="query",
            sink_attempts=run.settings.sink_attempts,
        )
        self.run = run
        self.held_before: frozenset[str] = frozenset()

    def _write(self, sink: Sink, receipts: list[Receipt]) -> dict[str, str]:
        def written(result: SinkResult, accepted: list[Receipt], rejected: dict[str, str], seconds: float) -> None:
            statuses: Counter[str] = Counter(receipt.status or "delivered" for receipt in accepted)
            self.events.backfill_stored(MESSAGE_TYPE, sink.name, statuses, seconds)

        return self._guarded(sink.name, lambda: write_until_settled(sink, receipts, self._retry, written))[0]

    def _guarded(self, sink: str, call: Callable[[], _T]) -> _T:
        """Run a write retried by ``self._retry``; a sink's bug propagates.

        Raises:
            _Stop: When the sink stayed unavailable through ``sink_attempts`` tries, or the run was
                stopped while waiting for it.
        """
        try:
            return call()
        except Abandoned:
            raise _Stop(f"interrupted while sink {sink!r} was unavailable", unavailable=False) from None
        except SinkUnavailable as exc:
            attempts = self.run.settings.sink_attempts
            self.events.backfill_sink_gave_up(MESSAGE_TYPE, sink, attempts, exc.reason)
            raise _Stop(
                f"sink {sink!r} stayed unavailable through {attempts} tries ({exc.reason}); "
                "nothing is lost: rerun the same backfill once it is back",
                unavailable=True,
            ) from None

    def _on_retry(self, sink: str, attempt: int, error: SinkUnavailable, delay: float) -> None:
        attempts = self.run.settings.sink_attempts
        self.events.backfill_sink_retry(MESSAGE_TYPE, sink, attempt, attempts, error.reason, round(delay, 3))

    def _rejected(self, item: Item, sink: str, reason: str) -> None:
        self.events.backfill_rejected(MESSAGE_TYPE, sink, item.ref, reason)

    def _letter(self, item: Item, reason: str, sink: str | None) -> DeadLetter:
        return replace(super()._letter(item, reason, sink), queue=None)

    def _dead_lettered(self, count: int) -> None:
        self.run.report.dead_lettered += count
        self.events.backfill_dead_lettered(MESSAGE_TYPE, count)

    def _count_stored(self, receipts: list[Receipt]) -> None:
        report = self.run.report
        report.stored += len(receipts)
        if report.already_stored is not None and report.newly_stored is not None:
            old = sum(1 for receipt in receipts if receipt.dedupe_key in self.held_before)
            report.already_stored += old
            report.newly_stored += len(receipts) - old
        for receipt in receipts:
            self.run.emit(receipt)


def _open_or_stop(what: str, sink: Sink | DeadLetterSink) -> None:
    try:
        sink.open()
    except SinkUnavailable as exc:
        raise _Stop(f"{what} is unavailable: {exc.reason}", unavailable=True) from exc


def query_options(config: Config) -> dict[str, Any]:
    """The ``backfill`` section's timeouts and retries, as both Dysmsapi query clients take them."""
    backfill = config.backfill
    return {
        "connect_timeout_seconds": backfill.connect_timeout_seconds,
        "read_timeout_seconds": backfill.read_timeout_seconds,
        "attempts": backfill.query_attempts,
        "retry_initial_seconds": backfill.query_retry_initial_seconds,
        "retry_max_seconds": backfill.query_retry_max_seconds,
    }


def send_details_client(
    config: Config,
    endpoints: Endpoints,
    environ: Mapping[str, str],
    *,
    on_retry: Callable[[int, SendDetailsUnavailable, float], None] | None = None,
    sleep: Callable[[float], object] | None = None,
) -> SendDetailsClient:
    """QuerySendDetails with the configured AccessKey, paged and retried per the ``backfill`` section.

    Raises:
        ConfigError: If the credentials cannot be resolved.
    """
    return SendDetailsClient(
        resolve_access_key(config.credentials, environ),
        endpoints,
        page_size=config.backfill.page_size,
        on_retry=on_retry,
        sleep=sleep,
        **query_options(config),
    )


def describe_failure(failure: SendFailure, *, mask: bool = True) -> str:
    """One line about a send that could not be queried: where it was given, which send, why."""
    send = failure.send
    return f"{send.where} ({send.phone(mask)}, {send.send_date.isoformat()}, BizId {send.biz_id}): {failure.message}"


def unmatched_date_warning(report: BackfillReport, *, mask: bool = True, limit: int = 3) -> str | None:
    """A warning about sends that matched nothing on a day that is not today in Beijing, or None.

    QuerySendDetails files a send under its Beijing calendar day (UTC+8), so a day taken from UTC or
    local time is often the day before Alibaba's and matches nothing, which would otherwise read as
    "no receipt". A send dated today in Beijing may simply not be reported yet, so it is not named.
    """
    today = report.beijing_today
    suspects = [send for send in report.unmatched if send.send_date != today]
    if not suspects:
        return None
    named = "; ".join(f"{send.where} ({send.phone(mask)}, {send.send_date.isoformat()})" for send in suspects[:limit])
    more = f" and {len(suspects) - limit} more" if len(suspects) > limit else ""
    next_day = (suspects[0].send_date + timedelta(days=1)).isoformat()
    today_text = f" Today is {today.isoformat()} in Beijing." if today is not None else ""
    return (
        f"{len(suspects)} send(s) matched no record on the day given: {named}{more}. Alibaba files each send "
        f"under its day in Beijing time (UTC+8), so a send made after 16:00 UTC falls on the next day.{today_text} "
        f"If the date came from UTC or local time, try the day after (e.g. --date {next_day})."
    )


def events_with_textfile(path: Path | None) -> tuple[Events, Callable[[], str | None]]:
    """The run's Events and a function writing its metrics to ``path`` (a node_exporter textfile).

    Without a path, the Events count nothing into metrics and the writer does nothing. With one, the
    counters of the file's earlier runs are carried over first (see :mod:`mns_consumer.observe.textfile`).

    Returns:
        The Events, and the writer, which returns a warning text when the file cannot be written.
    """
    if path is None:
        return Events(), lambda: None
    metrics = Metrics(CollectorRegistry())
    carry_over(metrics, path)

    def write() -> str | None:
        try:
            write_textfile(metrics, path)
        except OSError as exc:
            return f"cannot write the metrics file {path}: {exc.strerror or exc}"
        return None

    return Events(metrics), write
