"""Reconcile one Beijing day: Alibaba's own counts (QuerySendStatistics) against the database sinks.

Receipts go missing silently (a queue nobody consumed, a push endpoint down through Alibaba's
retries); Alibaba's per-day counts say whether the sinks hold them all. Only responded reports
(delivered or failed) missing from a sink are a gap; sends still without a report are not. With the
application's send log, the sends lacking a final receipt are listed and, with ``--backfill``, handed
to :func:`~mns_consumer.backfill.run.run_backfill`. The manual's Backfill page has the details and
limits (sinks count receipts per status, Alibaba counts messages).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mns_consumer.alicom.credentials import resolve_access_key
from mns_consumer.alicom.endpoints import resolve_endpoints
from mns_consumer.alicom.pop_text import BEIJING
from mns_consumer.alicom.send_details import beijing_today
from mns_consumer.alicom.send_statistics import DailySendStatistics, SendStatisticsClient
from mns_consumer.backfill.records import MESSAGE_TYPE
from mns_consumer.backfill.run import BackfillOptions, BackfillReport, query_options, run_backfill
from mns_consumer.backfill.sends import Send
from mns_consumer.config import Config
from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_OK
from mns_consumer.receipts import dedupe_key
from mns_consumer.sinks.database import DatabaseSinkConfig, key_lookup, receipts_table, stored_among


@dataclass(frozen=True)
class StatusGap:
    """One status of one sink: Alibaba's count against the sink's.

    ``gap`` says whether ``missing`` counts as a gap (not for ``no_response``: nothing to receive yet).
    """

    status: str
    alibaba: int
    stored: int
    gap: bool = True

    @property
    def missing(self) -> int:
        """How many Alibaba counts that the sink lacks (0 when the sink holds as many or more)."""
        return max(0, self.alibaba - self.stored)

    @property
    def extra(self) -> int:
        """How many the sink holds beyond Alibaba's count (e.g. sends dated on another day)."""
        return max(0, self.stored - self.alibaba)


@dataclass(frozen=True)
class SinkCount:
    """What one database sink holds for the day: rows by status, and the send log's sends of the day
    with no delivered or failed receipt here (``without_final``)."""

    sink: str
    statuses: Mapping[str, int]
    without_final: tuple[Send, ...] = ()
    table_missing: bool = False

    def gaps(self, alibaba: DailySendStatistics) -> list[StatusGap]:
        """The four lines of the comparison: responded success, responded fail, no response, total."""
        delivered, failed = self.statuses.get("delivered", 0), self.statuses.get("failed", 0)
        return [
            StatusGap("responded_success", alibaba.responded_success, delivered),
            StatusGap("responded_fail", alibaba.responded_fail, failed),
            StatusGap("no_response", alibaba.no_response, self.statuses.get("pending", 0), gap=False),
            StatusGap("total", alibaba.total, delivered + failed + self.statuses.get("pending", 0), gap=False),
        ]

    def missing(self, alibaba: DailySendStatistics) -> int:
        """Responded reports Alibaba counts that this sink lacks."""
        return sum(line.missing for line in self.gaps(alibaba) if line.gap)


