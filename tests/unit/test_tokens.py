"""Queue tokens: ExpireTime parsing, refresh ahead of expiry, no stampede, back-off, invalidation.

Also the AccessKey order (configuration, environment, default chain) that signs the token calls.
The fetcher here is a small fake of our own ``TokenFetcher`` protocol; the real Tea client is driven
against the emulator in ``tests/integration/test_tokens_emulator.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alibabacloud_dybaseapi20170525 import models as dybase_models
from mns.auth import CredentialsProvider
from pydantic import SecretStr
from structlog.testing import capture_logs

from mns_consumer.alicom.credentials import AccessKey, DefaultCredentialChain, resolve_access_key
from mns_consumer.alicom.dybase import _token_from
from mns_consumer.alicom.tokens import (
    QueueCredentialsProvider,
    QueueToken,
    TokenProvider,
    parse_expire_time,
)
from mns_consumer.config import CredentialsConfig
from mns_consumer.errors import ConfigError, TokenError

QUEUE = "Alicom-Queue-i1-SmsReport"
START = datetime(2024, 5, 1, 2, 0, 0, tzinfo=UTC)


class Clock:
    """A hand-moved UTC clock."""

    def __init__(self, start: datetime = START) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += timedelta(seconds=seconds)


class FakeFetcher:
    """Answers fetches from a script of tokens and errors; counts calls; can hold a call until released."""

    def __init__(self, clock: Clock, *, lifetime_seconds: float = 3600) -> None:
        self.clock = clock
        self.lifetime_seconds = lifetime_seconds
        self.calls = 0
        self.script: list[QueueToken | TokenError] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def fetch(self, message_type: str, queue_name: str) -> QueueToken:
        assert (message_type, queue_name) == ("SmsReport", QUEUE)
        with self._lock:
            self.calls += 1
            number = self.calls
            step = self.script.pop(0) if self.script else None
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if isinstance(step, TokenError):
            raise step
        return step or token_at(self.clock(), self.lifetime_seconds, number)

    def fail_next(self, code: str = "ServiceUnavailable", times: int = 1) -> None:
        self.script.extend(TokenError(code, "injected", request_id="req-1") for _ in range(times))


def token_at(created: datetime, lifetime_seconds: float, number: int = 1, security_token: str = "") -> QueueToken:
    return QueueToken(
        access_key_id=f"STS.id-{number}",
        access_key_secret=f"secret-{number}",
        security_token=security_token or f"token-{number}",
        expires_at=created + timedelta(seconds=lifetime_seconds),
        created_at=created,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fetcher(clock: Clock) -> FakeFetcher:
    return FakeFetcher(clock)


@pytest.fixture
def provider(fetcher: FakeFetcher, clock: Clock) -> TokenProvider:
    return TokenProvider(fetcher, "SmsReport", QUEUE, now=clock, min_retry_seconds=1, max_retry_seconds=8)


@pytest.fixture
def restore_tz() -> Iterator[None]:
    yield
    time.tzset()


# -- ExpireTime ------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Shanghai"])
def test_expire_time_is_beijing_time_whatever_the_host_zone(
    zone: str, monkeypatch: pytest.MonkeyPatch, restore_tz: None
) -> None:
    """A zone-less ExpireTime is read as UTC+8 and comes back as the same instant in UTC (reference 2.4)."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    parsed = parse_expire_time("2024-05-01 11:00:00")
    assert parsed == datetime(2024, 5, 1, 3, 0, 0, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["2024-05-01T11:00:00Z", "2024-05-01", "", "yesterday"])
def test_expire_time_in_another_format_is_refused(text: str) -> None:
    """Only yyyy-MM-dd HH:mm:ss is accepted."""
    with pytest.raises(ValueError, match="yyyy-MM-dd HH:mm:ss"):
        parse_expire_time(text)


def test_queue_token_repr_shows_neither_secret_nor_security_token() -> None:
    """A token in a log line or traceback reveals only its id and times."""
    text = repr(token_at(START, 60, security_token="CAIS-very-secret"))
    assert "STS.id-1" in text
    assert "secret-1" not in text
    assert "CAIS-very-secret" not in text


def test_queue_token_needs_an_aware_expiry() -> None:
    """A naive expiry would compare wrongly against UTC now, so it is refused."""
    with pytest.raises(ValueError, match="aware"):
        QueueToken("STS.x", "s", "t", expires_at=datetime(2024, 5, 1, 3, 0, 0))


