"""The WAN profile: latency with jitter per call, handshakes on new connections, MNS only or every service.

Timings are checked one way only (a call takes at least its round trips), never as an upper bound:
the machine is shared, and speed is the business of ``bench/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException

from mns_consumer.emulator import Emulator, WanProfile
from mns_consumer.emulator.wan import handshake_round_trips
from tests.integration.mns_helpers import accounts_for, fetch_token

QUEUE = "Alicom-Queue-i1-SmsReport"


def timed_empty_receive(account: Account) -> float:
    """Seconds an empty ReceiveMessage (waitseconds=0) takes through the SDK."""
    began = time.monotonic()
    with pytest.raises(MNSServerException, match="MessageNotExist"):
        account.get_queue(QUEUE).receive_message(0)
    return time.monotonic() - began


def test_every_mns_call_waits_at_least_the_latency_less_the_jitter(make_emulator: Callable[..., Emulator]) -> None:
    """With 200 ms +- 50 ms (no handshakes), each call on a kept-alive connection takes at least 150 ms."""
    emulator = make_emulator(wan=WanProfile(latency_seconds=0.2, jitter_seconds=0.05, handshake=False))
    with accounts_for(emulator) as accounts:
        account = accounts.master()
        assert all(timed_empty_receive(account) >= 0.15 for _ in range(3))


def test_an_mns_only_profile_leaves_dybaseapi_alone_and_all_covers_it(make_emulator: Callable[..., Emulator]) -> None:
    """``mns`` delays queue calls only; ``all`` delays the token call as well."""
    emulator = make_emulator(wan=WanProfile(latency_seconds=0.3))
    rule = next(r for r in emulator.faults.rules() if r.kind == "latency")
    fetch_token(emulator, "SmsReport")
    assert rule.fired == 0

    emulator.set_wan(WanProfile(latency_seconds=0.3, services="all"))
    assert rule not in emulator.faults.rules()
    began = time.monotonic()
    fetch_token(emulator, "SmsReport")
    assert time.monotonic() - began >= 0.3
    assert [r.fired for r in emulator.faults.rules()] == [1]


def test_a_new_connection_pays_the_tcp_handshake_round_trip(make_emulator: Callable[..., Emulator]) -> None:
    """Over plain HTTP the first call on a connection takes two round trips (TCP's and its own)."""
    emulator = make_emulator(wan=WanProfile(latency_seconds=0.2))
    with accounts_for(emulator) as accounts:
        assert timed_empty_receive(accounts.master()) >= 0.4


def test_a_new_tls_connection_also_pays_the_tls_handshake(
    make_emulator: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over TLS 1.3 the first call on a connection takes three round trips: TCP, TLS and its own."""
    emulator = make_emulator(tls=True, wan=WanProfile(latency_seconds=0.2))
    assert emulator.tls is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(emulator.tls.cert_path))
    with accounts_for(emulator) as accounts:
        assert timed_empty_receive(accounts.master()) >= 0.6


def test_switching_the_profile_off_removes_its_rule(make_emulator: Callable[..., Emulator]) -> None:
    """set_wan(None) takes the latency rule away and leaves other faults alone."""
    emulator = make_emulator(wan=WanProfile(latency_seconds=0.05))
    emulator.add_fault(kind="error", service="dysmsapi", status=500)
    emulator.set_wan(None)
    assert [rule.kind for rule in emulator.faults.rules()] == ["error"]
    assert emulator.wan is None


def test_handshake_round_trips_follow_the_tls_version() -> None:
    """TCP costs one round trip, TLS 1.3 one more, TLS 1.2 two more."""
    assert [handshake_round_trips(v) for v in (None, "TLSv1.3", "TLSv1.2")] == [1, 2, 3]


def test_a_profile_with_negative_times_or_unknown_services_is_refused() -> None:
    """Times below zero and services other than mns/all are ValueErrors."""
    with pytest.raises(ValueError, match="zero or more"):
        WanProfile(latency_seconds=-0.1)
    with pytest.raises(ValueError, match="services"):
        WanProfile(latency_seconds=0.1, services="dysmsapi")  # type: ignore[arg-type]
