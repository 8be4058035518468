"""The daemon behind a forward proxy: MNS and token calls alike follow HTTP(S)_PROXY, NO_PROXY and endpoints.proxy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mns_consumer.emulator import Emulator
from tests.e2e.daemon_harness import DaemonFactory, daemon_config, file_lines, queue_total, wait_until
from tests.support.http_proxy import ForwardProxy

QUEUES = {"SmsReport": "Alicom-Queue-i1-SmsReport"}


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    forward = ForwardProxy().start()
    yield forward
    forward.stop()


def _consume(emulator: Emulator, daemons: DaemonFactory, tmp_path: Path, env: dict[str, str], **endpoints: Any) -> None:
    """Run a daemon until 20 produced receipts are in its file sink, then stop it cleanly."""
    emulator.produce("SmsReport", 20)
    sinks = {"archive": {"type": "file", "path": str(tmp_path / "archive.jsonl")}}
    config = daemon_config(
        emulator, sinks, tmp_path / "dead.jsonl", ca_file=str(emulator.tls.cert_path) if emulator.tls else None
    )
    config["endpoints"].update(endpoints)
    daemon = daemons.start(config, env=env)
    wait_until(lambda: queue_total(emulator) == 0, "queue drained", diagnose=daemon.describe)
    assert daemon.stop() == 0
    assert len(file_lines([tmp_path / "archive.jsonl"])) == 20


def _mns_calls(lines: list[str]) -> list[str]:
    return [line for line in lines if "/queues/Alicom-Queue-i1-SmsReport/messages" in line]


def _token_calls(lines: list[str]) -> list[str]:
    return [line for line in lines if line.endswith("[QueryTokenForMnsQueue]")]


@pytest.mark.timeout(120)
def test_mns_and_token_calls_go_through_http_proxy(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path, proxy: ForwardProxy
) -> None:
    """With HTTP_PROXY set, both the queue calls and QueryTokenForMnsQueue are forwarded by the proxy."""
    emulator = make_emulator(queues=QUEUES)

    _consume(emulator, daemons, tmp_path, {"HTTP_PROXY": proxy.url})

    lines = proxy.lines()
    assert _mns_calls(lines), lines
    assert all(line.startswith(("GET http://", "DELETE http://")) for line in _mns_calls(lines))
    assert _token_calls(lines), lines


@pytest.mark.timeout(120)
def test_https_calls_are_tunnelled_through_https_proxy(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path, proxy: ForwardProxy
) -> None:
    """Over HTTPS the proxy sees CONNECT tunnels to the endpoint, from the daemon and its token child."""
    emulator = make_emulator(queues=QUEUES, tls=True)

    _consume(emulator, daemons, tmp_path, {"HTTPS_PROXY": proxy.url})

    tunnels = [line for line in proxy.lines() if line == f"CONNECT {emulator.endpoint}"]
    # One for the token child's call, at least one for the daemon's MNS connections.
    assert len(tunnels) >= 2, proxy.lines()


@pytest.mark.timeout(120)
def test_no_proxy_bypasses_the_proxy_for_every_call(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path, proxy: ForwardProxy
) -> None:
    """A host NO_PROXY names is reached directly, by MNS and token calls alike, with HTTP_PROXY set."""
    emulator = make_emulator(queues=QUEUES)

    _consume(emulator, daemons, tmp_path, {"HTTP_PROXY": proxy.url, "NO_PROXY": "localhost,127.0.0.1"})

    assert proxy.lines() == []


@pytest.mark.timeout(120)
def test_endpoints_proxy_setting_is_used_without_proxy_variables(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path, proxy: ForwardProxy
) -> None:
    """``endpoints.proxy`` sends MNS and token calls through the proxy with no proxy variable set."""
    emulator = make_emulator(queues=QUEUES)

    _consume(emulator, daemons, tmp_path, {}, proxy=proxy.url)

    lines = proxy.lines()
    assert _mns_calls(lines), lines
    assert _token_calls(lines), lines