# -- refresh ahead of expiry -----------------------------------------------------------------------


def test_the_first_get_fetches_and_later_gets_use_the_cache(provider: TokenProvider, fetcher: FakeFetcher) -> None:
    """One fetch serves every get() while the token is fresh."""
    first = provider.get()
    assert provider.get() is first
    assert fetcher.calls == 1
    assert provider.refresh_count == 1


def test_refresh_happens_only_within_the_margin_of_a_beijing_expire_time(fetcher: FakeFetcher, clock: Clock) -> None:
    """ExpireTime 11:00 Beijing is 03:00 UTC: at 02:57:59 UTC the token is kept, at 02:58:01 it is refreshed."""
    clock.value = datetime(2024, 5, 1, 2, 0, 0, tzinfo=UTC)
    fetcher.script.append(
        QueueToken(
            "STS.old",
            "s",
            "t",
            expires_at=parse_expire_time("2024-05-01 11:00:00"),
            created_at=parse_expire_time("2024-05-01 10:00:00"),
        )
    )
    provider = TokenProvider(fetcher, "SmsReport", QUEUE, refresh_margin_seconds=120, now=clock)
    assert provider.get().access_key_id == "STS.old"
    clock.value = datetime(2024, 5, 1, 2, 57, 59, tzinfo=UTC)
    assert provider.get().access_key_id == "STS.old"
    assert fetcher.calls == 1
    clock.value = datetime(2024, 5, 1, 2, 58, 1, tzinfo=UTC)
    assert provider.get().access_key_id != "STS.old"
    assert fetcher.calls == 2


def test_a_token_shorter_lived_than_twice_the_margin_is_refreshed_at_half_its_life(clock: Clock) -> None:
    """A 60 s token with a 120 s margin is not refetched on every call, but after 30 s."""
    fetcher = FakeFetcher(clock, lifetime_seconds=60)
    provider = TokenProvider(fetcher, "SmsReport", QUEUE, refresh_margin_seconds=120, now=clock)
    provider.get()
    clock.advance(29)
    provider.get()
    assert fetcher.calls == 1
    clock.advance(2)
    provider.get()
    assert fetcher.calls == 2


def test_seconds_to_expiry_and_counters_follow_the_token(provider: TokenProvider, clock: Clock) -> None:
    """Metrics read the remaining lifetime, the refresh count and the last error code."""
    assert provider.seconds_to_expiry() is None
    assert provider.last_error is None
    provider.get()
    clock.advance(600)
    assert provider.seconds_to_expiry() == 3000
    assert provider.refresh_count == 1


# -- no stampede -----------------------------------------------------------------------------------


def run_concurrently(provider: TokenProvider, count: int) -> list[QueueToken]:
    results: list[QueueToken] = []
    lock = threading.Lock()

    def call() -> None:
        token = provider.get()
        with lock:
            results.append(token)

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_twenty_concurrent_gets_without_a_valid_token_make_one_call_and_share_its_token(
    provider: TokenProvider, fetcher: FakeFetcher, clock: Clock
) -> None:
    """Threads that wait for the refresh get its token; the API is called once."""
    # Given a token that has expired
    provider.get()
    clock.advance(3601)
    # When twenty threads ask while the refresh is held up until it has begun
    gate = fetcher.gate = threading.Event()
    fetcher.entered.clear()

    def release_once_fetching() -> None:
        fetcher.entered.wait(10)
        gate.set()

    releaser = threading.Thread(target=release_once_fetching)
    releaser.start()
    results = run_concurrently(provider, 20)
    releaser.join(10)
    # Then one call was made and every thread got the new token
    assert fetcher.calls == 2
    assert len(results) == 20
    assert {token.access_key_id for token in results} == {"STS.id-2"}


def test_twenty_concurrent_gets_near_expiry_make_one_call_and_never_wait_for_it(
    provider: TokenProvider, fetcher: FakeFetcher, clock: Clock
) -> None:
    """Inside the margin the old token still works: one thread refreshes, the others keep using the old one."""
    # Given a token inside its refresh margin but not expired
    old = provider.get()
    clock.advance(3600 - 60)
    # When twenty threads ask while the refresh is held up until all of them have returned
    fetcher.gate = threading.Event()
    fetcher.entered.clear()
    refresher = threading.Thread(target=provider.get)
    refresher.start()
    assert fetcher.entered.wait(10)
    results = run_concurrently(provider, 20)
    fetcher.gate.set()
    refresher.join(10)
    # Then nobody waited, nobody called again, and the next get() has the new token
    assert results == [old] * 20
    assert fetcher.calls == 2
    assert provider.get().access_key_id == "STS.id-2"


