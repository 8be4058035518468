"""A wall clock that tests can move forward.

Every time the emulator reasons about (visibility timeouts, token expiry, delays, retention, the
QuerySendDetails 30-day window) comes from one :class:`Clock`, so a test can jump an hour ahead
without waiting. The offset only ever grows: MNS time never runs backwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
"""Alibaba's platform time zone: ExpireTime and mainland receipt times are local to it (reference 2.4)."""


class Clock:
    """Real time plus an adjustable, monotonically growing offset."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self._offset_seconds = offset_seconds
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        """Seconds since the epoch, as the emulator sees it."""
        return time.time() + self._offset_seconds

    def now_ms(self) -> int:
        """Milliseconds since the epoch, the unit of MNS message times."""
        return int(self.now() * 1000)

    def now_datetime(self) -> datetime:
        """The current emulator time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), UTC)

    def now_beijing(self) -> datetime:
        """The current emulator time in Beijing time (UTC+8)."""
        return datetime.fromtimestamp(self.now(), BEIJING)

    @property
    def offset_seconds(self) -> float:
        """How far the emulator clock runs ahead of the real one."""
        return self._offset_seconds

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake everything that waits on time (long polls, timers).

        Raises:
            ValueError: If ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        with self._lock:
            self._offset_seconds += seconds
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def on_advance(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every :meth:`advance`."""
        with self._lock:
            self._listeners.append(listener)


def format_beijing(epoch_seconds: float) -> str:
    """Format a time as Alibaba's zone-less ``yyyy-MM-dd HH:mm:ss`` in Beijing time."""
    return datetime.fromtimestamp(epoch_seconds, BEIJING).strftime("%Y-%m-%d %H:%M:%S")
