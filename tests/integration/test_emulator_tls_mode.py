"""The emulator's HTTPS mode, with the real SDKs trusting its self-signed certificate."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest
from alibabacloud_dybaseapi20170525 import models as dybase_models
from mns.account import Account
from mns.mns_exception import MNSClientNetworkException
from mns.queue import Message

from mns_consumer.emulator import Emulator
from tests.integration.mns_helpers import dybase_client

QUEUE = "Alicom-Queue-i1-SmsReport"


@pytest.fixture
def tls_emulator(make_emulator: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """An HTTPS emulator whose certificate this process trusts (the MNS SDK uses the default context)."""
    emulator = make_emulator(tls=True)
    assert emulator.tls is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(emulator.tls.cert_path))
    return emulator


def test_mns_sdk_talks_to_the_emulator_over_https(tls_emulator: Emulator) -> None:
    """Send, receive and delete work over TLS with certificate verification on."""
    assert tls_emulator.url.startswith("https://")
    account = Account(tls_emulator.url, tls_emulator.settings.access_key_id, tls_emulator.settings.access_key_secret)
    try:
        queue = account.get_queue(QUEUE)
        queue.send_message(Message(json.dumps({"n": 1})))
        message = queue.receive_message(0)
        assert json.loads(message.message_body) == {"n": 1}
        queue.delete_message(message.receipt_handle)
    finally:
        account.mns_client.close_connection()


def test_tea_client_fetches_a_token_over_https_with_the_emulator_ca(tls_emulator: Emulator) -> None:
    """QueryTokenForMnsQueue works over TLS when the Tea client is given the emulator's CA file."""
    assert tls_emulator.tls is not None
    client = dybase_client(tls_emulator, ca=str(tls_emulator.tls.cert_path))
    request = dybase_models.QueryTokenForMnsQueueRequest(message_type="SmsReport", queue_name=QUEUE)
    assert client.query_token_for_mns_queue(request).body.code == "OK"


def test_hanging_https_peer_is_only_escaped_with_a_socket_timeout(tls_emulator: Emulator) -> None:
    """The SDK's HTTPS connection has no timeout of its own (pitfall 9); a timeout set on it recovers."""
    tls_emulator.add_fault(kind="hang", operation="ReceiveMessage", times=1, seconds=30)
    account = Account(tls_emulator.url, tls_emulator.settings.access_key_id, tls_emulator.settings.access_key_secret)
    try:
        # The SDK builds HTTPS connections with the global default: no timeout unless the process sets one.
        assert account.mns_client.http.conn.timeout is socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
        account.mns_client.http.conn.timeout = 1  # read at connect time, as the daemon will do
        with pytest.raises(MNSClientNetworkException) as caught:
            account.get_queue(QUEUE).receive_message(0)
        assert "timed out" in str(caught.value.message)
    finally:
        account.mns_client.close_connection()