# -- back-off --------------------------------------------------------------------------------------


def test_a_failed_refresh_serves_the_old_token_and_waits_before_calling_again(
    provider: TokenProvider, fetcher: FakeFetcher, clock: Clock
) -> None:
    """While the old token is valid, a failure is absorbed and the API rests for at least min_retry."""
    # Given a token inside its margin and a failing token service
    old = provider.get()
    clock.advance(3600 - 60)
    fetcher.fail_next("ServiceUnavailable", times=5)
    # When get() is called, fails, and is called again inside the back-off window
    assert provider.get() is old
    clock.advance(0.9)
    assert provider.get() is old
    # Then only one call was made, and the failure is visible
    assert fetcher.calls == 2
    assert provider.last_error == "ServiceUnavailable"
    # And after the window the API is tried again
    clock.advance(0.2)
    assert provider.get() is old
    assert fetcher.calls == 3


def test_back_off_grows_but_never_beyond_max_retry(provider: TokenProvider, fetcher: FakeFetcher, clock: Clock) -> None:
    """With max_retry 8 s, a call happens at least every 8 s however many failures came before."""
    provider.get()
    clock.advance(3600 - 100)
    fetcher.fail_next(times=12)
    for attempt in range(12):
        provider.get()
        assert fetcher.calls == attempt + 2
        clock.advance(0.99)
        provider.get()
        assert fetcher.calls == attempt + 2
        clock.advance(7.02)


def test_a_success_after_failures_clears_the_error_and_the_back_off(
    provider: TokenProvider, fetcher: FakeFetcher, clock: Clock
) -> None:
    """Once a refresh works, last_error is None and the next refresh is due at the usual margin."""
    provider.get()
    clock.advance(3600 - 60)
    fetcher.fail_next()
    provider.get()
    clock.advance(1.01)
    assert provider.get().access_key_id == "STS.id-3"
    assert provider.last_error is None
    assert provider.refresh_count == 2


def test_expired_token_and_failing_service_raise_token_error_and_do_not_hammer(
    provider: TokenProvider, fetcher: FakeFetcher, clock: Clock
) -> None:
    """Without a valid token get() raises; inside the back-off it raises again without calling."""
    provider.get()
    clock.advance(3601)
    fetcher.fail_next("SignatureDoesNotMatch", times=3)
    with pytest.raises(TokenError) as first:
        provider.get()
    assert first.value.code == "SignatureDoesNotMatch"
    with pytest.raises(TokenError) as second:
        provider.get()
    assert second.value.code == "SignatureDoesNotMatch"
    assert "retried in" in str(second.value)
    assert fetcher.calls == 2


def test_the_first_fetch_failing_raises_token_error(provider: TokenProvider, fetcher: FakeFetcher) -> None:
    """With no token at all, a failure is the caller's to back off from."""
    fetcher.fail_next("InvalidAccessKeyId.NotFound")
    with pytest.raises(TokenError, match=r"InvalidAccessKeyId\.NotFound"):
        provider.get()
    assert provider.refresh_count == 0
    assert provider.seconds_to_expiry() is None


def test_refresh_failures_are_logged_without_secrets(
    provider: TokenProvider, fetcher: FakeFetcher, clock: Clock
) -> None:
    """The log says which queue failed with which code, and never a secret or security token."""
    provider.get()
    clock.advance(3600 - 60)
    fetcher.fail_next("Throttling")
    with capture_logs() as logs:
        provider.get()
    failure = next(entry for entry in logs if entry["event"] == "token.refresh_failed")
    assert (failure["queue"], failure["code"], failure["serving_cached"]) == (QUEUE, "Throttling", True)
    assert failure["retry_in_seconds"] >= 1
    assert "secret-1" not in repr(logs)
    assert "token-1" not in repr(logs)


# -- invalidation ----------------------------------------------------------------------------------


def test_invalidating_the_current_token_refreshes_at_the_next_get(
    provider: TokenProvider, fetcher: FakeFetcher
) -> None:
    """After MNS refuses the token in use, the next get() fetches a new one at once."""
    refused = provider.get()
    provider.invalidate(provider.current())
    assert provider.get() is not refused
    assert fetcher.calls == 2


