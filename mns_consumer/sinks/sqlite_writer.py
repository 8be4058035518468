"""SQLite inserts in a child process, so the B-tree and log work runs beside the daemon, not inside it.

Each row of the receipts table dirties a page in six B-trees (the table, the unique key and four
indexes), and SQLite does that work on the thread that calls it: in the daemon, the dispatcher, which
is also the thread that decodes, shares the process's CPU with receiving and deleting, and hands the
GIL back and forth once per row. :class:`SqliteWriterProcess` sends each insert, already bound to
plain values, to ``python -m mns_consumer.sinks.sqlite_writer``, which runs it with the same
statement, pragmas and commit, and answers once the commit (with its fsync) is done. The database
sink waits for that answer as it would for its own commit, so "accepted" still means "durable".

Wire, over the child's stdin and stdout: the parent writes one frame per insert (a 4-byte
little-endian length, then ``marshal.dumps((sql, rows, projection))``, rows being tuples of str, int,
float, bytes or None, and ``projection`` None or the statements that follow the insert in its
transaction for the rows it inserted, as :func:`run_insert` takes them); the child answers
``b"\\x00"`` once committed, or ``b"\\x01"`` and a frame of JSON
``{"kind": "refused" | "unavailable", "error": ...}`` after rolling back. The first frame the parent
writes is the JSON list of pragmas to run on connecting. A child that dies, answers nonsense or does
not answer within the timeout is killed; the insert reports the sink unavailable (nothing may be
assumed stored, and a retry is idempotent), and the next insert starts a new child. The child ends
when its stdin closes, which also happens when the daemon dies.
"""

from __future__ import annotations

import json
import marshal
import os
import select
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, Final, TypeAlias

from mns_consumer.files import create_private_file

FRAME: Final = struct.Struct("<I")
COMMITTED: Final = b"\x00"
FAILED: Final = b"\x01"
CHILD_MODULE: Final = "mns_consumer.sinks.sqlite_writer"

_PLAIN = (str, int, float, bytes, type(None))


