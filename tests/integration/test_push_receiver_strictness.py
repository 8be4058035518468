"""The push receiver's HTTP framing, JSON strictness, request deadline and raw dead letters, over loopback.

Requests that a client library would never send (two ``Content-Length`` headers, non-ASCII digits, a
byte every so often) are written on raw sockets. Every wait is a hang guard, never a timing assertion.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mns_consumer.sinks.dead_letter import read_dead_letters
from tests.integration.test_push_receiver import SECRET, Running
from tests.support.receipts import pushed_receipts


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def make(**push: Any) -> Running:
        routes = [{"path": "/alicom/SmsReport", "secret": SECRET, "message_type": "SmsReport", "sinks": ["archive"]}]
        service = Running(tmp_path, {"archive": {"type": "file", "path": str(tmp_path / "a.jsonl")}}, routes, **push)
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()


def _exchange(service: Running, head: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send a hand-written request; return the status and JSON body of the answer (status 0: no answer)."""
    assert service.service.receiver is not None
    with socket.create_connection(("127.0.0.1", service.service.receiver.port), timeout=10) as connection:
        connection.sendall(head.encode("utf-8") + b"\r\n" + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer:
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in answer.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                if len(answer.split(b"\r\n\r\n", 1)[1]) >= length:
                    break
    if not answer:
        return 0, {}
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}")


def _head(*headers: str) -> str:
    lines = [f"POST /alicom/SmsReport/{SECRET} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    return "\r\n".join([*lines, *headers]) + "\r\n"


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (("Content-Length: 2", "Content-Length: 30"), b"[]"),
        (("Content-Length: 2", "Transfer-Encoding: chunked"), b"[]"),
        (("Transfer-Encoding: identity", "Content-Length: 2"), b"[]"),
        (("Content-Length: \u0662",), b"[]"),
        (("Content-Length: \u00b2",), b"[]"),
        (("Content-Length: +2",), b"[]"),
    ],
    ids=["two-lengths", "chunked-and-length", "identity-and-length", "arabic-indic-digit", "superscript", "signed"],
)
def test_ambiguous_or_non_ascii_framing_is_refused_with_400_and_nothing_is_spooled(
    running: Callable[..., Running], headers: tuple[str, ...], body: bytes
) -> None:
    """Two different lengths, a length beside Transfer-Encoding, and non-ASCII digits: 400, never a crash."""
    service = running()
    status, answer = _exchange(service, _head(*headers), body)
    assert status == 400
    assert answer["code"] == 400
    assert service.service.spool.depth() == 0


def test_the_same_content_length_twice_is_accepted(running: Callable[..., Running]) -> None:
    """Identical repeated lengths are unambiguous (RFC 9112 6.3) and stay accepted."""
    service = running()
    status, answer = _exchange(service, _head("Content-Length: 2", "Content-Length: 2"), b"[]")
    assert (status, answer["code"]) == (200, 0)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_push_holding_nan_or_infinity_is_refused_before_it_is_spooled(
    running: Callable[..., Running], constant: str
) -> None:
    """Such a push gets 400 and a non-zero code, so Alibaba keeps its good receipts instead of one dead letter."""
    service = running()
    good = json.dumps(pushed_receipts("SmsReport", 99, seed=5))
    body = (good[:-1] + ', {"phone_number": "13900001111", "send_time": ' + constant + "}]").encode()
    answer = httpx.post(service.url(), content=body, headers={"Content-Type": "application/json"}, trust_env=False)
    assert answer.status_code == 400
    assert answer.json()["code"] == 400
    assert service.service.spool.depth() == 0
    assert list(read_dead_letters(service.dead_letter_path)) == []


def test_a_client_sending_a_byte_now_and_then_is_closed_at_the_request_deadline(
    running: Callable[..., Running],
) -> None:
    """The deadline covers the whole request: a byte every 0.2 s does not keep a 1 s request alive."""
    service = running(read_timeout_seconds=1.0)
    assert service.service.receiver is not None
    connection = socket.create_connection(("127.0.0.1", service.service.receiver.port), timeout=10)
    closed_after: float | None = None
    started = time.monotonic()
    try:
        connection.sendall(_head("Content-Length: 2", "X-Slow: ").encode())
        connection.settimeout(0.2)
        while time.monotonic() - started < 20:
            try:
                if connection.recv(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                connection.sendall(b"a")
            except ConnectionError:
                closed_after = time.monotonic() - started
                break
    finally:
        connection.close()
    assert closed_after is not None, "hang guard: the dripping connection was still open after 20 s"


def test_dead_letters_hold_each_element_as_sent_and_replay_reproduces_it(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    """1e400, a lone surrogate escape and odd spacing survive into dead letters and through `dead-letters replay`."""
    service = running()
    good = json.dumps(pushed_receipts("SmsReport", 2, seed=5)[0])
    bad = [
        '{"phone_number" : "13900001111",  "send_time": 1e400}',
        '{"phone_number":"13900001112","err_msg":"\\ud800"}',
        '{ "no": "receipt" }',
    ]
    body = ("[" + good + ",\n " + " , ".join(bad) + " ]").encode()

    answer = httpx.post(service.url(), content=body, headers={"Content-Type": "application/json"}, trust_env=False)
    service.wait_spool_empty()
    assert answer.json() == {"code": 0, "msg": "接收成功"}
    letters = list(read_dead_letters(service.dead_letter_path))
    assert [letter.raw for letter in letters] == [text.encode() for text in bad]

    config = tmp_path / "replay.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sinks": {"archive": {"type": "file", "path": str(tmp_path / "a.jsonl")}},
                "dead_letter": {"type": "file", "path": str(tmp_path / "unused.jsonl")},
                "push": {
                    "listen": "127.0.0.1:0",
                    "spool_path": str(tmp_path / "replay-spool.db"),
                    "routes": [
                        {
                            "path": "/alicom/SmsReport",
                            "secret": SECRET,
                            "message_type": "SmsReport",
                            "sinks": ["archive"],
                        }
                    ],
                },
            }
        ),
        encoding="utf-8",
    )
    left = tmp_path / "left.jsonl"
    replayed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mns_consumer",
            "dead-letters",
            "replay",
            str(service.dead_letter_path),
            "--config",
            str(config),
            "--remaining",
            str(left),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert replayed.returncode == 1, replayed.stderr.decode(errors="replace")
    assert [letter.raw for letter in read_dead_letters(left)] == [text.encode() for text in bad]


@pytest.mark.parametrize(
    ("head", "body"),
    [
        (f"GET /alicom/SmsReport/{SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\n", b""),
        (f"POST /alicom/SmsReport/{SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n", b""),
        (f"POST /alicom/SmsReport/{SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\n", b""),
    ],
    ids=["get", "empty-post", "post-without-length"],
)
def test_the_console_url_check_is_answered_success_and_stores_nothing(
    running: Callable[..., Running], head: str, body: bytes
) -> None:
    """Alibaba's console checks a callback URL with a GET expecting {"code":0,"msg":"成功"}; an empty POST too."""
    service = running()
    status, answer = _exchange(service, head, body)
    assert (status, answer) == (200, {"code": 0, "msg": "成功"})
    assert service.service.spool.depth() == 0
    assert service.metric("mns_consumer_push_requests_total", queue="push:SmsReport", message_type="SmsReport") == 0
