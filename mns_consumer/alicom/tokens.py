"""Queue tokens: one per (MessageType, QueueName), refreshed ahead of ExpireTime without stampedes.

Receipt queues live in an Alibaba-owned MNS account, read with temporary credentials Dybaseapi hands
out per queue (reference 1, 2). A :class:`TokenFetcher` makes the call (this module imports none, to
keep the Tea SDK out); :class:`TokenProvider` caches the token and hands MNS clients a credentials
provider read on every request. After a token error from MNS, the caller invalidates the token it
signed with (``invalidate(current())``), leaving a newer one alone.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

import structlog
from mns.auth import Credentials, CredentialsProvider

from mns_consumer.alicom.pop_text import BEIJING
from mns_consumer.errors import TokenError

log = structlog.get_logger(__name__)

NETWORK_ERROR = "NetworkError"
"""TokenError code when Dybaseapi could not be reached or did not answer in time."""

CREDENTIALS_UNAVAILABLE = "CredentialsUnavailable"
"""TokenError code when the default credential chain found no AccessKey to sign with."""

_utc_now: Callable[[], datetime] = partial(datetime.now, UTC)


def parse_expire_time(text: str) -> datetime:
    """Parse ExpireTime (or CreateTime), zone-less Beijing time, e.g. ``2024-05-01 11:00:00`` (03:00 UTC).

    Alibaba's Java helpers pin it to Asia/Shanghai; host-local time, as the Python demos read it, is
    wrong on any host not at UTC+8 (reference 2.4, pitfall 3).

    Raises:
        ValueError: If the text is not in that format.
    """
    try:
        local = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S")
    except (AttributeError, ValueError):
        raise ValueError(f"not a yyyy-MM-dd HH:mm:ss time: {text!r}") from None
    return local.replace(tzinfo=BEIJING).astimezone(UTC)


@dataclass(frozen=True)
class QueueToken:
    """Temporary credentials for one receipt queue, as QueryTokenForMnsQueue returned them.

    The secret and the STS token are left out of ``repr`` and never logged; the times are aware UTC
    datetimes, ``created_at`` None when the answer's CreateTime was unreadable.
    """

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str = field(repr=False)
    expires_at: datetime
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")


class TokenFetcher(Protocol):
    """Anything that can fetch a queue token (see the module's docstring for the real ones)."""

    def fetch(self, message_type: str, queue_name: str) -> QueueToken:
        """Fetch a new token for the queue.

        Raises:
            TokenError: On every failure; anything else is a bug.
        """
        ...


class TokenProvider:
    """The token of one (MessageType, QueueName), fetched when needed and refreshed ahead of expiry.

    * **Fresh:** the cached token is served while more than ``refresh_margin_seconds`` remain before
      its ExpireTime (reference 2.6), or half its lifetime for a token living less than twice that.
    * **No stampede:** one thread at a time calls the API; threads without a valid token wait for it
      and share its result, threads holding a valid one keep using it.
    * **Back-off:** after a failed refresh the API rests for a jittered delay (``min_retry_seconds``
      doubling up to ``max_retry_seconds``), serving a token that has not expired meanwhile.
    * **Auth errors:** :meth:`invalidate` drops a token MNS refused (pitfall 3).

    ``now`` is the clock (an aware datetime); tests move it.

    Raises:
        ValueError: If the margin is negative or the retry delays are not ``0 < min <= max``.
    """

    def __init__(
        self,
        fetcher: TokenFetcher,
        message_type: str,
        queue_name: str,
        *,
        refresh_margin_seconds: float = 120,
        min_retry_seconds: float = 1,
        max_retry_seconds: float = 60,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        if refresh_margin_seconds < 0:
            raise ValueError("refresh_margin_seconds must not be negative")
        if not 0 < min_retry_seconds <= max_retry_seconds:
            raise ValueError("retry delays must satisfy 0 < min_retry_seconds <= max_retry_seconds")
        self.fetcher = fetcher
        self.message_type = message_type
        self.queue_name = queue_name
        self.refresh_margin = timedelta(seconds=refresh_margin_seconds)
        self.min_retry = timedelta(seconds=min_retry_seconds)
        self._now = now
        self._retry_range = (min_retry_seconds, max_retry_seconds)
        # _state guards the fields below and is held only briefly; _refresh is held across the API call.
        self._state = threading.Lock()
        self._refresh = threading.Lock()
        self._token: QueueToken | None = None
        self._refresh_at: datetime | None = None
        self._retry_at: datetime | None = None
        self._failures = 0
        self._last_error: TokenError | None = None
        self._refresh_count = 0
        self._local = threading.local()

    def get(self) -> QueueToken:
        """The token to sign the next MNS request with, fetching or refreshing it when due.

        Raises:
            TokenError: When there is no unexpired token and the API failed now or is in back-off
                after a recent failure; the caller backs off.
        """
        now = self._now()
        with self._state:
            token, served = self._token, self._served(now)
        if served is not None:
            return self._handing_out(served)
        if token is not None and token.expires_at > now:
            # Someone is refreshing already: the token in hand still works, so do not queue behind them.
            if not self._refresh.acquire(blocking=False):
                return self._handing_out(token)
        else:
            self._refresh.acquire()
        try:
            return self._handing_out(self._refresh_locked())
        finally:
            self._refresh.release()

    def current(self) -> QueueToken | None:
        """The token the calling thread's latest :meth:`get` returned, else the cached one; no API call.

        The MNS SDK calls :meth:`get` on the thread that makes the request, so after a failed MNS call
        this is the token that call was signed with: the one to pass to :meth:`invalidate`.
        """
        token: QueueToken | None = getattr(self._local, "token", None)
        if token is not None:
            return token
        with self._state:
            return self._token

    def invalidate(self, token: QueueToken | None) -> None:
        """Drop a token MNS refused (None is ignored), so the next :meth:`get` fetches a new one at once.

        A token already replaced (another thread saw the same error) is left alone, so one expiry costs
        one API call. A pending back-off is cut short: an auth error is news the last failure did not know.
        """
        with self._state:
            if token is None or self._token is not token:
                return
            self._token = None
            self._retry_at = None
        log.info("token.invalidated", message_type=self.message_type, queue=self.queue_name)

    def credentials_provider(self) -> QueueCredentialsProvider:
        """A ``mns.auth.CredentialsProvider`` for ``mns.account.Account(url, credentials_provider=...)``."""
        return QueueCredentialsProvider(self)

    def seconds_to_expiry(self) -> float | None:
        """Seconds until the cached token's ExpireTime (negative once past), or None without a token."""
        with self._state:
            token = self._token
        return None if token is None else (token.expires_at - self._now()).total_seconds()

    @property
    def last_error(self) -> str | None:
        """The code of the last failed refresh, or None once a refresh succeeded."""
        with self._state:
            return self._last_error.code if self._last_error is not None else None

    @property
    def refresh_count(self) -> int:
        """How many tokens were fetched successfully."""
        with self._state:
            return self._refresh_count

    def _handing_out(self, token: QueueToken) -> QueueToken:
        self._local.token = token
        return token

    def _refresh_locked(self) -> QueueToken:
        """Fetch a token unless another thread did while this one waited (``_refresh`` held); raises as :meth:`get`."""
        now = self._now()
        with self._state:
            served = self._served(now)
            if served is not None:
                return served
            if self._retry_at is not None and now < self._retry_at:
                last = self._last_error
                raise TokenError(
                    last.code if last is not None else NETWORK_ERROR,
                    f"no valid token for {self.queue_name}; QueryTokenForMnsQueue failed recently ({last}) "
                    f"and is retried in {(self._retry_at - now).total_seconds():.1f} s",
                    request_id=last.request_id if last is not None else None,
                )
        try:
            fresh = self.fetcher.fetch(self.message_type, self.queue_name)
        except TokenError as exc:
            return self._failed(exc)
        self._store(fresh)
        return fresh

    def _served(self, now: datetime) -> QueueToken | None:
        """The cached token if it is served without a call: fresh, or unexpired during a back-off."""
        token = self._token
        if token is None:
            return None
        fresh = self._refresh_at is not None and now < self._refresh_at
        backing_off = self._retry_at is not None and now < self._retry_at
        return token if fresh or (token.expires_at > now and backing_off) else None

    def _store(self, token: QueueToken) -> None:
        now = self._now()
        lifetime = token.expires_at - (token.created_at or now)
        margin = min(self.refresh_margin, max(lifetime, timedelta(0)) / 2)
        # The floor keeps a token that looks expired on arrival (a host clock far ahead of Alibaba's)
        # from being re-fetched on every request; MNS is the judge of whether it still works.
        refresh_at = max(token.expires_at - margin, now + self.min_retry)
        with self._state:
            self._token = token
            self._refresh_at = refresh_at
            self._retry_at = None
            self._failures = 0
            self._last_error = None
            self._refresh_count += 1
            count = self._refresh_count
        log.info(
            "token.refreshed",
            message_type=self.message_type,
            queue=self.queue_name,
            expires_at=token.expires_at.isoformat(),
            seconds_to_expiry=round((token.expires_at - now).total_seconds(), 1),
            refresh_count=count,
        )

    def _failed(self, error: TokenError) -> QueueToken:
        """Record a failed refresh and start the back-off; serve the cached token if unexpired, else raise ``error``."""
        now = self._now()
        with self._state:
            self._failures += 1
            # Full jitter between the shortest wait and a ceiling that doubles with each failure.
            shortest, longest = self._retry_range
            delay = random.uniform(shortest, min(longest, shortest * 2 ** min(self._failures - 1, 32)))
            self._retry_at = now + timedelta(seconds=delay)
            self._last_error = error
            token = self._token
        serving = token is not None and token.expires_at > now
        log.warning(
            "token.refresh_failed",
            message_type=self.message_type,
            queue=self.queue_name,
            code=error.code,
            request_id=error.request_id,
            error=str(error),
            serving_cached=serving,
            retry_in_seconds=round(delay, 3),
        )
        if token is not None and serving:
            return token
        raise error


class QueueCredentialsProvider(CredentialsProvider):  # type: ignore[misc]  # mns ships no type hints
    """What ``mns.account.Account`` takes as ``credentials_provider``: the provider's token, per request.

    The MNS SDK calls :meth:`get_credentials` before every request (reference 3.7), so refreshes reach
    it without rebuilding the client.
    """

    def __init__(self, tokens: TokenProvider) -> None:
        self.tokens = tokens

    def get_credentials(self) -> Credentials:
        """The current token as MNS SDK credentials.

        Raises:
            TokenError: From :meth:`TokenProvider.get`; the SDK lets it through to its caller.
        """
        token = self.tokens.get()
        # The SDK puts a None token into the security-token header and then fails every request;
        # "" is how it spells "no token" (reference 3.7).
        return Credentials(token.access_key_id, token.access_key_secret, token.security_token or "")
