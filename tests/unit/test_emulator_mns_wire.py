"""MNS wire details of the emulator that need no server: signing, Content-MD5, query parsing, routing."""

from __future__ import annotations

import pytest

from mns_consumer.emulator.mns_api import parse_query, route
from mns_consumer.emulator.mns_auth import content_md5, sign, string_to_sign
from mns_consumer.emulator.queues import MnsFault


def test_signature_matches_the_captured_sdk_example() -> None:
    """The canonical string and HMAC-SHA1 reproduce reference 3.2's worked example 1 byte for byte."""
    headers = {"date": "Sun, 22 Nov 2026 01:29:21 GMT", "x-mns-version": "2015-06-06", "host": "h"}
    text = string_to_sign("GET", headers, "/queues/Alicom-Queue-123-SmsReport/messages?waitseconds=30")
    assert text == (
        "GET\n\n\nSun, 22 Nov 2026 01:29:21 GMT\nx-mns-version:2015-06-06\n"
        "/queues/Alicom-Queue-123-SmsReport/messages?waitseconds=30"
    )
    assert sign("secret", text) == "anI2+3rReLVOPf0c6FCKEMm3fVg="


def test_content_md5_is_base64_of_the_hex_digest_as_the_sdk_sends_it() -> None:
    """Content-MD5 is base64 of the lower-case hex MD5 string (reference 3.1, worked example 2)."""
    body = (
        b'<?xml version="1.0" encoding="utf-8"?><Message xmlns="http://mns.aliyuncs.com/doc/v1/">'
        b"<MessageBody>eyJhIjoxfQ==</MessageBody></Message>"
    )
    assert content_md5(body) == "OGUyYjFkYmVmZDFhMTExZGUyNGNjZTIzOWM5Y2E2ZjA="


def test_x_mns_date_replaces_date_and_every_x_mns_header_is_signed_in_order() -> None:
    """x-mns-date stands in for Date, and x-mns-* headers are signed sorted by name."""
    headers = {
        "date": "ignored",
        "x-mns-date": "Sun, 22 Nov 2026 01:29:21 GMT",
        "x-mns-version": "2015-06-06",
        "x-mns-user-request-id": "abc",
        "content-type": "text/xml;charset=UTF-8",
        "content-md5": "MD5",
    }
    assert string_to_sign("POST", headers, "/queues/q/messages") == (
        "POST\nMD5\ntext/xml;charset=UTF-8\nSun, 22 Nov 2026 01:29:21 GMT\n"
        "x-mns-date:Sun, 22 Nov 2026 01:29:21 GMT\nx-mns-user-request-id:abc\nx-mns-version:2015-06-06\n"
        "/queues/q/messages"
    )


def test_query_parsing_keeps_plus_signs_in_raw_receipt_handles() -> None:
    """A raw '+' in a handle stays a '+', and percent-escapes from encoding clients are decoded."""
    assert parse_query("ReceiptHandle=1-ab+c/d==&x=1") == {"ReceiptHandle": "1-ab+c/d==", "x": "1"}
    assert parse_query("ReceiptHandle=1-ab%2Bc%2Fd%3D%3D") == {"ReceiptHandle": "1-ab+c/d=="}


@pytest.mark.parametrize(
    ("method", "target", "body", "operation"),
    [
        ("GET", "/queues/q", b"", "GetQueueAttributes"),
        ("PUT", "/queues/q", b"", "CreateQueue"),
        ("PUT", "/queues/q?metaoverride=true", b"", "SetQueueAttributes"),
        ("DELETE", "/queues/q", b"", "DeleteQueue"),
        ("GET", "/queues/q/messages", b"", "ReceiveMessage"),
        ("GET", "/queues/q/messages?waitseconds=30", b"", "ReceiveMessage"),
        ("GET", "/queues/q/messages?numOfMessages=16&waitseconds=30", b"", "BatchReceiveMessage"),
        ("GET", "/queues/q/messages?peekonly=true", b"", "PeekMessage"),
        ("GET", "/queues/q/messages?peekonly=true&numOfMessages=3", b"", "BatchPeekMessage"),
        ("POST", "/queues/q/messages", b"<Message/>", "SendMessage"),
        ("POST", "/queues/q/messages", b"<?xml?><Messages/>", "BatchSendMessage"),
        ("DELETE", "/queues/q/messages?ReceiptHandle=h", b"", "DeleteMessage"),
        ("DELETE", "/queues/q/messages?receiptHandle=h", b"", "DeleteMessage"),
        ("DELETE", "/queues/q/messages", b"<ReceiptHandles/>", "BatchDeleteMessage"),
        ("PUT", "/queues/q/messages?ReceiptHandle=h&VisibilityTimeout=5", b"", "ChangeMessageVisibility"),
    ],
)
def test_requests_route_to_the_operation_the_sdk_means(method: str, target: str, body: bytes, operation: str) -> None:
    """Each SDK request shape (reference 8.6) routes to its operation and queue."""
    request = route(method, target, body)
    assert (request.operation, request.queue) == (operation, "q")


def test_unknown_paths_are_invalid_request_url() -> None:
    """A path MNS does not serve is 400 InvalidRequestURL."""
    with pytest.raises(MnsFault) as caught:
        route("GET", "/topics/t", b"")
    assert (caught.value.code, caught.value.status) == ("InvalidRequestURL", 400)