@dataclass
class ReconcileReport:
    """The outcome of one reconciliation of a Beijing day; :attr:`exit_code` is the command's.

    ``sinks`` are counted after the backfill when one ran (``before`` holds the counts before it);
    ``sends_of_day`` is None without a send log; ``beijing_today`` tells a day still filling.
    """

    send_date: date
    alibaba: DailySendStatistics
    sinks: list[SinkCount]
    sends_of_day: int | None = None
    sends_other_days: int = 0
    before: list[SinkCount] | None = None
    backfill: BackfillReport | None = None
    beijing_today: date | None = None

    @property
    def missing(self) -> int:
        """The largest number of responded reports any sink lacks: 0 means nothing is missing."""
        return max((sink.missing(self.alibaba) for sink in self.sinks), default=0)

    @property
    def exit_code(self) -> int:
        """0 when no sink lacks a responded report, 1 when one does (a timer alerts on it)."""
        return EXIT_OK if self.missing == 0 else EXIT_FAILURE

    def lines(self, *, mask: bool = True) -> list[str]:
        """The report for a person: the comparison per sink, then the sends without a final receipt."""
        day = self.send_date.isoformat()
        a = self.alibaba
        out = [
            f"reconcile {day} (Beijing day): Alibaba counts {a.total} sent, {a.responded_success} delivered, "
            f"{a.responded_fail} failed, {a.no_response} without a report"
        ]
        if self.beijing_today is not None and self.send_date >= self.beijing_today:
            out.append("  the day is not over in Beijing: sends, reports and receipts are still coming in")
        if self.before is not None and self.backfill is not None:
            before = ", ".join(f"sink {count.sink} missing {count.missing(a)}" for count in self.before)
            out.append(f"  before the backfill: {before}")
            out.append(f"  {self.backfill.summary()}")
        for sink in self.sinks:
            note = " (its table does not exist yet)" if sink.table_missing else ""
            out.append(f"  sink {sink.sink}{note}:")
            out.append(f"    {'status':<19}{'alibaba':>9}{'stored':>9}{'missing':>9}")
            for line in sink.gaps(a):
                missing = str(line.missing) if line.gap else "-"
                out.append(f"    {line.status:<19}{line.alibaba:>9}{line.stored:>9}{missing:>9}")
            if self.sends_of_day is not None:
                out.append(
                    f"    {len(sink.without_final)} of {self.sends_of_day} send(s) of the day without a final receipt"
                )
                out.extend(f"      {send.where}: {send.phone(mask)} BizId {send.biz_id}" for send in sink.without_final)
        if self.sends_other_days:
            out.append(f"  {self.sends_other_days} send(s) of the send log are dated on other days: not checked")
        verdict = (
            "nothing missing"
            if self.missing == 0
            else f"GAP: {self.missing} responded report(s) missing"
            + ("" if self.backfill else " (recover them: --sends FILE --backfill, or mns-consumer backfill)")
        )
        out.append(f"reconcile {day}: {verdict}")
        return out

    def to_json(self, *, mask: bool = True) -> dict[str, Any]:
        """The report as JSON-ready data (phone numbers masked unless ``mask`` is False)."""
        a = self.alibaba
        return {
            "send_date": self.send_date.isoformat(),
            "alibaba": {name: count for name, count in asdict(a).items() if name != "send_date"},
            "sinks": [_sink_json(sink, a, mask=mask) for sink in self.sinks],
            "before_backfill": None if self.before is None else [_sink_json(s, a, mask=mask) for s in self.before],
            "backfill": None if self.backfill is None else self.backfill.to_json(mask=mask),
            "sends_of_day": self.sends_of_day,
            "sends_other_days": self.sends_other_days,
            "day_over": None if self.beijing_today is None else self.send_date < self.beijing_today,
            "missing": self.missing,
            "ok": self.missing == 0,
        }


class StoredReceipts:
    """Read-only counts of one database sink's table: the sink is not opened, so nothing is created (a
    server is read through :meth:`DatabaseSink.read_engine`, a SQLite file opened ``mode=ro``).

    Raises:
        ConfigError: If a SQLite database file does not exist.
    """

    def __init__(self, name: str, config: DatabaseSinkConfig) -> None:
        self.name = name
        self.config = config
        url = config.engine_url()
        self._table = receipts_table(sa.MetaData(), config.table, url.get_backend_name())
        self._sink = config.build(name)
        if url.get_backend_name() != "sqlite":
            self._engine = self._sink.read_engine()
            return
        path = Path(url.database or "")
        if not path.is_file():
            raise ConfigError(
                "config",
                f"sinks.{name}.url",
                f"the SQLite database {path} does not exist",
                "give the file the daemon writes (has it run yet?)",
            )
        uri = f"{path.resolve().as_uri()}?mode=ro"
        self._engine = sa.create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True), poolclass=sa.pool.NullPool
        )

    def close(self) -> None:
        """Release the engine."""
        self._engine.dispose()
        self._sink.close()

    def count(self, send_date: date, sends: Sequence[Send] = ()) -> SinkCount:
        """The day's mainland SmsReport rows by status, and which of ``sends`` lack a final receipt.

        Raises:
            SinkUnavailable: If the database cannot be read now.
        """
        table = self._table
        start = datetime.combine(send_date, time(0), BEIJING).astimezone(UTC)
        end = start + timedelta(days=1)
        try:
            with self._engine.connect() as connection:
                if not sa.inspect(connection).has_table(self.config.table):
                    return SinkCount(self.name, {}, tuple(sends), table_missing=True)
                query = (
                    sa.select(table.c.status, sa.func.count())
                    .where(
                        table.c.message_type == MESSAGE_TYPE,
                        table.c.biz_id.is_not(None),
                        table.c.sent_at >= start,
                        table.c.sent_at < end,
                    )
                    .group_by(table.c.status)
                )
                statuses = {str(status): int(count) for status, count in connection.execute(query)}
                finals = (key for send in sends for key in _final_keys_of(send))
                held = stored_among(connection, key_lookup(table), finals)
        except sa.exc.DBAPIError as exc:
            reason = f"cannot read {self.config.display_url}: {type(exc.orig).__name__}"
            raise SinkUnavailable(self.name, reason) from exc
        without = tuple(send for send in sends if not _final_keys_of(send) & held)
        return SinkCount(self.name, statuses, without)


