"""Shared fixtures: the emulator on a free loopback port, a clean network environment, services."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mns_consumer.emulator import Emulator, EmulatorSettings

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")

TEST_QUEUES = {
    "SmsReport": "Alicom-Queue-i1-SmsReport",
    "SmsUp": "Alicom-Queue-i1-SmsUp",
}


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Tea SDK follows proxy variables even for loopback (reference pitfall 15): tests never do."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def services_required() -> bool:
    """Whether a missing database or cache server must fail the run instead of skipping (CI sets it)."""
    return os.environ.get("MNS_CONSUMER_REQUIRE_SERVICES") == "1"


def service_unavailable(reason: str) -> None:
    """Skip a test whose server is absent, or fail it when services are required."""
    if services_required():
        pytest.fail(f"{reason} (MNS_CONSUMER_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """A factory of started emulators on free ports; every one it made is stopped afterwards."""
    started: list[Emulator] = []

    def make(**overrides: Any) -> Emulator:
        settings = EmulatorSettings(**{"queues": dict(TEST_QUEUES), **overrides})
        emulator = Emulator(settings).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """A started emulator serving the SmsReport and SmsUp test queues."""
    return make_emulator()
