"""What every Tea (POP RPC) client of the package shares: how it is aimed and how its failures are worded.

Dybaseapi (:mod:`~mns_consumer.alicom.tokens`) and Dysmsapi (:mod:`~mns_consumer.alicom.send_details`)
clients are built the same way, from an :class:`~mns_consumer.alicom.endpoints.Endpoints` and an
:data:`~mns_consumer.alicom.credentials.AccessKeySource`, with explicit timeouts and no SDK retries (the
callers decide when to try again). Their errors are worded by the same functions, which keep secrets
out: Alibaba echoes its string-to-sign after ``SignatureDoesNotMatch``, and a V1-signed URL carries the
signature and security token in its query string (reference 2.3, 6.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alibabacloud_credentials.exceptions import CredentialException
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException
from Tea.exceptions import UnretryableException

from mns_consumer.alicom.credentials import AccessKeySource
from mns_consumer.alicom.endpoints import Endpoints
from mns_consumer.alicom.pop_text import safe_text
from mns_consumer.alicom.tokens import CREDENTIALS_UNAVAILABLE, NETWORK_ERROR


def tea_config(
    credentials: AccessKeySource,
    host: str,
    endpoints: Endpoints,
    *,
    connect_timeout_seconds: float,
    read_timeout_seconds: float,
) -> open_api_models.Config:
    """The ``Config`` of a Tea client aimed at ``host`` (reference 6.3).

    Args:
        host: ``host[:port]`` of the API (``endpoints.dybaseapi`` or ``endpoints.dysmsapi``); it becomes
            the Host header, so it never carries a scheme.
        endpoints: ``protocol``, ``ca_file`` and the proxy settings are used.
    """
    # The Tea transport has no NO_PROXY rule of its own and falls back to HTTP(S)_PROXY when given
    # none, so a host NO_PROXY exempts is reached directly only where those variables are unset: the
    # token child process runs without them (token_process.py).
    proxy = endpoints.proxy_for(host)
    return open_api_models.Config(
        endpoint=host,
        protocol=endpoints.protocol,
        ca=endpoints.ca_file,
        http_proxy=proxy,
        https_proxy=proxy,
        # The Tea client takes milliseconds.
        connect_timeout=max(1, round(connect_timeout_seconds * 1000)),
        read_timeout=max(1, round(read_timeout_seconds * 1000)),
        **credentials.tea_config_fields(),
    )


INVALID_RESPONSE = "InvalidResponse"
"""The code of an answer that is not what its API documents (here: one without a readable ``Code``)."""


def request_id_of(body: Any) -> str | None:
    """The ``RequestId`` of a Tea answer body (``Any``: the models are untyped), if it has one."""
    request_id = getattr(body, "request_id", None)
    return request_id if isinstance(request_id, str) and request_id else None


def refusal_of(body: Any) -> tuple[str, str] | None:
    """``(Code, Message)`` of an answer body whose ``Code`` is not ``OK``, the message scrubbed; None when OK.

    POP APIs report some refusals with HTTP 200 and a code (reference 2.4, 6.2); a missing code reads
    as ``InvalidResponse``.
    """
    if body.code == "OK":
        return None
    code = body.code if isinstance(body.code, str) and body.code else INVALID_RESPONSE
    return code, safe_text(body.message) if body.message else "Code is not OK"


@dataclass(frozen=True)
class HttpFailure:
    """An HTTP 4xx/5xx answer of a Tea client, in log-safe words.

    Attributes:
        code: Alibaba's ``Code`` (``SignatureDoesNotMatch``, ``Throttling.User``...) or ``HTTP<status>``.
        text: ``HTTP <status>: <Message>``, scrubbed, with the retry-after delay when throttled.
        retry_after_seconds: The delay a throttling answer asked for, if any.
    """

    status: int
    code: str
    text: str
    request_id: str | None
    retry_after_seconds: float | None


def http_failure(exc: AlibabaCloudException) -> HttpFailure:
    """Describe the Tea SDK's ClientException, ServerException or ThrottlingException."""
    data = exc.data if isinstance(exc.data, dict) else {}
    code = str(exc.code) if exc.code not in (None, "", "None") else f"HTTP{exc.status_code}"
    message = data.get("Message") or data.get("message") or exc.message or "no message"
    text = f"HTTP {exc.status_code}: {safe_text(message)}"
    retry_after: float | None = None
    if isinstance(exc, ThrottlingException) and exc.retry_after:
        retry_after = float(exc.retry_after)
        text += f" (retry after {exc.retry_after} s)"
    request_id = exc.request_id if exc.request_id not in (None, "", "None") else None
    status = exc.status_code if isinstance(exc.status_code, int) else 0
    return HttpFailure(status, code, text, request_id, retry_after)


def transport_failure(exc: UnretryableException, api: str, endpoint: str, credentials: str) -> tuple[str, str]:
    """``(code, text)`` of a Tea call that got no usable HTTP answer (the cause is ``inner_exception``).

    ``CredentialsUnavailable``: the default chain (``credentials`` describes it) found no AccessKey;
    ``InvalidResponse``: the answer was not JSON (a proxy's or load balancer's error page);
    ``NetworkError``: a connect, read, TLS or proxy failure, timeouts included.
    """
    inner = exc.inner_exception
    if isinstance(inner, CredentialException):
        return CREDENTIALS_UNAVAILABLE, f"the {credentials} found no AccessKey: {safe_text(inner)}"
    if isinstance(inner, ValueError):
        return INVALID_RESPONSE, f"{api} at {endpoint} answered something that is not JSON"
    # darabonba's RetryError keeps the requests error text in .message; its str() is a dict.
    message = getattr(inner, "message", None)
    detail = safe_text(message if isinstance(message, str) else inner)
    if "proxy" in detail.lower():
        detail += " (through a proxy: see endpoints.proxy, HTTP(S)_PROXY and NO_PROXY)"
    return NETWORK_ERROR, f"cannot reach {api} at {endpoint}: {detail}"
