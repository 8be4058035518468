"""Queue tokens fetched with the real Dybaseapi Tea client and used with the real MNS SDK, against the emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Queue

from mns_consumer.alicom.credentials import AccessKey
from mns_consumer.alicom.dybase import DybaseTokenFetcher
from mns_consumer.alicom.endpoints import Endpoints
from mns_consumer.alicom.token_process import ChildProcessTokenFetcher
from mns_consumer.alicom.tokens import TokenProvider
from mns_consumer.emulator import Emulator
from mns_consumer.errors import TokenError

QUEUE = "Alicom-Queue-i1-SmsReport"


def endpoints_of(emulator: Emulator) -> Endpoints:
    ca_file = str(emulator.tls.cert_path) if emulator.tls else None
    return Endpoints(
        dybaseapi=emulator.endpoint,
        dysmsapi=emulator.endpoint,
        mns=emulator.url,
        protocol=emulator.scheme,
        ca_file=ca_file,
    )


FETCHERS: dict[str, type[DybaseTokenFetcher | ChildProcessTokenFetcher]] = {
    "in_process": DybaseTokenFetcher,
    "child_process": ChildProcessTokenFetcher,
}
"""The two ways of calling the Tea client: each test of the API's answers runs with both."""

Fetcher = type[DybaseTokenFetcher | ChildProcessTokenFetcher]


@pytest.fixture(params=sorted(FETCHERS))
def fetcher_class(request: pytest.FixtureRequest) -> Fetcher:
    return FETCHERS[request.param]


def fetcher_for(
    emulator: Emulator, *, secret: str | None = None, cls: Fetcher = DybaseTokenFetcher, **timeouts: float
) -> DybaseTokenFetcher | ChildProcessTokenFetcher:
    settings = emulator.settings
    key = AccessKey(settings.access_key_id, secret if secret is not None else settings.access_key_secret)
    return cls(key, endpoints_of(emulator), **timeouts)


def provider_for(emulator: Emulator, **options: float) -> TokenProvider:
    """A provider on the emulator's clock, so moving that clock moves token time for both sides."""
    return TokenProvider(fetcher_for(emulator), "SmsReport", QUEUE, now=emulator.clock.now_datetime, **options)


@contextmanager
def queue_with(emulator: Emulator, tokens: TokenProvider) -> Iterator[Queue]:
    """The SmsReport queue through an SDK account that asks ``tokens`` for credentials on every request."""
    account = Account(emulator.url, credentials_provider=tokens.credentials_provider())
    try:
        yield account.get_queue(QUEUE)
    finally:
        account.mns_client.close_connection()


def token_error(call: Callable[[], object]) -> TokenError:
    with pytest.raises(TokenError) as caught:
        call()
    return caught.value


def test_a_fetched_token_receives_from_its_queue_through_the_sdk(emulator: Emulator) -> None:
    """The provider's credentials sign real MNS SDK requests, security-token included."""
    emulator.produce("SmsReport", 1)
    tokens = provider_for(emulator)
    with queue_with(emulator, tokens) as queue:
        message = queue.receive_message(1)
        queue.delete_message(message.receipt_handle)
    current = tokens.current()
    assert current is not None
    assert current.access_key_id.startswith("STS.")
    assert tokens.refresh_count == 1


def test_expire_time_is_created_time_plus_the_ttl_in_utc(
    make_emulator: Callable[..., Emulator], fetcher_class: Fetcher
) -> None:
    """ExpireTime and CreateTime, sent in Beijing time, come back as UTC instants one TTL apart."""
    emulator = make_emulator(token_ttl_seconds=900)
    token = fetcher_for(emulator, cls=fetcher_class).fetch("SmsReport", QUEUE)
    assert token.created_at is not None
    assert token.expires_at - token.created_at == timedelta(seconds=900)
    assert token.expires_at.utcoffset() == timedelta(0)
    assert abs((token.created_at - emulator.clock.now_datetime()).total_seconds()) < 5


def test_a_wrong_secret_is_signature_does_not_match(emulator: Emulator, fetcher_class: Fetcher) -> None:
    """The emulator verifies the ACS3 signature; a wrong secret is SignatureDoesNotMatch with a request id."""
    error = token_error(
        lambda: fetcher_for(emulator, cls=fetcher_class, secret="not-the-secret").fetch("SmsReport", QUEUE)
    )
    assert error.code == "SignatureDoesNotMatch"
    assert error.request_id
    assert "not-the-secret" not in str(error)


def test_an_injected_503_is_a_token_error_with_its_code(emulator: Emulator, fetcher_class: Fetcher) -> None:
    """A 5xx from Dybaseapi (ServerException in the SDK) keeps the service's code."""
    emulator.add_fault(kind="error", operation="QueryTokenForMnsQueue", status=503, code="ServiceUnavailable", times=1)
    assert (
        token_error(lambda: fetcher_for(emulator, cls=fetcher_class).fetch("SmsReport", QUEUE)).code
        == "ServiceUnavailable"
    )


