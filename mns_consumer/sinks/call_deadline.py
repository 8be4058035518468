"""A client-side deadline on each call a database sink makes to its server: :class:`CallDeadlines`.

A server that keeps the connection open but stops answering (a frozen process, a stalled disk, a proxy
whose backend vanished) is noticed by nothing else: ``statement_timeout`` never fires on a statement never
run, keepalives see a healthy peer, and libpq offers no statement timeout. A call is everything one
``write`` (or ``open``) asks of the server: checking out a connection, the statements and the commit. Past
its deadline, a watchdog asks the server to cancel the statement where the driver can, and otherwise shuts
the connection's socket down (never closes it: the descriptor stays the driver's), only while the late call
holds it. The blocked call then fails as a lost connection, and the sink reports itself unavailable.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)

CANCEL_GRACE_SECONDS = 1.0
"""How long a cancel request may take, and then how long a cancelled call may take to end, before the
connection is shut down: a late call ends at most twice this past its deadline (once, if the server
does not answer the cancel request)."""


@dataclass(slots=True, eq=False)
class _Call:
    """One call in progress: when it must end, and the connection it holds (if any)."""

    deadline: float
    connection: Any = None
    done: bool = False
    late: bool = False


class CallDeadlines:
    """Deadlines of the calls one sink makes, and the watchdog that breaks the calls that pass them.

    The sink wraps each call in :meth:`call` and reports, from its pool's events, which connection the
    calling thread holds (:meth:`attach`) and when it gives it back (:meth:`release`).

    Args:
        sink: The sink's name, for the log.
        seconds: The deadline of each call.
        cancel: Asks the server to cancel what a connection runs, waiting at most the given seconds
            (driver errors are ignored), or None when the driver cannot.
        fileno: The socket descriptor of a connection, or None; with neither, no watchdog runs.
    """

    def __init__(
        self,
        sink: str,
        seconds: float,
        *,
        cancel: Callable[[Any, float], None] | None = None,
        fileno: Callable[[Any], int] | None = None,
    ) -> None:
        self.sink = sink
        self.seconds = seconds
        self._cancel = cancel
        self._fileno = fileno
        self._calls: dict[int, _Call] = {}
        self._changed = threading.Condition(threading.Lock())
        self._watchdog: threading.Thread | None = None
        self._wake_at: float | None = None
        self._closed = False

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Run the block as one call with a deadline (a call nested in another keeps the outer deadline)."""
        ident = threading.get_ident()
        if ident in self._calls:
            yield
            return
        call = _Call(time.monotonic() + self.seconds)
        with self._changed:
            self._calls[ident] = call
            if self._watchdog is None and (self._cancel or self._fileno) and not self._closed:
                self._watchdog = threading.Thread(target=self._watch, name=f"deadline-{self.sink}", daemon=True)
                self._watchdog.start()
            # Every call lasts as long, so a new one ends after those under way: the watchdog, already
            # due to wake for an earlier deadline, need not be woken for each write.
            if self._wake_at is None or call.deadline < self._wake_at:
                self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                call.done = True
                del self._calls[ident]

    def remaining_seconds(self) -> float | None:
        """Seconds left to the calling thread's call, or None outside a call."""
        call = self._calls.get(threading.get_ident())
        return None if call is None else call.deadline - time.monotonic()

    def passed(self) -> bool:
        """Whether the calling thread's call has reached its deadline."""
        remaining = self.remaining_seconds()
        return remaining is not None and remaining <= 0

    def attach(self, connection: Any) -> None:
        """The calling thread's call now holds ``connection`` (a pool checkout or a new connection)."""
        with self._changed:
            call = self._calls.get(threading.get_ident())
            if call is not None:
                call.connection = connection

    def release(self, connection: Any) -> None:
        """``connection`` went back to the pool or is being closed: no call holds it any more."""
        with self._changed:
            for call in self._calls.values():
                if call.connection is connection:
                    call.connection = None

    def close(self) -> None:
        """Stop the watchdog."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout=5)

    def _watch(self) -> None:
        """Sleep until the next deadline; hand each call that passes it to its own breaker thread."""
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                wake: float | None = None
                for call in self._calls.values():
                    if call.late:
                        continue
                    if call.deadline <= now:
                        call.late = True
                        threading.Thread(target=self._break, args=(call,), name="deadline-break", daemon=True).start()
                    else:
                        wake = call.deadline if wake is None else min(wake, call.deadline)
                self._wake_at = wake
                self._changed.wait(None if wake is None else wake - now)

    def _break(self, call: _Call) -> None:
        """Cancel the late call's statement, then shut its connection down if that did not end it."""
        with self._changed:
            connection = call.connection
            if call.done or connection is None:
                return  # ended meanwhile, or still connecting (bounded by the connect timeout)
            log.warning("sink.database.deadline_passed", sink=self.sink, deadline_seconds=self.seconds)
            # Under the lock, so the owner cannot close the connection while the cancel request reads it.
            # Cancelled only if the server took the request within the grace (a frozen one never answers).
            cancelled = False
            if self._cancel is not None:
                with contextlib.suppress(Exception):  # the driver's own errors: timed out, refused, connection gone
                    self._cancel(connection, CANCEL_GRACE_SECONDS)
                    cancelled = True
        # A cancel the server took ends the statement with an error, and the connection stays usable.
        ends = time.monotonic() + CANCEL_GRACE_SECONDS
        while cancelled and not call.done and time.monotonic() < ends:
            time.sleep(0.02)
        with self._changed:
            if call.done or call.connection is not connection or self._fileno is None:
                return
            try:
                descriptor = os.dup(self._fileno(connection))
            except Exception:  # noqa: BLE001  (any driver error means the connection is gone already)
                return
            try:
                sock = socket.socket(fileno=descriptor)
            except OSError:
                os.close(descriptor)
                return
            # Shut down, not closed: the descriptor stays the driver's, whose blocked read now ends.
            with sock, contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
