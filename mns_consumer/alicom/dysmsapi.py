"""What QuerySendDetails and QuerySendStatistics share: the Tea client, retries, paging and typed errors.

Both are Dysmsapi actions behind one AccessKey, failing the same ways, so one :class:`DysmsapiCaller`
makes every call: a Tea client per thread (they are not shared, pitfall 10), jittered back-off on
throttling, 5xx and network failures (honouring a throttling answer's retry-after), and errors typed
by code whichever channel (HTTP 200 or 4xx/5xx) they came on, since which comes how is unconfirmed
(reference 6.2). :class:`~mns_consumer.errors.SendDetailsError` and its subclasses stand for any
Dysmsapi failure.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, Generic, NamedTuple, TypeVar

from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from Tea.exceptions import UnretryableException

from mns_consumer.alicom.credentials import AccessKeySource
from mns_consumer.alicom.endpoints import Endpoints
from mns_consumer.alicom.tea import INVALID_RESPONSE, http_failure, refusal_of, tea_config, transport_failure
from mns_consumer.alicom.tokens import CREDENTIALS_UNAVAILABLE
from mns_consumer.errors import (
    SendDetailsAuthError,
    SendDetailsError,
    SendDetailsThrottled,
    SendDetailsUnavailable,
)
from mns_consumer.retry import Backoff

MAX_PAGE_SIZE: Final = 50
"""The largest page both actions accept (reference 6.1)."""

_AUTH_CODES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSecurityToken",
    "Forbidden",
    "isp.RAM_PERMISSION_DENY",
    "InvalidCredentials",
    "NoPermission",
)
_RETRYABLE_CODES = (
    "Throttling",
    "ServiceUnavailable",
    "InternalError",
    "isp.SYSTEM_ERROR",
    "isp.GATEWAY_ERROR",
    "SystemBusy",
    "RequestTimeout",
)

_T = TypeVar("_T")
_R = TypeVar("_R")


class Page(NamedTuple, Generic[_R]):
    """One answered page: its number (from 1), the total the answer reports, and its records."""

    page: int
    total_count: int
    records: list[_R]


def pages(fetch: Callable[[int], tuple[int, list[_R]]]) -> Iterator[Page[_R]]:
    """``fetch(page_number)`` from page 1 until a page is empty or as many records as its total were seen.

    The total is re-read on every page: sends made meanwhile only append (oldest first).
    """
    seen = 0
    for number in itertools.count(1):
        total, records = fetch(number)
        yield Page(number, total, records)
        seen += len(records)
        if not records or seen >= total:
            return


def classify(code: str, message: str, *, status: int, request_id: str | None) -> SendDetailsError:
    """The typed error for an Alibaba error code, whichever channel (HTTP 200 or 4xx/5xx) it came on."""
    if code.startswith(_AUTH_CODES):
        return SendDetailsAuthError(code, message, request_id=request_id)
    if status == 429 or code.startswith(_RETRYABLE_CODES) or status >= 500:
        return SendDetailsUnavailable(code, message, request_id=request_id)
    return SendDetailsError(code, message, request_id=request_id)


def check_answer(body: Any, request_id: str | None) -> None:
    """Raise the typed error of an answer body whose ``Code`` is not ``OK`` (``Any``: Tea models are untyped).

    Raises:
        SendDetailsError: Also for a missing body.
    """
    if body is None:
        raise SendDetailsError(INVALID_RESPONSE, "the answer has no body")
    refusal = refusal_of(body)
    if refusal is not None:
        raise classify(*refusal, status=200, request_id=request_id)


def as_int(value: Any) -> int | None:
    """A count given as a number or a decimal string (``TotalCount`` is a string in some SDKs)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


class DysmsapiCaller:
    """Makes Dysmsapi calls with a Tea client per thread, retried per ``attempts`` and typed.

    Args:
        endpoints: ``dysmsapi``, ``protocol``, ``ca_file`` and the proxy settings are used.
        attempts: Tries of one call on a transient failure (1: no retry).
        retry_initial_seconds: First back-off; it doubles (with jitter) up to ``retry_max_seconds``,
            and is never shorter than what a throttling answer asked for.
        retry_max_seconds: Longest back-off.
        on_retry: Called before each back-off with the attempt number, the error and the delay.
        sleep: How to wait between tries; one that returns True (``threading.Event.wait`` once set)
            ends the retries with the last error.

    Raises:
        ValueError: If ``attempts`` is less than 1.
    """

    def __init__(
        self,
        credentials: AccessKeySource,
        endpoints: Endpoints,
        *,
        connect_timeout_seconds: float = 5,
        read_timeout_seconds: float = 10,
        attempts: int = 5,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 10,
        on_retry: Callable[[int, SendDetailsUnavailable, float], None] | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.endpoint = endpoints.dysmsapi
        self.attempts = attempts
        self._credentials = credentials
        self._config = tea_config(
            credentials,
            endpoints.dysmsapi,
            endpoints,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
        )
        self._delay = Backoff(retry_initial_seconds, retry_max_seconds).delay
        self._on_retry = on_retry
        self._sleep: Callable[[float], object] = sleep or time.sleep
        self._local = threading.local()

    def call(self, action: Callable[[DysmsClient], _T]) -> _T:
        """Run ``action`` with this thread's client, retrying transient failures.

        Raises:
            SendDetailsError: A refusal or an unreadable answer (at once).
            SendDetailsAuthError: Alibaba refused the AccessKey (at once).
            SendDetailsUnavailable: Throttling, 5xx or network failures outlasted every retry.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._once(action)
            except SendDetailsUnavailable as exc:
                if attempt >= self.attempts:
                    raise
                # A throttling answer says how long to wait; Backoff never waits less.
                retry_after = exc.retry_after_seconds if isinstance(exc, SendDetailsThrottled) else None
                delay = self._delay(attempt, retry_after)
                if self._on_retry is not None:
                    self._on_retry(attempt, exc, delay)
                if self._sleep(delay) is True:
                    raise

    def _once(self, action: Callable[[DysmsClient], _T]) -> _T:
        client: DysmsClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = DysmsClient(self._config)
        try:
            return action(client)
        except AlibabaCloudException as exc:
            failure = http_failure(exc)
            if failure.retry_after_seconds is not None:
                raise SendDetailsThrottled(
                    failure.code,
                    failure.text,
                    request_id=failure.request_id,
                    retry_after_seconds=failure.retry_after_seconds,
                ) from exc
            raise classify(failure.code, failure.text, status=failure.status, request_id=failure.request_id) from exc
        except UnretryableException as exc:
            code, text = transport_failure(exc, "Dysmsapi", self.endpoint, self._credentials.describe())
            # A default chain without a key is a setup error; a non-JSON answer is as transient as a 5xx.
            kind = SendDetailsAuthError if code == CREDENTIALS_UNAVAILABLE else SendDetailsUnavailable
            raise kind(code, text) from exc
        except SendDetailsError:
            raise
        except Exception as exc:
            # The generated models fail with whatever Python raises on an unexpected shape.
            raise SendDetailsError(INVALID_RESPONSE, f"unreadable answer ({type(exc).__name__})") from exc
