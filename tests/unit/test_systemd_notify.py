"""SystemdNotifier against a real AF_UNIX datagram socket standing in for systemd's notify socket."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mns_consumer.observe.systemd import SystemdNotifier

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX sockets")


class Receiver:
    """A bound datagram socket that reads what the notifier sends, as systemd would."""

    def __init__(self, sock: socket.socket, notify_socket: str) -> None:
        self.sock = sock
        self.notify_socket = notify_socket

    def message(self) -> str:
        """The next datagram, decoded (fails after a few seconds if none arrives)."""
        return self.sock.recv(4096).decode("utf-8")

    def pending(self) -> bool:
        """Whether a datagram is waiting, without blocking."""
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(5)
        return True


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    """A notify socket at a path in tmp_path."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield Receiver(sock, str(path))


@pytest.fixture
def abstract_receiver() -> Iterator[Receiver]:
    """A notify socket in Linux's abstract namespace, named as systemd names it: with a leading @."""
    if not sys.platform.startswith("linux"):
        pytest.skip("abstract unix sockets are Linux-only")
    name = f"mns-consumer-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        yield Receiver(sock, "@" + name)


def test_ready_sends_ready_and_status_to_a_path_socket(receiver: Receiver) -> None:
    """ready() sends READY=1 and the status as one newline-separated datagram."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": receiver.notify_socket})

    assert notifier.ready(status="consuming 2 queues") is True

    assert receiver.message() == "READY=1\nSTATUS=consuming 2 queues"


def test_an_at_sign_address_reaches_an_abstract_socket(abstract_receiver: Receiver) -> None:
    """NOTIFY_SOCKET=@name is the abstract socket \\0name."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": abstract_receiver.notify_socket})

    assert notifier.ready() is True

    assert abstract_receiver.message() == "READY=1"


def test_each_helper_sends_its_assignment(receiver: Receiver) -> None:
    """stopping, status, watchdog and extend_timeout send the fields sd_notify(3) defines."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": receiver.notify_socket})

    notifier.stopping(status="draining 3 batches")
    notifier.stopping()
    notifier.status("idle")
    notifier.watchdog()
    notifier.extend_timeout(1.5)

    assert [receiver.message() for _ in range(5)] == [
        "STOPPING=1\nSTATUS=draining 3 batches",
        "STOPPING=1",
        "STATUS=idle",
        "WATCHDOG=1",
        "EXTEND_TIMEOUT_USEC=1500000",
    ]


def test_notify_keeps_field_order_and_cannot_be_split_by_newlines(receiver: Receiver) -> None:
    """Fields go in the order given; a newline inside a value cannot inject another assignment."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": receiver.notify_socket})

    notifier.notify(STATUS="sink down\nREADY=1", ERRNO=5, RELOADING=True)

    assert receiver.message() == "STATUS=sink down READY=1\nERRNO=5\nRELOADING=1"


@pytest.mark.parametrize("fields", [{}, {"ready": 1}, {"READY=1\nX": 1}])
def test_notify_rejects_missing_or_malformed_field_names(fields: dict[str, int]) -> None:
    """An empty message or a name that is not an sd_notify field is a programming error."""
    with pytest.raises(ValueError, match="field"):
        SystemdNotifier({}).notify(**fields)


def test_without_notify_socket_every_call_does_nothing() -> None:
    """Outside systemd (a terminal, a container) nothing is sent, nothing is raised, nothing is logged."""
    notifier = SystemdNotifier({})

    with capture_logs() as logs:
        results = [notifier.ready(), notifier.stopping(), notifier.status("x"), notifier.watchdog()]

    assert notifier.enabled is False
    assert results == [False, False, False, False]
    assert logs == []


def test_the_environment_is_read_when_the_notifier_is_made(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """By default NOTIFY_SOCKET comes from os.environ at construction, not at import."""
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.notify_socket)
    notifier = SystemdNotifier()
    monkeypatch.delenv("NOTIFY_SOCKET")

    assert notifier.enabled is True
    assert notifier.ready() is True
    assert receiver.message() == "READY=1"


def test_a_failed_send_is_logged_once_and_never_raises(tmp_path: Path) -> None:
    """When nothing listens at NOTIFY_SOCKET, calls return False and one warning is logged."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})

    with capture_logs() as logs:
        results = [notifier.ready(), notifier.watchdog(), notifier.stopping()]

    assert results == [False, False, False]
    assert len(logs) == 1
    assert logs[0]["event"] == "systemd.notify_failed"
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["notify_socket"] == str(tmp_path / "gone.sock")


@pytest.mark.parametrize("address", ["vsock:2:1234", "relative/notify.sock"])
def test_an_unsupported_address_disables_the_notifier_with_a_warning(address: str) -> None:
    """vsock and relative addresses are not supported: the notifier says so and stays a no-op."""
    with capture_logs() as logs:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": address})

    assert notifier.enabled is False
    assert notifier.ready() is False
    assert [entry["event"] for entry in logs] == ["systemd.notify_socket_unsupported"]


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "me"}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_when_enabled_for_this_process(
    environ: dict[str, str], interval: float | None
) -> None:
    """As sd_watchdog_enabled: WATCHDOG_USEC > 0 and WATCHDOG_PID unset or ours; anything else is off."""
    assert SystemdNotifier(environ).watchdog_interval_seconds() == interval


def test_watchdog_interval_does_not_need_a_notify_socket() -> None:
    """The interval is known even when notifications go nowhere, so callers need no special case."""
    notifier = SystemdNotifier({"WATCHDOG_USEC": "2000000"})

    assert notifier.enabled is False
    assert notifier.watchdog_interval_seconds() == 1.0


def test_nothing_is_sent_unless_asked(receiver: Receiver) -> None:
    """Making a notifier and reading the watchdog interval send no datagram."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": receiver.notify_socket, "WATCHDOG_USEC": "1000000"})

    notifier.watchdog_interval_seconds()

    assert receiver.pending() is False