def test_http_200_with_code_other_than_ok_is_a_token_error_with_that_code(
    emulator: Emulator, fetcher_class: Fetcher
) -> None:
    """A business failure answered with HTTP 200 is a failure, as in Alibaba's own helpers."""
    emulator.add_fault(kind="error", operation="QueryTokenForMnsQueue", status=200, code="isv.BUSINESS_LIMIT_CONTROL")
    error = token_error(lambda: fetcher_for(emulator, cls=fetcher_class).fetch("SmsReport", QUEUE))
    assert error.code == "isv.BUSINESS_LIMIT_CONTROL"


def test_an_answer_slower_than_the_read_timeout_is_a_network_error(emulator: Emulator, fetcher_class: Fetcher) -> None:
    """A latency fault beyond read_timeout_seconds fails the call on the client side."""
    emulator.add_fault(kind="latency", operation="QueryTokenForMnsQueue", seconds=2, times=1)
    fetcher = fetcher_for(emulator, cls=fetcher_class, read_timeout_seconds=0.3)
    error = token_error(lambda: fetcher.fetch("SmsReport", QUEUE))
    assert error.code == "NetworkError"
    assert "timed out" in str(error)


def test_a_queue_name_that_is_not_the_types_queue_is_a_token_error(emulator: Emulator, fetcher_class: Fetcher) -> None:
    """QueueName is checked against the MessageType's queue (emulator's code; Alibaba's is unpublished)."""
    error = token_error(lambda: fetcher_for(emulator, cls=fetcher_class).fetch("SmsReport", "Alicom-Queue-i1-SmsUp"))
    assert error.code == "InvalidQueueName.NotFound"


def test_an_unreachable_dybaseapi_is_a_network_error(
    make_emulator: Callable[..., Emulator], fetcher_class: Fetcher
) -> None:
    """Nothing listening on the port is a NetworkError naming the endpoint."""
    emulator = make_emulator()
    fetcher = fetcher_for(emulator, cls=fetcher_class, connect_timeout_seconds=1)
    endpoint = emulator.endpoint
    emulator.stop()
    error = token_error(lambda: fetcher.fetch("SmsReport", QUEUE))
    assert error.code == "NetworkError"
    assert endpoint in str(error)


def test_the_ca_file_is_trusted_over_tls(make_emulator: Callable[..., Emulator], fetcher_class: Fetcher) -> None:
    """With the emulator's certificate as ca_file, the HTTPS token call verifies and succeeds."""
    emulator = make_emulator(tls=True)
    token = fetcher_for(emulator, cls=fetcher_class).fetch("SmsReport", QUEUE)
    assert token.access_key_id.startswith("STS.")


def test_the_token_is_refreshed_once_the_clock_enters_the_margin(make_emulator: Callable[..., Emulator]) -> None:
    """On the emulator clock: kept with 130 s left, replaced with 110 s left, and the new one works."""
    emulator = make_emulator(token_ttl_seconds=600)
    emulator.produce("SmsReport", 1)
    tokens = provider_for(emulator, refresh_margin_seconds=120)
    first = tokens.get()
    emulator.clock.advance(469)
    assert tokens.get() is first
    emulator.clock.advance(21)
    second = tokens.get()
    assert second is not first
    assert tokens.refresh_count == 2
    with queue_with(emulator, tokens) as queue:
        assert queue.receive_message(1).dequeue_count == 1
    assert tokens.current() is second


def test_an_expired_token_is_refused_by_mns_and_invalidate_gets_a_working_one(emulator: Emulator) -> None:
    """After the emulator expires every token, invalidating the refused one makes the next request work."""
    emulator.produce("SmsReport", 1)
    tokens = provider_for(emulator)
    with queue_with(emulator, tokens) as queue:
        # Given a working token that the service then expires early
        message = queue.peek_message()
        refused = tokens.current()
        assert emulator.expire_tokens() == 1
        # When MNS refuses it and the caller invalidates the token its call used
        with pytest.raises(MNSServerException) as caught:
            queue.receive_message(1)
        assert caught.value.type == "SecurityTokenExpired"
        tokens.invalidate(tokens.current())
        # Then the next request fetches a new token and succeeds
        assert queue.receive_message(1).message_id == message.message_id
        assert tokens.current() is not refused
        assert tokens.refresh_count == 2


def test_a_failing_token_service_surfaces_as_token_error_from_the_sdk_call(emulator: Emulator) -> None:
    """With no token to give, the SDK call raises our TokenError unchanged, and the API is not hammered."""
    emulator.add_fault(kind="error", operation="QueryTokenForMnsQueue", status=503, code="ServiceUnavailable")
    tokens = provider_for(emulator, min_retry_seconds=30, max_retry_seconds=60)
    with queue_with(emulator, tokens) as queue:
        assert token_error(lambda: queue.receive_message(1)).code == "ServiceUnavailable"
        assert token_error(lambda: queue.receive_message(1)).code == "ServiceUnavailable"
    rule = emulator.faults.rules()[0]
    assert rule.fired == 1
    assert tokens.last_error == "ServiceUnavailable"