def test_invalidating_a_token_that_was_already_replaced_is_ignored(
    provider: TokenProvider, fetcher: FakeFetcher
) -> None:
    """A second poller reporting the same old token does not cost another API call."""
    refused = provider.get()
    provider.invalidate(refused)
    replacement = provider.get()
    provider.invalidate(refused)
    assert provider.get() is replacement
    assert fetcher.calls == 2


def test_invalidating_cuts_a_back_off_short(provider: TokenProvider, fetcher: FakeFetcher, clock: Clock) -> None:
    """An auth error from MNS is news: the token service is asked again even inside the back-off."""
    old = provider.get()
    clock.advance(3600 - 60)
    fetcher.fail_next()
    assert provider.get() is old
    provider.invalidate(old)
    assert provider.get().access_key_id == "STS.id-3"


def test_invalidating_none_does_nothing(provider: TokenProvider, fetcher: FakeFetcher) -> None:
    """current() is None before any token exists; passing it on is harmless."""
    assert provider.current() is None
    provider.invalidate(provider.current())
    provider.get()
    assert fetcher.calls == 1


def test_current_is_the_token_this_thread_last_used(provider: TokenProvider, fetcher: FakeFetcher) -> None:
    """Another thread refreshing does not change which token this thread's failed call used."""
    mine = provider.get()
    provider.invalidate(mine)
    other = threading.Thread(target=provider.get)
    other.start()
    other.join(10)
    assert provider.current() is mine
    assert fetcher.calls == 2


# -- the MNS SDK credentials provider --------------------------------------------------------------


def test_sdk_credentials_provider_hands_out_the_current_token(provider: TokenProvider) -> None:
    """The MNS SDK gets the token's three parts from a real CredentialsProvider subclass."""
    sdk_provider = provider.credentials_provider()
    assert isinstance(sdk_provider, CredentialsProvider)
    credentials = sdk_provider.get_credentials()
    token = provider.current()
    assert token is not None
    assert (
        credentials.get_access_key_id(),
        credentials.get_access_key_secret(),
        credentials.get_security_token(),
    ) == (token.access_key_id, token.access_key_secret, token.security_token)


def test_sdk_credentials_provider_never_returns_a_none_security_token(clock: Clock) -> None:
    """An empty security token goes to the SDK as "", which it reads as "no token" (reference 3.7)."""
    fetcher = FakeFetcher(clock)
    fetcher.script.append(QueueToken("STS.x", "s", "", expires_at=START + timedelta(hours=1)))
    credentials = QueueCredentialsProvider(TokenProvider(fetcher, "SmsReport", QUEUE, now=clock)).get_credentials()
    assert credentials.get_security_token() == ""


def test_sdk_credentials_provider_raises_token_error_rather_than_returning_nothing(
    provider: TokenProvider, fetcher: FakeFetcher
) -> None:
    """With no token to give, the SDK call fails with TokenError instead of sending bad headers."""
    fetcher.fail_next("NetworkError")
    with pytest.raises(TokenError, match="NetworkError"):
        provider.credentials_provider().get_credentials()


@pytest.mark.parametrize(
    "arguments",
    [{"refresh_margin_seconds": -1}, {"min_retry_seconds": 0}, {"min_retry_seconds": 10, "max_retry_seconds": 5}],
)
def test_nonsensical_timing_arguments_are_refused(fetcher: FakeFetcher, arguments: dict[str, float]) -> None:
    """A negative margin or an empty or inverted retry range is a programming error."""
    with pytest.raises(ValueError, match="must"):
        TokenProvider(fetcher, "SmsReport", QUEUE, **arguments)


# -- reading a QueryTokenForMnsQueue answer --------------------------------------------------------


def answer(**overrides: object) -> dybase_models.QueryTokenForMnsQueueResponseBody:
    dto = {
        "AccessKeyId": "STS.abc",
        "AccessKeySecret": "temp-secret",
        "SecurityToken": "CAIS-token",
        "CreateTime": "2024-05-01 10:00:00",
        "ExpireTime": "2024-05-01 11:00:00",
    }
    body: dict[str, object] = {"RequestId": "req-9", "Code": "OK", "Message": "OK", "MessageTokenDTO": dto}
    for key, value in overrides.items():
        if key in dto:
            if value is None:
                del dto[key]
            else:
                dto[key] = value  # type: ignore[assignment]
        elif value is None:
            del body[key]
        else:
            body[key] = value
    return dybase_models.QueryTokenForMnsQueueResponseBody().from_map(body)


