"""Helpers that drive the emulator with the real ``aliyun-mns-sdk`` and the real Dybaseapi Tea client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alibabacloud_dybaseapi20170525 import models as dybase_models
from alibabacloud_dybaseapi20170525.client import Client as DybaseClient
from alibabacloud_tea_openapi import models as open_api_models
from mns.account import Account
from mns.mns_client import RequestInternal
from mns.mns_exception import MNSServerException

from mns_consumer.emulator import Emulator

_last_status = threading.local()


def last_status() -> int:
    """The HTTP status of the latest MNS response received on this thread (the SDK does not expose it)."""
    return int(getattr(_last_status, "value", 0))


def _record_status(account: Account) -> Account:
    http = account.mns_client.http
    send = http.send_request

    def send_request(request: Any) -> Any:
        response = send(request)
        _last_status.value = response.status
        return response

    http.send_request = send_request
    return account


class Accounts:
    """Opens SDK accounts against one emulator and closes every connection they made."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._opened: list[Account] = []

    def master(self, **kwargs: Any) -> Account:
        """An account signed with the emulator's master AccessKey (or the keys given)."""
        settings = self.emulator.settings
        account = Account(
            kwargs.get("url", self.emulator.url),
            kwargs.get("access_id", settings.access_key_id),
            kwargs.get("access_key", settings.access_key_secret),
            kwargs.get("security_token", ""),
        )
        self._opened.append(account)
        return _record_status(account)

    def temporary(self, message_type: str, queue_name: str | None = None) -> tuple[Account, Any]:
        """An account using a queue token fetched with the real Dybaseapi client; returns it and the DTO."""
        dto = fetch_token(self.emulator, message_type, queue_name)
        account = Account(self.emulator.url, dto.access_key_id, dto.access_key_secret, dto.security_token)
        self._opened.append(account)
        return _record_status(account), dto

    def close(self) -> None:
        """Close every SDK connection opened here."""
        for account in self._opened:
            account.mns_client.close_connection()


def dybase_client(emulator: Emulator, **overrides: Any) -> DybaseClient:
    """The real Dybaseapi Tea client aimed at the emulator (reference 6.3)."""
    config = open_api_models.Config(
        access_key_id=overrides.pop("access_key_id", emulator.settings.access_key_id),
        access_key_secret=overrides.pop("access_key_secret", emulator.settings.access_key_secret),
        endpoint=emulator.endpoint,
        protocol=emulator.scheme,
        read_timeout=overrides.pop("read_timeout", 10000),
        connect_timeout=overrides.pop("connect_timeout", 5000),
        **overrides,
    )
    return DybaseClient(config)


def fetch_token(emulator: Emulator, message_type: str, queue_name: str | None = None) -> Any:
    """QueryTokenForMnsQueue through the real client; returns ``MessageTokenDTO``."""
    request = dybase_models.QueryTokenForMnsQueueRequest(
        message_type=message_type, queue_name=queue_name or emulator.queue_for(message_type)
    )
    response = dybase_client(emulator).query_token_for_mns_queue(request)
    assert response.body.code == "OK"
    return response.body.message_token_dto


def raw_request(account: Account, method: str, uri: str, data: bytes | str = "") -> tuple[int, str]:
    """Send a request the SDK's validators would not let through, still signed and sent by the SDK.

    Returns the HTTP status and the body; error statuses are decoded by the SDK and re-raised.
    """
    client = account.mns_client
    request = RequestInternal(method, uri)
    request.data = data.encode("utf-8") if isinstance(data, str) else data
    client.build_header(_NoRequestId(), request)
    response = client.http.send_request(request)
    _last_status.value = response.status
    if response.status >= 400:
        code, message, request_id, host_id, sub_errors = _decode_error(response.data)
        raise MNSServerException(code, message, request_id, host_id, sub_errors)
    return response.status, response.data


def request_with_date(account: Account, method: str, uri: str, date: str) -> None:
    """Send a request the SDK signs correctly but with a ``Date`` of the caller's choosing.

    Raises:
        MNSServerException: As decoded from the emulator's answer.
    """
    client = account.mns_client
    request = RequestInternal(method, uri)
    client.build_header(_NoRequestId(), request)
    request.header["date"] = date
    credential = client.credentials_provider.get_credentials()
    request.header["Authorization"] = client.get_signature(method, request.header, uri, credential)
    response = client.http.send_request(request)
    _last_status.value = response.status
    if response.status >= 400:
        raise MNSServerException(*_decode_error(response.data))


class _NoRequestId:
    request_id = None


def _decode_error(data: str) -> tuple[str, str, str, str, Any]:
    from mns.mns_xml_handler import ErrorDecoder

    result: tuple[str, str, str, str, Any] = ErrorDecoder.decodeError(data)
    return result


@contextmanager
def accounts_for(emulator: Emulator) -> Iterator[Accounts]:
    """Accounts against ``emulator``, closed on exit."""
    accounts = Accounts(emulator)
    try:
        yield accounts
    finally:
        accounts.close()
