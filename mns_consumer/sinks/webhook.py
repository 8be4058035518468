"""POST receipts as signed JSON to an HTTP(S) endpoint: :class:`WebhookSinkConfig` and :class:`WebhookSink`.

The wire format (body, ``X-Timestamp``, ``X-Signature``, ``Idempotency-Key``), which statuses accept,
reject or mean "later", and the ``check-config --connect`` probe are documented in ``docs/sinks.md``.
Requests are independent: receipts of requests answered before a transient failure stay accepted, and
are remembered so that the retry does not send them again.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from mns_consumer import __version__
from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.observe.redaction import redact_text
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import SinkConfig, SinkResult, compact_json, first_unseen, keys_digest
from mns_consumer.sinks.recent_keys import DEFAULT_CAPACITY, RecentKeys

USER_AGENT = f"mns-consumer/{__version__}"
REJECT_BODY_CHARS = 200  # how much of a rejecting answer goes into the rejection reason
PROBE_HEADER = "X-MNS-Consumer-Probe"  # value 1, on the empty batch `check-config --connect` sends
# Headers the sink sets itself, which `headers` may not override (lower case).
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "transfer-encoding", "x-timestamp", "x-signature", "idempotency-key"}
    | {PROBE_HEADER.lower()}
)
# 4xx that say "later" (408, 425, 429) or "wrong URL or credentials", which is not the receipts' fault.
_UNAVAILABLE_4XX = frozenset({401, 403, 404, 405, 407, 408, 425, 429})


class WebhookSinkConfig(SinkConfig):
    """``type: webhook``: POST signed JSON batches of receipts to an HTTP(S) endpoint."""

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
        """The sink ``sinks.<name>``, not opened yet."""
        return WebhookSink(name, self)


def sign_body(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """The ``X-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> bool:
    """Check ``X-Signature`` over the raw body and that ``X-Timestamp`` is fresh, as a receiver does."""
    try:
        signed_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - signed_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign_body(secret, timestamp, body), signature)


