"""POST receipts as signed JSON to an HTTP(S) endpoint: :class:`WebhookSinkConfig` and :class:`WebhookSink`.

Wire format. Every request is ``POST <url>`` with a UTF-8 JSON body of the same shape in both modes::

    {"receipts": [<Receipt.to_json_dict()>, ...]}

In batch mode (the default) a request carries up to ``max_batch`` receipts; with
``one_per_request: true`` it carries exactly one. Headers:

``Content-Type: application/json``
``User-Agent: mns-consumer/<version>``
``X-Timestamp``
    Unix time in whole seconds when the request was signed (each retry signs anew).
``X-Signature: sha256=<hex>`` (only when ``secret`` is set)
    ``hex(HMAC-SHA256(key=secret as UTF-8, msg=X-Timestamp as ASCII + b"." + raw body bytes))``.
``Idempotency-Key``
    For a request carrying one receipt, its ``dedupe_key``; otherwise the hex SHA-256 of the request's
    dedupe keys, sorted and joined with ``"\\n"``. A retried request (same receipts) carries the same key,
    so a receiver that remembers keys ignores the retry of a request it already stored.

A receiver verifies the signature over the raw body, before parsing it, and bounds the clock skew
to refuse replays::

    import hashlib, hmac, time

    def verify(secret: bytes, headers, body: bytes, tolerance_seconds: int = 300) -> bool:
        timestamp = headers["X-Timestamp"]
        if abs(time.time() - int(timestamp)) > tolerance_seconds:
            return False
        digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest("sha256=" + digest, headers.get("X-Signature", ""))

(:func:`verify_signature` does the same.) ``mns-consumer check-config --connect`` sends one request
of this format with an empty batch, ``{"receipts": []}``, and the extra header
``X-MNS-Consumer-Probe: 1``; a receiver should answer it 2xx without storing anything (which the
plain contract already gives: there are no receipts to store). Delivery is at least once: a receiver must treat a known
``Idempotency-Key``, or a known ``dedupe_key`` inside a body, as already stored and answer 2xx.

Outcomes per request:

* 2xx: every receipt of the request is accepted.
* 408, 425, 429, 5xx, 3xx (redirects are never followed, so a signed body is never re-sent to
  another host), 401, 403, 404, 405, 407 (the URL or the credentials are wrong, not the receipts), a
  connection error or a timeout: :class:`~mns_consumer.errors.SinkUnavailable`, carrying a
  ``Retry-After`` header (delay in seconds or an HTTP date) as ``retry_after_seconds``.
* Any other 4xx: every receipt of the request is rejected with ``HTTP <status>: <first 200 characters
  of the response body>``, redacted as free text is everywhere (:func:`~mns_consumer.observe.logging.redact_text`):
  our own secrets (the HMAC key, header values) in any letter case, secret-looking ``name: value``
  pairs and phone numbers are masked, since a receiver may echo the request back.

Requests are independent: receipts of requests answered before a transient failure stay accepted (and
remembered, so the retry does not send them again), then the failure is raised.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from mns_consumer import __version__
from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.observe.logging import redact_text
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import SinkConfig, SinkResult
from mns_consumer.sinks.recent_keys import DEFAULT_CAPACITY, RecentKeys

USER_AGENT = f"mns-consumer/{__version__}"
"""The ``User-Agent`` of every request."""

SIGNATURE_PREFIX = "sha256="
"""What ``X-Signature`` values start with, naming the digest."""

REJECT_BODY_CHARS = 200
"""How much of a rejecting response body ends up in the rejection reason."""

PROBE_HEADER = "X-MNS-Consumer-Probe"
"""Header (value ``1``) marking the empty batch ``check-config --connect`` sends; receivers may ignore it."""

RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "x-timestamp",
        "x-signature",
        "idempotency-key",
        PROBE_HEADER.lower(),
    }
)
"""Headers the sink sets itself and ``headers`` may not override (lower case)."""

_TRANSIENT_STATUSES = frozenset({408, 425, 429})
_MISCONFIGURED_STATUSES = frozenset({401, 403, 404, 405, 407})


class WebhookSinkConfig(SinkConfig):
    """``type: webhook``: POST signed JSON batches of receipts to an HTTP(S) endpoint."""

    sink_type = "webhook"

    type: Literal["webhook"] = Field(default="webhook", description="Sink type name.")
    url: str = Field(
        description="Endpoint receiving the POSTs, http:// or https://. Keep tokens out of it: it appears in "
        "logs; put credentials in `headers`, whose values are masked."
    )
    secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key signing each request (X-Signature); no signature when unset. Default: unset.",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra static headers, e.g. Authorization; values are treated as secrets. Default: none.",
    )
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate and host name.")
    ca_file: str | None = Field(
        default=None,
        description="PEM bundle trusted instead of the default (certifi) bundle, e.g. a private CA. Default: unset.",
    )
    use_env_proxy: bool = Field(
        default=False,
        description="Honour HTTP(S)_PROXY, NO_PROXY and SSL_CERT_FILE from the environment. Default: false.",
    )
    connect_timeout_seconds: float = Field(default=5.0, gt=0, description="TCP and TLS connect timeout, seconds.")
    read_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout waiting for each chunk of the response (and sending), seconds."
    )
    one_per_request: bool = Field(
        default=False,
        description="Send each receipt in its own request, so the receiver can reject receipts one by one. "
        "Default: false (batches).",
    )
    max_batch: int = Field(default=256, ge=1, description="Most receipts per request in batch mode, receipts.")
    dedupe_window: int = Field(
        default=DEFAULT_CAPACITY,
        ge=1,
        description="How many recently sent dedupe keys are remembered and not sent again, keys.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an absolute http:// or https:// URL")
        if url.userinfo:
            raise ValueError("must not contain credentials; put them in `headers` (e.g. Authorization)")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for header_name, header_value in value.items():
            if header_name.lower() in RESERVED_HEADERS:
                raise ValueError(f"{header_name!r} is set by the sink itself")
            if not header_name.isascii() or not header_name.replace("-", "").isalnum():
                raise ValueError(f"{header_name!r} is not a valid header name")
            if any(ch in header_value.get_secret_value() for ch in "\r\n\0"):
                raise ValueError(f"the value of {header_name!r} contains a line break or NUL")
        return value

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty; leave it unset to send unsigned requests")
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> WebhookSinkConfig:
        if self.ca_file is not None and not self.verify_tls:
            raise ValueError("ca_file has no effect with verify_tls: false; drop one of them")
        return self

    def build(self, name: str) -> WebhookSink:
        """The sink described by this configuration, not opened yet.

        Args:
            name: The sink's name in the configuration (``sinks.<name>``).
        """
        return WebhookSink(name, self)


def sign_body(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """The ``X-Signature`` value of a request.

    Args:
        secret: The shared secret (a str is encoded as UTF-8).
        timestamp: The ``X-Timestamp`` value.
        body: The raw request body.

    Returns:
        ``sha256=`` followed by the lowercase hex HMAC-SHA256.
    """
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    message = str(timestamp).encode("ascii") + b"." + body
    return SIGNATURE_PREFIX + hmac.new(key, message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> bool:
    """Check a request's ``X-Signature`` and the freshness of its ``X-Timestamp``, as a receiver does.

    Args:
        secret: The shared secret.
        timestamp: The ``X-Timestamp`` header.
        body: The raw request body, exactly as received.
        signature: The ``X-Signature`` header.
        tolerance_seconds: Largest accepted distance between the timestamp and ``now``, seconds.
        now: The current Unix time; defaults to the system clock.

    Returns:
        True if the signature matches and the timestamp is fresh.
    """
    try:
        signed_at = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign_body(secret, timestamp, body), signature)


def idempotency_key(dedupe_keys: Sequence[str]) -> str:
    """The ``Idempotency-Key`` of a request carrying receipts with these dedupe keys.

    Args:
        dedupe_keys: The dedupe keys of the request's receipts, in any order, each once.

    Returns:
        The key itself for one receipt, else the hex SHA-256 of the sorted keys joined with newlines.
    """
    if len(dedupe_keys) == 1:
        return dedupe_keys[0]
    return hashlib.sha256("\n".join(sorted(dedupe_keys)).encode("utf-8")).hexdigest()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header (RFC 9110 10.2.3).

    Args:
        value: The header: a delay in seconds or an HTTP date; None when absent.
        now: The current time, for HTTP dates; defaults to the system clock.

    Returns:
        The delay in seconds (never negative), or None if the header is absent or malformed.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class _Answer:
    """What one request achieved: its keys accepted, or rejected with a reason."""

    keys: tuple[str, ...]
    rejection: str | None = None


class WebhookSink:
    """Posts receipts to the configured endpoint; see the module docstring for the wire format.

    One pooled, thread-safe HTTP client is opened by :meth:`open` and reused by every write, so
    concurrent pollers may share the sink. Receipts whose dedupe key was sent recently (the last
    ``dedupe_window`` keys) are reported accepted without being sent again.
    """

    def __init__(self, name: str, config: WebhookSinkConfig) -> None:
        self.name = name
        self.config = config
        self._recent = RecentKeys(config.dedupe_window)
        self._client: httpx.Client | None = None
        self._origin = _origin(config.url)
        secrets = [header.get_secret_value() for header in config.headers.values()]
        # "Bearer abc": a receiver may echo the credential without its scheme.
        secrets += [value.split(None, 1)[1] for value in secrets if len(value.split(None, 1)) == 2]
        if config.secret is not None:
            secrets.append(config.secret.get_secret_value())
        # Longest first, so that a secret containing another is masked whole.
        self._secrets = tuple(sorted({secret for secret in secrets if secret.strip()}, key=len, reverse=True))

    def __repr__(self) -> str:
        return f"WebhookSink(name={self.name!r}, url={self.config.url!r})"

    def open(self) -> None:
        """Create the pooled HTTP client; no request is sent.

        Raises:
            ConfigError: If ``ca_file`` cannot be loaded.
        """
        config = self.config
        self._client = httpx.Client(
            headers={"User-Agent": USER_AGENT, **{k: v.get_secret_value() for k, v in config.headers.items()}},
            timeout=httpx.Timeout(
                connect=config.connect_timeout_seconds,
                read=config.read_timeout_seconds,
                write=config.read_timeout_seconds,
                pool=config.connect_timeout_seconds,
            ),
            verify=self._tls_verification(),
            # Proxy variables set for other tools must not silently reroute receipts (or break loopback).
            trust_env=config.use_env_proxy,
            # Following a redirect would hand the signed body and the static headers to another host.
            follow_redirects=False,
        )

    def _tls_verification(self) -> ssl.SSLContext | bool:
        if not self.config.verify_tls:
            return False
        if self.config.ca_file is None:
            return True
        try:
            return ssl.create_default_context(cafile=self.config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"sinks.{self.name}", "ca_file", f"cannot load {self.config.ca_file}: {exc}", "give a PEM bundle"
            ) from exc

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
        """POST the receipts not sent recently and report which the receiver took.

        Args:
            batch: Receipts in any order; copies of one receipt are sent once.

        Returns:
            Accepted dedupe keys (including those sent before) and rejections with their reasons.

        Raises:
            SinkUnavailable: On a connection error, a timeout, or a status that says "later" or "not
                here" (see the module docstring); requests answered before it stay accepted.
            RuntimeError: If the sink was not opened.
        """
        client = self._client
        if client is None:
            raise RuntimeError(f"webhook sink {self.name!r} is not open")
        unique: dict[str, Receipt] = {}
        for receipt in batch:
            unique.setdefault(receipt.dedupe_key, receipt)
        # Requests go out in batch order, so a receiver sees receipts roughly as MNS delivered them.
        fresh = [unique[key] for key in self._recent.unseen(unique)]
        accepted = set(unique) - {receipt.dedupe_key for receipt in fresh}
        rejected: dict[str, str] = {}
        size = 1 if self.config.one_per_request else self.config.max_batch
        for start in range(0, len(fresh), size):
            answer = self._post(client, fresh[start : start + size])
            if answer.rejection is None:
                # Remembered at once, so a retry after a later request fails does not resend these.
                self._recent.add_all(answer.keys)
                accepted.update(answer.keys)
            else:
                rejected.update(dict.fromkeys(answer.keys, answer.rejection))
        return SinkResult(accepted=frozenset(accepted), rejected=rejected)

    def _post(self, client: httpx.Client, receipts: Sequence[Receipt]) -> _Answer:
        keys = tuple(receipt.dedupe_key for receipt in receipts)
        body = json.dumps(
            {"receipts": [receipt.to_json_dict() for receipt in receipts]}, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
        response = self._send(client, body, idempotency_key(keys))
        status = response.status_code
        if 200 <= status < 300:
            return _Answer(keys)
        if self._unavailable_status(status):
            raise SinkUnavailable(
                self.name,
                f"HTTP {status} from {self._origin}",
                retry_after_seconds=parse_retry_after(response.headers.get("Retry-After")),
            )
        return _Answer(keys, f"HTTP {status}: {self._snippet(response.text)}")

    def _send(
        self, client: httpx.Client, body: bytes, key: str, extra_headers: dict[str, str] | None = None
    ) -> httpx.Response:
        # Signed per attempt, not per batch: receivers refuse stale timestamps, and retries can be late.
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Timestamp": timestamp, "Idempotency-Key": key}
        if extra_headers:
            headers.update(extra_headers)
        if self.config.secret is not None:
            headers["X-Signature"] = sign_body(self.config.secret.get_secret_value(), timestamp, body)
        try:
            return client.post(self.config.url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise SinkUnavailable(
                self.name, redact_text(f"{type(exc).__name__} posting to {self._origin}: {exc}", self._secrets)
            ) from exc

    @staticmethod
    def _unavailable_status(status: int) -> bool:
        """Whether a non-2xx status says "later" or "not here" rather than judging the receipts."""
        return not 200 <= status < 300 and (
            status < 400 or status >= 500 or status in _TRANSIENT_STATUSES or status in _MISCONFIGURED_STATUSES
        )

    def probe(self) -> str:
        """POST one empty, signed batch marked ``X-MNS-Consumer-Probe: 1`` (``check-config --connect``).

        The request is a real one of the wire format, so it proves the whole path a batch takes: DNS,
        TCP, TLS and its certificate, proxies, the URL, the static headers and the signature. Its body
        is ``{"receipts": []}``: a receiver that follows the contract stores nothing and answers 2xx,
        and one that knows the header may answer at once without looking further.

        Returns:
            The status seen. A 4xx other than those that mean "wrong URL or credentials" still passes:
            the receiver was reached and judged the body (an empty batch), as it would judge receipts.

        Raises:
            SinkUnavailable: On a connection, TLS or timeout error, or a status that makes ``write``
                report the sink unavailable (3xx, 401, 403, 404, 405, 407, 408, 425, 429, 5xx).
            ConfigError: If ``ca_file`` cannot be loaded.
        """
        self.open()
        try:
            client = self._client
            assert client is not None  # noqa: S101  (just opened)
            body = b'{"receipts":[]}'
            response = self._send(client, body, idempotency_key([]), {PROBE_HEADER: "1"})
        finally:
            self.close()
        status = response.status_code
        if self._unavailable_status(status):
            raise SinkUnavailable(self.name, f"HTTP {status} from {self._origin} to the probe request")
        if 200 <= status < 300:
            return f"HTTP {status} from {self._origin}: the receiver took the empty probe batch"
        return (
            f"HTTP {status} from {self._origin}: reachable, but the receiver refused the empty probe batch "
            f"({self._snippet(response.text)}); it should answer 2xx to {PROBE_HEADER}: 1"
        )

    def _snippet(self, text: str) -> str:
        # A debugging receiver may echo the request back: our secrets and the receipts' phone numbers
        # must not travel on into logs and dead letters. Redacted before it is cut, so that no secret
        # is left half masked at the cut.
        return redact_text(" ".join(text.split()), self._secrets)[:REJECT_BODY_CHARS]

    def close(self) -> None:
        """Close the HTTP client and its pooled connections."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"


__all__ = [
    "PROBE_HEADER",
    "WebhookSink",
    "WebhookSinkConfig",
    "idempotency_key",
    "parse_retry_after",
    "sign_body",
    "verify_signature",
]
