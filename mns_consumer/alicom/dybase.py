"""QueryTokenForMnsQueue through Alibaba's own Tea client, ``alibabacloud_dybaseapi20170525``.

Importing this module loads the Tea SDK (with aiohttp, requests and the OpenAPI client: about 27 MB
resident), which is why the daemon calls it from a short-lived child process
(:mod:`mns_consumer.alicom.token_process`) unless ``tokens.child_process`` is false.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from alibabacloud_dybaseapi20170525 import models as dybase_models
from alibabacloud_dybaseapi20170525.client import Client as DybaseClient
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from Tea.exceptions import UnretryableException

from mns_consumer.alicom.credentials import AccessKeySource
from mns_consumer.alicom.endpoints import Endpoints
from mns_consumer.alicom.tea import (
    INVALID_RESPONSE,
    http_failure,
    refusal_of,
    request_id_of,
    tea_config,
    transport_failure,
)
from mns_consumer.alicom.tokens import QueueToken, parse_expire_time
from mns_consumer.errors import TokenError


class DybaseTokenFetcher:
    """QueryTokenForMnsQueue through the real Tea client (``alibabacloud_dybaseapi20170525``).

    Aimed explicitly, since the client's own resolution ignores the region (reference 2.1, pitfall 4),
    with the proxy :class:`~mns_consumer.alicom.endpoints.Endpoints` decided. No retries of its own:
    the :class:`TokenProvider` decides when to try again.
    """

    def __init__(
        self,
        credentials: AccessKeySource,
        endpoints: Endpoints,
        *,
        connect_timeout_seconds: float = 5,
        read_timeout_seconds: float = 10,
    ) -> None:
        self.endpoint = endpoints.dybaseapi
        self.credentials_description = credentials.describe()
        self._client = DybaseClient(
            tea_config(
                credentials,
                endpoints.dybaseapi,
                endpoints,
                connect_timeout_seconds=connect_timeout_seconds,
                read_timeout_seconds=read_timeout_seconds,
            )
        )

    def fetch(self, message_type: str, queue_name: str) -> QueueToken:
        """Call QueryTokenForMnsQueue once; the token's times are converted to UTC.

        Raises:
            TokenError: With Alibaba's code for an HTTP error (``SignatureDoesNotMatch``,
                ``InvalidAccessKeyId.NotFound``, ``Throttling``...) or for an HTTP 200 whose ``Code`` is
                not ``OK``; ``NetworkError`` when Dybaseapi cannot be reached or does not answer within
                the timeouts; ``CredentialsUnavailable`` when the default chain finds no AccessKey;
                ``InvalidResponse`` when the answer is not a complete token.
        """
        request = dybase_models.QueryTokenForMnsQueueRequest(message_type=message_type, queue_name=queue_name)
        try:
            response = self._client.query_token_for_mns_queue(request)
        except AlibabaCloudException as exc:
            failure = http_failure(exc)
            raise TokenError(failure.code, failure.text, request_id=failure.request_id) from exc
        except UnretryableException as exc:
            code, text = transport_failure(exc, "Dybaseapi", self.endpoint, self.credentials_description)
            raise TokenError(code, text) from exc
        except Exception as exc:
            # The generated models fail with whatever Python raises on an unexpected shape
            # (AttributeError, TypeError, KeyError); none of it may crash the caller.
            raise TokenError(INVALID_RESPONSE, f"unreadable answer ({type(exc).__name__})") from exc
        return _token_from(getattr(response, "body", None))


def _token_from(body: Any) -> QueueToken:
    """The token in a QueryTokenForMnsQueue answer body (``Any``: the Tea model is untyped).

    Raises:
        TokenError: The answer's own code when it is not ``OK`` (official helpers treat that as failure
            even on HTTP 200, reference 2.4); ``InvalidResponse`` when a field is missing or unreadable.
    """
    if body is None:
        raise TokenError(INVALID_RESPONSE, "the answer has no body")
    request_id = request_id_of(body)
    refusal = refusal_of(body)
    if refusal is not None:
        raise TokenError(*refusal, request_id=request_id)
    dto = body.message_token_dto
    if dto is None:
        raise TokenError(INVALID_RESPONSE, "Code is OK but MessageTokenDTO is missing", request_id=request_id)
    fields = {
        "AccessKeyId": dto.access_key_id,
        "AccessKeySecret": dto.access_key_secret,
        "SecurityToken": dto.security_token,
        "ExpireTime": dto.expire_time,
    }
    missing = [name for name, value in fields.items() if not isinstance(value, str) or not value]
    if missing:
        raise TokenError(INVALID_RESPONSE, f"MessageTokenDTO lacks {', '.join(missing)}", request_id=request_id)
    try:
        expires_at = parse_expire_time(dto.expire_time)
    except ValueError:
        raise TokenError(
            INVALID_RESPONSE, f"ExpireTime {dto.expire_time[:40]!r} is not yyyy-MM-dd HH:mm:ss", request_id=request_id
        ) from None
    token = QueueToken(dto.access_key_id, dto.access_key_secret, dto.security_token, expires_at)
    try:
        return dataclasses.replace(token, created_at=parse_expire_time(dto.create_time))
    except ValueError:
        return token