class WriterFailed(Exception):  # noqa: N818  (the insert failed; the name says where)
    """An insert through the writer process did not commit.

    Attributes:
        refused: True when SQLite refused the data itself (a constraint or type error), so a retry of
            the same rows fails again; False when the writer or the database was unavailable.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        self.refused = refused
        super().__init__(message)


Projection: TypeAlias = tuple[str, list[tuple[str, list[tuple[str, tuple[Any, ...]]]]]]
"""What follows an insert in its transaction: the lookup of stored dedupe keys (SQL with ``{}`` where
the ``?`` list goes), then statements, each with its (dedupe key, parameters) pairs, run only for the
keys the insert stored (see :mod:`mns_consumer.sinks.status_tables`)."""

_LOOKUP_CHUNK: Final = 500


def run_insert(
    query: Callable[[str, tuple[Any, ...]], Iterable[Sequence[Any]]],
    execute_many: Callable[[str, list[tuple[Any, ...]]], object],
    sql: str,
    rows: list[tuple[Any, ...]],
    projection: Projection | None,
) -> None:
    """Insert ``rows``, then run the projection's statements for the dedupe keys this insert stored.

    Must run inside a transaction that holds SQLite's write lock from its start (``BEGIN IMMEDIATE``):
    then no other writer can store a key between the lookup and the insert, and "not there before"
    means "stored by this insert".
    """
    if projection is None:
        execute_many(sql, rows)
        return
    lookup, statements = projection
    keys = list(dict.fromkeys(key for _, pairs in statements for key, _ in pairs))
    stored_before: set[Any] = set()
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = tuple(keys[start : start + _LOOKUP_CHUNK])
        stored_before.update(row[0] for row in query(lookup.format(",".join("?" * len(chunk))), chunk))
    execute_many(sql, rows)
    for statement, pairs in statements:
        params = [values for key, values in pairs if key not in stored_before]
        if params:
            execute_many(statement, params)


def plain_row(values: Sequence[Any]) -> tuple[Any, ...]:
    """A row as values ``marshal`` carries (str and bytes subclasses, such as enums, as their base type)."""
    return tuple(value if type(value) in _PLAIN else _plain(value) for value in values)


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"a {type(value).__name__} cannot be sent to the SQLite writer process")


class SqliteWriterProcess:
    """One child process that runs this sink's inserts; thread-safe (one insert at a time).

    Args:
        path: The database file.
        pragmas: Statements run once on connecting (``PRAGMA journal_mode=WAL``...).
        reply_timeout_seconds: How long an insert may take, the child's start included, before the
            child is killed and the insert reported unavailable.
        command: The child's command line; ``[sys.executable, "-m", CHILD_MODULE]`` by default.
    """

    def __init__(
        self,
        path: str,
        pragmas: Sequence[str],
        *,
        reply_timeout_seconds: float,
        command: list[str] | None = None,
    ) -> None:
        self.path = path
        self.pragmas = list(pragmas)
        self.reply_timeout_seconds = reply_timeout_seconds
        self.command = command if command is not None else [sys.executable, "-m", CHILD_MODULE]
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None

    def execute(self, sql: str, rows: Sequence[Sequence[Any]], projection: Projection | None = None) -> None:
        """Insert ``rows`` with ``sql`` in one transaction and return once it is committed.

        Args:
            sql: The statement, with ``?`` placeholders.
            rows: Each row's values, already bound (str and bytes subclasses are sent as their base type).
            projection: Statements run in the same transaction for the rows this insert stored
                (:func:`run_insert`), their values bound likewise.

        Raises:
            WriterFailed: ``refused`` when SQLite refused the data; otherwise the writer or the database
                is unavailable and nothing may be assumed stored.
        """
        if projection is not None:
            lookup, statements = projection
            projection = (
                lookup,
                [(sql_, [(key, plain_row(values)) for key, values in pairs]) for sql_, pairs in statements],
            )
        payload = marshal.dumps((sql, [plain_row(values) for values in rows], projection))
        with self._lock:
            deadline = time.monotonic() + self.reply_timeout_seconds
            try:
                child = self._child if self._child is not None and self._child.poll() is None else self._start()
                stdin, stdout = _pipes(child)
                stdin.write(FRAME.pack(len(payload)) + payload)
                stdin.flush()
                status = _read_exactly(stdout, 1, deadline)
                if status == COMMITTED:
                    return
                if status != FAILED:
                    raise ValueError(f"unexpected answer {status!r}")
                (length,) = FRAME.unpack(_read_exactly(stdout, FRAME.size, deadline))
                failure = json.loads(_read_exactly(stdout, length, deadline))
            except (OSError, ValueError, TimeoutError, struct.error) as exc:
                self._stop(kill=True)
                raise WriterFailed(f"the SQLite writer process failed: {_why(exc)}") from exc
        raise WriterFailed(str(failure.get("error", "no reason given")), refused=failure.get("kind") == "refused")

    def close(self) -> None:
        """End the child (it finishes the insert in progress, if any) and wait for it."""
        with self._lock:
            self._stop(kill=False)

    def _start(self) -> subprocess.Popen[bytes]:
        self._stop(kill=True)
        child = subprocess.Popen(  # noqa: S603  (our own module, run by our own interpreter)
            [*self.command, self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            # Its own session: a Ctrl-C meant for the daemon's drain must not kill the writes it finishes.
            start_new_session=True,
        )
        self._child = child
        setup = json.dumps(self.pragmas).encode()
        _pipes(child)[0].write(FRAME.pack(len(setup)) + setup)
        return child

    def _stop(self, *, kill: bool) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if kill:
            child.kill()
        else:
            try:
                if child.stdin is not None:
                    child.stdin.close()
                child.wait(self.reply_timeout_seconds)
            except (OSError, subprocess.TimeoutExpired):
                child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def _pipes(child: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes]]:
    if child.stdin is None or child.stdout is None:
        raise ValueError("the writer process has no pipes")
    return child.stdin, child.stdout


def _read_exactly(stream: IO[bytes], count: int, deadline: float) -> bytes:
    """``count`` bytes from a pipe, or TimeoutError at ``deadline``, or EOFError-as-ValueError at its end."""
    data = b""
    fd = stream.fileno()
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError("no answer in time")
        chunk = os.read(fd, count - len(data))
        if not chunk:
            raise ValueError("the process ended")
        data += chunk
    return data


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time (killed)"
    return f"{type(exc).__name__}: {exc}"


# -- the child ------------------------------------------------------------------------------------


def _read_frame(stream: IO[bytes]) -> bytes | None:
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    (length,) = FRAME.unpack(header)
    body = stream.read(length)
    if len(body) < length:
        return None
    return body


def serve(path: str, stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """The child's loop: connect, run the pragmas, then commit each insert and answer; 0 at end of input."""
    setup = _read_frame(stdin)
    if setup is None:
        return 0
    if not path.startswith("file:"):
        # The sink created the file 0600 before starting this process; should it have been removed
        # since, it is created 0600 again here rather than 0644 by SQLite (its -wal and -shm follow).
        create_private_file(path, make_dirs=False)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in json.loads(setup):
            connection.execute(pragma)
        while (frame := _read_frame(stdin)) is not None:
            sql, rows, projection = marshal.loads(frame)  # noqa: S302  (from our own parent, over a private pipe)
            try:
                connection.execute("BEGIN IMMEDIATE")
                run_insert(_query(connection), connection.executemany, sql, rows, projection)
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                refused = isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError))
                answer = json.dumps(
                    {"kind": "refused" if refused else "unavailable", "error": f"{type(exc).__name__}: {exc}"}
                ).encode()
                stdout.write(FAILED + FRAME.pack(len(answer)) + answer)
            else:
                stdout.write(COMMITTED)
            stdout.flush()
    finally:
        connection.close()
    return 0


def _query(connection: sqlite3.Connection) -> Callable[[str, tuple[Any, ...]], Iterable[Sequence[Any]]]:
    def query(sql: str, params: tuple[Any, ...]) -> list[Any]:
        return connection.execute(sql, params).fetchall()

    return query


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer))
