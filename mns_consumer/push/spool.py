"""The durable spool between the HTTP push receiver and the sinks: one SQLite file, one row per push.

Alibaba never sends an acknowledged push again (reference 5), so a push is acknowledged only once its
row is committed here; a row is deleted only once every receipt of it is settled, so a crash loses
nothing and what it repeats is absorbed by the sinks' dedupe keys. WAL with ``synchronous=FULL``
fsyncs every commit (``NORMAL`` would lose an acknowledged push to a power loss); milliseconds, well
inside the 700 ms. Rows hold the route's *name*, never its secret URL path. One connection serves
every thread behind a lock: SQLite writes one transaction at a time anyway.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mns_consumer.errors import SpoolUnavailable
from mns_consumer.files import create_private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS push_spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    route TEXT NOT NULL,
    message_type TEXT NOT NULL,
    received_at REAL NOT NULL,
    receipts INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS push_spool_route ON push_spool (route, id);
"""


@dataclass(frozen=True)
class SpoolEntry:
    """One acknowledged push waiting for its sinks, delivered in ``entry_id`` order within its route
    (``push:<name>``); ``received_at`` is seconds since the epoch, ``receipts`` the array's length."""

    entry_id: int
    route: str
    message_type: str
    received_at: float
    receipts: int
    body: bytes


class Spool:
    """A SQLite-backed FIFO of pushes per route; safe to use from several threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._depth: dict[str, int] = {}

    def open(self) -> None:
        """Create (0600, in folders made 0700) or open the file, and count what an earlier run left.

        Raises:
            SpoolUnavailable: If the folder or file cannot be created or opened.
        """
        try:
            # First, so SQLite's -wal and -shm files take its mode whatever the umask.
            create_private_file(str(self.path))
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.executescript(_SCHEMA)
            rows = connection.execute("SELECT route, COUNT(*) FROM push_spool GROUP BY route").fetchall()
        except (OSError, sqlite3.Error) as exc:
            raise SpoolUnavailable(_reason(exc)) from None
        with self._lock:
            self._connection = connection
            self._depth = {str(route): int(count) for route, count in rows}

    def append(self, route: str, message_type: str, body: bytes, receipts: int) -> None:
        """Store a push durably (committed and fsynced).

        Raises:
            SpoolUnavailable: If it could not be stored (disk full, I/O error, closed); nothing was stored.
        """
        with self._connected() as connection:
            connection.execute(
                "INSERT INTO push_spool (route, message_type, received_at, receipts, body) VALUES (?, ?, ?, ?, ?)",
                (route, message_type, time.time(), receipts, body),
            )
            self._depth[route] = self._depth.get(route, 0) + 1

    def take(self, route: str, limit: int, max_receipts: int | None = None) -> list[SpoolEntry]:
        """The oldest ``limit`` entries of a route, left in the spool until :meth:`remove`.

        At most ``max_receipts`` receipts in all (the oldest entry alone may hold more); bodies beyond
        it are not read, so memory stays bounded.

        Raises:
            SpoolUnavailable: If the spool cannot be read.
        """
        with self._connected() as connection:
            if max_receipts is not None:
                # Counts first (no bodies); the leading entries that fit, and at least one.
                counts = connection.execute(
                    "SELECT receipts FROM push_spool WHERE route = ? ORDER BY id LIMIT ?", (route, limit)
                ).fetchall()
                totals = itertools.accumulate(int(row[0]) for row in counts)
                limit = max(1, sum(1 for _ in itertools.takewhile(lambda total: total <= max_receipts, totals)))
            rows = connection.execute(
                "SELECT id, route, message_type, received_at, receipts, body FROM push_spool "
                "WHERE route = ? ORDER BY id LIMIT ?",
                (route, limit),
            ).fetchall()
        return [SpoolEntry(int(r[0]), str(r[1]), str(r[2]), float(r[3]), int(r[4]), bytes(r[5])) for r in rows]

    def remove(self, entries: Sequence[SpoolEntry]) -> None:
        """Delete settled entries in one statement (one transaction; at most 10,000, within SQLite's bounds).

        Raises:
            SpoolUnavailable: If they could not be deleted; they are then delivered again later, and the
                sinks' dedupe keys absorb the repeat.
        """
        if not entries:
            return
        ids = [entry.entry_id for entry in entries]
        with self._connected() as connection:
            marks = ",".join("?" * len(ids))
            deleted = connection.execute(f"DELETE FROM push_spool WHERE id IN ({marks})", ids).rowcount  # noqa: S608
            route = entries[0].route
            self._depth[route] = max(0, self._depth.get(route, 0) - deleted)

    def depth(self, route: str | None = None) -> int:
        """Entries waiting (for one route, or in all)."""
        with self._lock:
            return self._depth.get(route, 0) if route is not None else sum(self._depth.values())

    def depths(self) -> dict[str, int]:
        """Entries waiting per route name, routes with none left out."""
        with self._lock:
            return {route: count for route, count in self._depth.items() if count}

    def oldest_age_seconds(self, route: str) -> float:
        """Age of the route's oldest waiting entry; 0 when none waits or the spool cannot be read."""
        with contextlib.suppress(SpoolUnavailable), self._connected() as connection:
            if self._depth.get(route):
                row = connection.execute(
                    "SELECT received_at FROM push_spool WHERE route = ? ORDER BY id LIMIT 1", (route,)
                ).fetchone()
                return max(0.0, time.time() - float(row[0])) if row else 0.0
        return 0.0

    def close(self) -> None:
        """Close the file; entries still waiting stay for the next run."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    @contextlib.contextmanager
    def _connected(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; a SQLite error becomes :class:`SpoolUnavailable`."""
        with self._lock:
            if self._connection is None:
                raise SpoolUnavailable("the spool is closed")
            try:
                yield self._connection
            except sqlite3.Error as exc:
                raise SpoolUnavailable(_reason(exc)) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc.strerror or exc)
    return str(exc)
