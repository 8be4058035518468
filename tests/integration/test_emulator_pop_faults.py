"""Faults on the token and send-details APIs, seen through the real Tea clients."""

from __future__ import annotations

import pytest
from alibabacloud_dybaseapi20170525 import models as dybase_models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from darabonba.exceptions import UnretryableException

from mns_consumer.emulator import Emulator
from tests.integration.mns_helpers import dybase_client

QUEUE = "Alicom-Queue-i1-SmsReport"


def query_token(emulator: Emulator, **config: int) -> dybase_models.QueryTokenForMnsQueueResponse:
    request = dybase_models.QueryTokenForMnsQueueRequest(message_type="SmsReport", queue_name=QUEUE)
    return dybase_client(emulator, **config).query_token_for_mns_queue(request)


def test_refused_token_call_is_a_server_exception_with_the_injected_code(emulator: Emulator) -> None:
    """A 503 error fault on QueryTokenForMnsQueue reaches the client as ServerException with its code."""
    emulator.add_fault(kind="error", operation="QueryTokenForMnsQueue", status=503, code="ServiceUnavailable", times=1)
    with pytest.raises(ServerException) as caught:
        query_token(emulator)
    assert caught.value.code == "ServiceUnavailable"
    assert query_token(emulator).body.code == "OK"


def test_throttled_token_call_is_a_client_exception(emulator: Emulator) -> None:
    """A 400 Throttling fault is a ClientException carrying the code."""
    emulator.add_fault(kind="error", service="dybaseapi", status=400, code="Throttling.User", times=1)
    with pytest.raises(ClientException) as caught:
        query_token(emulator)
    assert not isinstance(caught.value, ThrottlingException)
    assert caught.value.code == "Throttling.User"


def test_http_200_with_a_code_other_than_ok_is_what_official_helpers_treat_as_failure(emulator: Emulator) -> None:
    """A status-200 error fault answers HTTP 200 whose body Code is not OK and carries no token."""
    emulator.add_fault(kind="error", operation="QueryTokenForMnsQueue", status=200, code="isv.BUSINESS_LIMIT_CONTROL")
    body = query_token(emulator).body
    assert body.code == "isv.BUSINESS_LIMIT_CONTROL"
    assert body.message_token_dto is None


def test_slow_token_call_hits_the_client_read_timeout(emulator: Emulator) -> None:
    """A latency fault longer than the client's read timeout fails the call on the client side."""
    emulator.add_fault(kind="latency", operation="QueryTokenForMnsQueue", seconds=3, times=1)
    with pytest.raises(UnretryableException):
        query_token(emulator, read_timeout=500)


def test_dropped_token_response_is_a_transport_error(emulator: Emulator) -> None:
    """A response cut mid-body fails the call with a transport error, and the next call works."""
    emulator.add_fault(kind="drop", operation="QueryTokenForMnsQueue", times=1)
    with pytest.raises(UnretryableException):
        query_token(emulator)
    assert query_token(emulator).body.code == "OK"