def test_a_complete_answer_becomes_a_token_in_utc() -> None:
    """The DTO's fields map one to one; both times are converted from Beijing time."""
    token = _token_from(answer())
    assert token == QueueToken(
        "STS.abc",
        "temp-secret",
        "CAIS-token",
        expires_at=datetime(2024, 5, 1, 3, 0, 0, tzinfo=UTC),
        created_at=datetime(2024, 5, 1, 2, 0, 0, tzinfo=UTC),
    )


def test_http_200_with_a_code_other_than_ok_is_a_token_error_with_that_code() -> None:
    """Official helpers treat Code != OK as failure even on HTTP 200 (reference 2.4)."""
    with pytest.raises(TokenError) as caught:
        _token_from(answer(Code="isv.BUSINESS_LIMIT_CONTROL", Message="limited", MessageTokenDTO=None))
    assert (caught.value.code, caught.value.request_id) == ("isv.BUSINESS_LIMIT_CONTROL", "req-9")


@pytest.mark.parametrize("field", ["AccessKeyId", "AccessKeySecret", "SecurityToken", "ExpireTime"])
def test_an_answer_missing_a_token_field_is_an_invalid_response(field: str) -> None:
    """A DTO without one of the four fields the daemon needs is refused, naming the field only."""
    with pytest.raises(TokenError) as caught:
        _token_from(answer(**{field: None}))
    assert caught.value.code == "InvalidResponse"
    assert field in str(caught.value)
    assert "temp-secret" not in str(caught.value)
    assert "CAIS-token" not in str(caught.value)


def test_an_answer_without_a_code_or_dto_is_an_invalid_response() -> None:
    """Neither a missing Code nor a missing MessageTokenDTO passes for success."""
    for body in (answer(Code=None), answer(MessageTokenDTO=None)):
        with pytest.raises(TokenError, match="InvalidResponse"):
            _token_from(body)


def test_an_unreadable_expire_time_is_an_invalid_response_but_a_bad_create_time_is_tolerated() -> None:
    """ExpireTime drives refresh and must parse; CreateTime is informational."""
    with pytest.raises(TokenError, match="ExpireTime"):
        _token_from(answer(ExpireTime="tomorrow"))
    assert _token_from(answer(CreateTime="?")).created_at is None


# -- which AccessKey signs the calls ---------------------------------------------------------------

ENVIRONMENT = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-env", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret"}


def test_the_configured_access_key_comes_first() -> None:
    """The credentials section wins over the environment."""
    config = CredentialsConfig(access_key_id="LTAI-config", access_key_secret=SecretStr("config-secret"))
    key = resolve_access_key(config, ENVIRONMENT)
    assert key == AccessKey("LTAI-config", "config-secret")
    assert key.describe() == "AccessKey LTAI-config from configuration"
    assert "config-secret" not in repr(key)


def test_the_environment_comes_second() -> None:
    """Without a credentials section, the standard variables are used, with an STS token if present."""
    key = resolve_access_key(None, {**ENVIRONMENT, "ALIBABA_CLOUD_SECURITY_TOKEN": "sts-token"})
    assert key == AccessKey("LTAI-env", "env-secret", security_token="sts-token")
    assert isinstance(key, AccessKey)
    assert key.tea_config_fields() == {
        "access_key_id": "LTAI-env",
        "access_key_secret": "env-secret",
        "security_token": "sts-token",
    }
    assert "env-secret" not in key.describe()
    assert "sts-token" not in repr(key)


def test_the_default_chain_comes_last_and_is_not_built_when_chosen() -> None:
    """With neither, the default credential chain is chosen; nothing is looked up yet."""
    source = resolve_access_key(None, {"HOME": "/nonexistent"})
    assert isinstance(source, DefaultCredentialChain)
    assert source.describe() == "default credential chain"


def test_half_an_access_key_in_the_environment_is_a_config_error() -> None:
    """An id without its secret is a mistake to report, not a reason to fall through to the chain."""
    with pytest.raises(ConfigError) as caught:
        resolve_access_key(None, {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-env"})
    assert caught.value.key_path == "ALIBABA_CLOUD_ACCESS_KEY_SECRET"


def test_an_empty_configured_secret_is_a_config_error() -> None:
    """${VAR:-} interpolating to nothing is caught here with the key to fix."""
    config = CredentialsConfig(access_key_id="LTAI-config", access_key_secret=SecretStr(""))
    with pytest.raises(ConfigError) as caught:
        resolve_access_key(config, ENVIRONMENT)
    assert caught.value.key_path == "credentials.access_key_secret"
