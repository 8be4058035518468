"""Dysmsapi calls (QuerySendDetails, QuerySendStatistics) follow the proxy Endpoints decide, as MNS and tokens do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mns_consumer.alicom.credentials import AccessKey
from mns_consumer.alicom.endpoints import resolve_endpoints
from mns_consumer.alicom.send_details import SendDetailsClient, beijing_today
from mns_consumer.alicom.send_statistics import SendStatisticsClient
from mns_consumer.config import EndpointsConfig
from mns_consumer.emulator import Emulator
from tests.support.http_proxy import ForwardProxy


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    forward = ForwardProxy().start()
    yield forward
    forward.stop()


def _endpoints_config(emulator: Emulator, **extra: str) -> EndpointsConfig:
    return EndpointsConfig(
        dybaseapi=emulator.endpoint, dysmsapi=emulator.endpoint, mns=emulator.url, protocol="http", **extra
    )


def _query_both(emulator: Emulator, config: EndpointsConfig, environ: dict[str, str]) -> None:
    endpoints = resolve_endpoints("cn-hangzhou", config, environ)
    key = AccessKey(emulator.settings.access_key_id, emulator.settings.access_key_secret)
    assert SendDetailsClient(key, endpoints, attempts=1).query("13800000000", beijing_today()) == []
    assert SendStatisticsClient(key, endpoints, attempts=1).day(beijing_today()).total == 0


def test_dysmsapi_calls_go_through_the_configured_proxy(emulator: Emulator, proxy: ForwardProxy) -> None:
    """With ``endpoints.proxy``, both Dysmsapi actions are forwarded by the proxy."""
    _query_both(emulator, _endpoints_config(emulator, proxy=proxy.url), {})

    actions = [line.rpartition(" ")[2] for line in proxy.lines()]
    assert actions == ["[QuerySendDetails]", "[QuerySendStatistics]"]


def test_dysmsapi_calls_go_through_http_proxy_from_the_environment(emulator: Emulator, proxy: ForwardProxy) -> None:
    """``HTTP_PROXY`` as the daemon's environment gives it reaches the Tea client explicitly."""
    _query_both(emulator, _endpoints_config(emulator), {"HTTP_PROXY": proxy.url})

    assert len(proxy.lines()) == 2