def idempotency_key(dedupe_keys: Sequence[str]) -> str:
    """One receipt's dedupe key, else the hex SHA-256 of the sorted keys joined with newlines."""
    return dedupe_keys[0] if len(dedupe_keys) == 1 else keys_digest(dedupe_keys)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay or HTTP date); None when absent or malformed."""
    text = (value or "").strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class WebhookSink:
    """Posts receipts to the configured endpoint (see ``docs/sinks.md`` for the wire format).

    One pooled, thread-safe HTTP client serves every write, so concurrent pollers may share the sink.
    Receipts among the last ``dedupe_window`` keys sent are reported accepted without being sent again.
    """

    def __init__(self, name: str, config: WebhookSinkConfig) -> None:
        self.name = name
        self.config = config
        self._recent = RecentKeys(config.dedupe_window)
        self._client: httpx.Client | None = None
        url = httpx.URL(config.url)
        self._origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
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
        verify: ssl.SSLContext | bool = config.verify_tls
        if config.ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=config.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"sinks.{self.name}", "ca_file", f"cannot load {config.ca_file}: {exc}", "give a PEM bundle"
                ) from exc
        self._client = httpx.Client(
            headers={"User-Agent": USER_AGENT, **{k: v.get_secret_value() for k, v in config.headers.items()}},
            timeout=httpx.Timeout(
                connect=config.connect_timeout_seconds,
                read=config.read_timeout_seconds,
                write=config.read_timeout_seconds,
                pool=config.connect_timeout_seconds,
            ),
            verify=verify,
            # Proxy variables set for other tools must not silently reroute receipts (or break loopback).
            trust_env=config.use_env_proxy,
            # Following a redirect would hand the signed body and the static headers to another host.
            follow_redirects=False,
        )

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
        """POST the receipts not sent recently; copies of one receipt are sent once.

        Raises:
            SinkUnavailable: On a connection error, a timeout, or a status meaning "later" or "not
                here"; requests answered before it stay accepted.
            RuntimeError: If the sink was not opened.
        """
        client = self._client
        if client is None:
            raise RuntimeError(f"webhook sink {self.name!r} is not open")
        # Requests go out in batch order, so a receiver sees receipts roughly as MNS delivered them.
        unique, fresh = first_unseen(batch, self._recent)
        rejected: dict[str, str] = {}
        size = 1 if self.config.one_per_request else self.config.max_batch
        for start in range(0, len(fresh), size):
            receipts = fresh[start : start + size]
            keys = [receipt.dedupe_key for receipt in receipts]
            rejection = self._post(client, receipts, keys)
            if rejection is None:
                # Remembered at once, so a retry after a later request fails does not resend these.
                self._recent.add_all(keys)
            else:
                rejected.update(dict.fromkeys(keys, rejection))
        return SinkResult(accepted=unique.difference(rejected), rejected=rejected)

    def _post(self, client: httpx.Client, receipts: Sequence[Receipt], keys: Sequence[str]) -> str | None:
        """Send one request; None when it was accepted, else the rejection reason."""
        body = compact_json({"receipts": [receipt.to_json_dict() for receipt in receipts]}).encode("utf-8")
        response = self._send(client, body, idempotency_key(keys))
        status = response.status_code
        if 200 <= status < 300:
            return None
        if _unavailable(status):
            raise SinkUnavailable(
                self.name,
                f"HTTP {status} from {self._origin}",
                retry_after_seconds=parse_retry_after(response.headers.get("Retry-After")),
            )
        return f"HTTP {status}: {self._snippet(response.text)}"

    def _send(self, client: httpx.Client, body: bytes, key: str, **extra_headers: str) -> httpx.Response:
        # Signed per attempt, not per batch: receivers refuse stale timestamps, and retries can be late.
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Timestamp": timestamp, "Idempotency-Key": key}
        headers.update(extra_headers)
        if self.config.secret is not None:
            headers["X-Signature"] = sign_body(self.config.secret.get_secret_value(), timestamp, body)
        try:
            return client.post(self.config.url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise SinkUnavailable(
                self.name, redact_text(f"{type(exc).__name__} posting to {self._origin}: {exc}", self._secrets)
            ) from exc

    def probe(self) -> str:
        """POST one signed empty batch with ``X-MNS-Consumer-Probe: 1`` (``check-config --connect``).

        A real request proves the whole path a batch takes (DNS, TLS, proxies, URL, headers, signature).
        A 4xx that judges the body passes: the receiver was reached.

        Raises:
            SinkUnavailable: On what makes ``write`` report the sink unavailable.
            ConfigError: If ``ca_file`` cannot be loaded.
        """
        self.open()
        try:
            assert self._client is not None  # noqa: S101  (just opened)
            response = self._send(self._client, b'{"receipts":[]}', idempotency_key([]), **{PROBE_HEADER: "1"})
        finally:
            self.close()
        status = response.status_code
        if _unavailable(status):
            raise SinkUnavailable(self.name, f"HTTP {status} from {self._origin} to the probe request")
        if 200 <= status < 300:
            return f"HTTP {status} from {self._origin}: the receiver took the empty probe batch"
        return (
            f"HTTP {status} from {self._origin}: reachable, but the receiver refused the empty probe batch "
            f"({self._snippet(response.text)}); it should answer 2xx to {PROBE_HEADER}: 1"
        )

    def _snippet(self, text: str) -> str:
        # A receiver may echo the request back: our secrets and the receipts' phone numbers must not
        # reach logs and dead letters. Redacted before the cut, so no secret is left half masked.
        return redact_text(" ".join(text.split()), self._secrets)[:REJECT_BODY_CHARS]

    def close(self) -> None:
        """Close the HTTP client and its pooled connections."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _unavailable(status: int) -> bool:
    """Whether a non-2xx status says "later" or "not here" rather than judging the receipts."""
    return status < 200 or 300 <= status < 400 or status >= 500 or status in _UNAVAILABLE_4XX


__all__ = [
    "PROBE_HEADER",
    "WebhookSink",
    "WebhookSinkConfig",
    "idempotency_key",
    "parse_retry_after",
    "sign_body",
    "verify_signature",
]