def database_sinks(config: Config, names: Sequence[str] = ()) -> dict[str, DatabaseSinkConfig]:
    """The database sinks to count: those named, else those SmsReport is routed to.

    Raises:
        ConfigError: If a named sink is undefined or not a database sink, or none is left to count.
    """
    if names:
        chosen: dict[str, DatabaseSinkConfig] = {}
        for name in dict.fromkeys(names):
            sink = config.sinks.get(name)
            if sink is None:
                known = ", ".join(sorted(config.sinks)) or "none defined"
                raise ConfigError("--sink", name, "is not a defined sink", f"defined: {known}")
            if not isinstance(sink, DatabaseSinkConfig):
                raise ConfigError(
                    "--sink", name, "is not a database sink: only a database can be counted", "name a database sink"
                )
            chosen[name] = sink
        return chosen
    chosen = {
        name: sink
        for name in config.sinks_for(MESSAGE_TYPE)
        if isinstance(sink := config.sinks[name], DatabaseSinkConfig)
    }
    if not chosen:
        raise ConfigError(
            "config",
            "sinks",
            "no database sink receives SmsReport receipts: reconcile counts receipts in a database "
            "(files, webhooks and S3 cannot be counted)",
            "route SmsReport to a sink of type: database, or name one with --sink",
        )
    return chosen


def reconcile(
    config: Config,
    send_date: date,
    *,
    environ: Mapping[str, str],
    sends: Sequence[Send] | None = None,
    sink_names: Sequence[str] = (),
    backfill: bool = False,
) -> ReconcileReport:
    """Compare Alibaba's counts of ``send_date`` with the database sinks; optionally backfill what is missing.

    ``sends`` is the application's send log (sends of other days are skipped); ``sink_names`` default
    to the database sinks SmsReport is routed to; ``backfill`` recovers the sends without a final
    receipt through :func:`run_backfill`, then counts again.

    Raises:
        ConfigError: No database sink, an undefined sink, a missing SQLite file, unresolvable
            credentials or endpoints, or ``backfill`` without sends.
        SendDetailsError: QuerySendStatistics failed (typed: auth, unavailable, refused).
        SinkUnavailable: A database could not be read.
    """
    if backfill and sends is None:
        raise ConfigError("--backfill", "", "needs the send log", "give --sends FILE (CSV or JSON Lines)")
    chosen = database_sinks(config, sink_names)
    endpoints = resolve_endpoints(config.region, config.endpoints)
    client = SendStatisticsClient(resolve_access_key(config.credentials, environ), endpoints, **query_options(config))
    alibaba = client.day(send_date)
    of_day = [send for send in dict.fromkeys(sends or ()) if send.send_date == send_date]
    others = len(set(sends or ())) - len(of_day)
    readers = [StoredReceipts(name, sink) for name, sink in chosen.items()]
    try:
        counts = [reader.count(send_date, of_day) for reader in readers]
        report = ReconcileReport(
            send_date,
            alibaba,
            counts,
            None if sends is None else len(of_day),
            sends_other_days=others,
            beijing_today=beijing_today(),
        )
        if backfill:
            missing = list(dict.fromkeys(send for count in counts for send in count.without_final))
            report.before = counts
            report.backfill = run_backfill(config, missing, BackfillOptions(sinks=tuple(sink_names)), environ=environ)
            report.sinks = [reader.count(send_date, of_day) for reader in readers]
    finally:
        for reader in readers:
            reader.close()
    return report


def _final_keys_of(send: Send) -> set[str]:
    """The keys of the send's final reports (delivered or failed): a send with one needs nothing more."""
    return {
        dedupe_key(MESSAGE_TYPE, biz_id=send.biz_id, phone_number=send.phone_number, status=status)
        for status in ("delivered", "failed")
    }


def _sink_json(sink: SinkCount, alibaba: DailySendStatistics, *, mask: bool) -> dict[str, Any]:
    return {
        "sink": sink.sink,
        "table_missing": sink.table_missing,
        "statuses": dict(sink.statuses),
        "gaps": [
            {
                "status": line.status,
                "alibaba": line.alibaba,
                "stored": line.stored,
                "missing": line.missing if line.gap else None,
                "extra": line.extra,
            }
            for line in sink.gaps(alibaba)
        ],
        "missing": sink.missing(alibaba),
        "without_final_receipt": [send.to_json(mask) for send in sink.without_final],
    }
