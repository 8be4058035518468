"""Tell systemd how the daemon is doing: the ``sd_notify(3)`` protocol, without libsystemd.

Without ``NOTIFY_SOCKET`` (a terminal, a container, tests) every call does nothing. Telling systemd is
never worth failing over: a failed send is logged once and the daemon carries on.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from typing import Final

import structlog

__all__ = ["SystemdNotifier"]

log = structlog.get_logger(__name__)

SEND_TIMEOUT_SECONDS: Final = 2.0
"""How long one notification may wait on a busy service manager before it is given up."""

_FIELD_NAME: Final = re.compile(r"[A-Z][A-Z0-9_]*")


def _socket_address(raw: str) -> str | None:
    """The ``sendto`` address for a ``NOTIFY_SOCKET`` value, or None when unset or unsupported."""
    if not raw:
        return None
    if raw.startswith("@"):
        # sd_notify(3): a leading "@" names a socket in the abstract namespace, which starts with NUL.
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    # "vsock:CID:PORT" (systemd 254+) and relative paths are not supported: sd_notify rejects the latter.
    log.warning("systemd.notify_socket_unsupported", notify_socket=raw)
    return None


def _field_value(value: str | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    # A newline would start a new assignment: STATUS text must not be able to send READY=1.
    return str(value).replace("\r", " ").replace("\n", " ")


class SystemdNotifier:
    """Sends ``sd_notify`` messages to the service manager named by ``NOTIFY_SOCKET``.

    The environment (default ``os.environ``) is read when the notifier is made, never at import. Each
    message is one datagram on a fresh socket, as ``sd_notify`` sends it; every method returns whether
    it was sent and none raises on a send failure.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._notify_socket = env.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(self._notify_socket)
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._failure_logged = False

    @property
    def enabled(self) -> bool:
        """Whether there is a service manager to notify (``NOTIFY_SOCKET`` is set and usable)."""
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` assignments in one datagram (booleans as 1/0, newlines as spaces).

        Raises:
            ValueError: If no field is given or a name is not upper-case letters, digits and ``_``.
        """
        if not fields:
            raise ValueError("notify needs at least one field, e.g. READY=1")
        for name in fields:
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"not an sd_notify field name: {name!r}")
        if self._address is None:
            return False
        payload = "\n".join(f"{name}={_field_value(value)}" for name, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(SEND_TIMEOUT_SECONDS)
                sock.sendto(payload.encode("utf-8"), self._address)
        except OSError as exc:
            if not self._failure_logged:
                self._failure_logged = True
                log.warning("systemd.notify_failed", notify_socket=self._notify_socket, error=str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Send ``READY=1`` (for us: the pollers run), with an optional status; True if sent."""
        return self.notify(READY=1) if status is None else self.notify(READY=1, STATUS=status)

    def stopping(self, status: str | None = None) -> bool:
        """Send ``STOPPING=1`` (the drain has begun), with an optional status; True if sent."""
        return self.notify(STOPPING=1) if status is None else self.notify(STOPPING=1, STATUS=status)

    def status(self, text: str) -> bool:
        """Send ``STATUS=text``, the one line ``systemctl status`` shows; True if sent."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Send ``WATCHDOG=1``, the keep-alive (see :meth:`watchdog_interval_seconds`); True if sent."""
        return self.notify(WATCHDOG=1)

    def extend_timeout(self, seconds: float) -> bool:
        """Send ``EXTEND_TIMEOUT_USEC``: ``seconds`` more before the start or stop timeout; True if sent."""
        return self.notify(EXTEND_TIMEOUT_USEC=max(0, round(seconds * 1_000_000)))

    def watchdog_interval_seconds(self) -> float | None:
        """How often to call :meth:`watchdog`: half of ``WATCHDOG_USEC``, or None when not enabled.

        As ``sd_watchdog_enabled(3)``: enabled when ``WATCHDOG_USEC`` is a positive integer and
        ``WATCHDOG_PID`` is unset or this process (not a child that inherited it).
        """
        try:
            usec = int(self._watchdog_usec)
            pid = int(self._watchdog_pid) if self._watchdog_pid else None
        except ValueError:
            return None
        if usec <= 0 or (pid is not None and pid != os.getpid()):
            return None
        return usec / 2 / 1_000_000
