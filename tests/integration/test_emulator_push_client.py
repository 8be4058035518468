"""The HTTP push simulator against a real local receiver: batching, Alibaba's success rule, retries, drops."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mns_consumer.emulator.push_client import PushAttempt, push_receipts
from mns_consumer.emulator.tls import generate_tls_material
from mns_consumer.errors import EmulatorError

FAST_RETRIES = (0.01, 0.02, 0.03)
ACCEPTED = json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False).encode()


@dataclass(frozen=True)
class Answer:
    """What the receiver answers to one request."""

    status: int = 200
    body: bytes = ACCEPTED
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class Request:
    """What the receiver recorded of one request."""

    path: str
    content_type: str
    body: bytes

    @property
    def items(self) -> list[dict[str, Any]]:
        """The JSON array the request carried."""
        parsed = json.loads(self.body.decode("utf-8"))
        assert isinstance(parsed, list)
        return parsed


@dataclass
class Receiver:
    """A local push receiver that records requests and answers from a script, then with code 0."""

    url: str = ""
    script: list[Answer] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_next(self, request: Request) -> Answer:
        """Record ``request`` and pop the answer it gets."""
        with self.lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else Answer()


@contextlib.contextmanager
def _serve(receiver: Receiver, server_factory: Any = ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    """Run an HTTP server for ``receiver`` on 127.0.0.1:0 in a thread for the ``with`` block."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = Request(self.path, self.headers.get("Content-Type", ""), self.rfile.read(length))
            answer = receiver.answer_next(request)
            if answer.delay_seconds:
                # Released at teardown, so no handler outlives the test.
                receiver.release.wait(answer.delay_seconds)
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except OSError:
                # The client gave up (timeout) before the late answer was written.
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    server = server_factory(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A plain-HTTP receiver listening on a secret-looking path."""
    recorded = Receiver()
    with _serve(recorded) as server:
        recorded.url = f"http://127.0.0.1:{server.server_address[1]}/alicom/smsreport/s3cret"
        yield recorded


def sms_report(number: int) -> dict[str, Any]:
    """An SmsReport receipt as Alibaba pushes it (reference 4.1)."""
    return {
        "phone_number": f"1390000{number:04d}",
        "send_time": "2024-05-01 10:00:00",
        "report_time": "2024-05-01 10:00:04",
        "success": True,
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功",
        "sms_size": "1",
        "biz_id": f"81234567890123{number:04d}^0",
        "out_id": f"order-{number}",
    }


def sign_report(number: int) -> dict[str, Any]:
    """A SignSmsReport as the HTTP push carries it (reference 4.3)."""
    return {
        "sign_name": f"Sign{number}",
        "sign_status": "approved",
        "reason": "",
        "sign_source": "enterprise",
        "sign_scene": "general",
        "remark": "",
        "create_date": "2024-05-01 09:00:00",
        "orderId": f"200{number}",
    }


def test_sms_reports_are_posted_as_utf8_json_arrays_of_at_most_batch_size(receiver: Receiver) -> None:
    """250 SmsReport receipts go out as three arrays of 100, 100 and 50, all accepted."""
    receipts = [sms_report(n) for n in range(250)]

    report = push_receipts(receiver.url, receipts, message_type="SmsReport", batch_size=100)

    assert [len(request.items) for request in receiver.requests] == [100, 100, 50]
    assert [item for request in receiver.requests for item in request.items] == receipts
    assert {request.content_type for request in receiver.requests} == {"application/json;charset=utf-8"}
    assert {request.path for request in receiver.requests} == {"/alicom/smsreport/s3cret"}
    assert "用户接收成功".encode() in receiver.requests[0].body
    assert (report.batches, report.receipts, report.accepted_receipts) == (3, 250, 250)
    assert (report.refused_receipts, report.dropped_receipts, report.abandoned_receipts) == (0, 0, 0)
    assert [(a.batch_index, a.attempt, a.status_code, a.outcome) for a in report.attempts] == [
        (0, 1, 200, "accepted"),
        (1, 1, 200, "accepted"),
        (2, 1, 200, "accepted"),
    ]


def test_sign_reports_are_posted_one_per_request_whatever_the_batch_size(receiver: Receiver) -> None:
    """SignSmsReport carries exactly one item per POST, as Alibaba sends it."""
    receipts = [sign_report(n) for n in range(3)]

    report = push_receipts(receiver.url, receipts, message_type="SignSmsReport", batch_size=100)

    assert [request.items for request in receiver.requests] == [[receipt] for receipt in receipts]
    assert (report.batches, report.accepted_receipts) == (3, 3)


def test_a_500_is_retried_and_the_retry_accepted(receiver: Receiver) -> None:
    """A failed batch is POSTed again after the first delay and counts as accepted once answered 200."""
    receiver.script = [Answer(status=500, body=b'{"code": 0}')]
    seen: list[PushAttempt] = []

    report = push_receipts(
        receiver.url,
        [sms_report(1)],
        message_type="SmsReport",
        retry_delays_seconds=FAST_RETRIES,
        on_attempt=seen.append,
    )

    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    assert [(a.attempt, a.status_code, a.outcome, a.error) for a in report.attempts] == [
        (1, 500, "failed", "HTTP 500"),
        (2, 200, "accepted", ""),
    ]
    assert seen == report.attempts
    assert (report.accepted_receipts, report.dropped_receipts) == (1, 0)


def test_an_answer_slower_than_the_response_timeout_is_a_failure_and_retried(receiver: Receiver) -> None:
    """A receiver that answers after 1.5 s misses Alibaba's 0.7 s budget; the retry then succeeds."""
    receiver.script = [Answer(delay_seconds=1.5)]

    report = push_receipts(
        receiver.url,
        [sms_report(1), sms_report(2)],
        message_type="SmsReport",
        response_timeout_seconds=0.7,
        retry_delays_seconds=FAST_RETRIES,
    )

    assert len(receiver.requests) == 2
    first, second = report.attempts
    assert (first.outcome, first.status_code) == ("failed", None)
    assert "0.7 s" in first.error
    assert (second.attempt, second.outcome) == (2, "accepted")
    assert report.accepted_receipts == 2


@pytest.mark.parametrize(
    "body",
    [b"OK", b"", b'{"msg": "ok"}', b'{"code": "0"}', b'{"code": true}', b"[0]", b"<xml/>"],
)
def test_a_200_without_a_json_numeric_code_is_a_failure(receiver: Receiver, body: bytes) -> None:
    """Alibaba only counts a 200 whose JSON body has a numeric code; anything else is retried."""
    receiver.script = [Answer(body=body)]

    report = push_receipts(receiver.url, [sms_report(1)], message_type="SmsReport", retry_delays_seconds=FAST_RETRIES)

    assert [(a.status_code, a.outcome) for a in report.attempts] == [(200, "failed"), (200, "accepted")]
    assert "numeric" in report.attempts[0].error
    assert report.accepted_receipts == 1


def test_a_non_zero_code_counts_as_refused_and_is_not_retried(receiver: Receiver) -> None:
    """``{"code": 1}`` is delivered as far as Alibaba is concerned, but the receiver refused it."""
    receiver.script = [Answer(body=b'{"code": 1, "msg": "busy"}')]

    report = push_receipts(
        receiver.url, [sms_report(1), sms_report(2)], message_type="SmsReport", retry_delays_seconds=FAST_RETRIES
    )

    assert len(receiver.requests) == 1
    assert [(a.status_code, a.outcome, a.error) for a in report.attempts] == [(200, "refused", "")]
    assert (report.refused_receipts, report.accepted_receipts, report.dropped_receipts) == (2, 0, 0)


def test_a_batch_that_always_fails_is_dropped_after_every_retry(receiver: Receiver) -> None:
    """With three retry delays a batch is POSTed four times, then dropped; later batches still go."""
    receiver.script = [Answer(status=503, body=b"")] * 4

    report = push_receipts(
        receiver.url,
        [sms_report(n) for n in range(3)],
        message_type="SmsReport",
        batch_size=2,
        retry_delays_seconds=FAST_RETRIES,
    )

    assert len(receiver.requests) == 5
    assert [(a.batch_index, a.attempt, a.outcome) for a in report.attempts] == [
        (0, 1, "failed"),
        (0, 2, "failed"),
        (0, 3, "failed"),
        (0, 4, "failed"),
        (1, 1, "accepted"),
    ]
    assert (report.dropped_receipts, report.accepted_receipts) == (2, 1)
    assert "2 dropped" in report.summary()


def test_redeliver_posts_every_accepted_batch_twice(receiver: Receiver) -> None:
    """With redeliver on, each accepted batch is sent a second time to exercise idempotency."""
    receipts = [sms_report(n) for n in range(3)]

    report = push_receipts(receiver.url, receipts, message_type="SmsReport", batch_size=2, redeliver=True)

    bodies = [request.body for request in receiver.requests]
    assert len(bodies) == 4
    assert bodies[0] == bodies[1]
    assert bodies[2] == bodies[3]
    assert [(a.batch_index, a.redelivery) for a in report.attempts] == [(0, False), (0, True), (1, False), (1, True)]
    assert (report.accepted_receipts, report.redelivered) == (3, 3)


def test_setting_stop_interrupts_a_retry_wait_and_abandons_the_rest(receiver: Receiver) -> None:
    """A stop set during a long retry wait ends the push at once; undelivered receipts are abandoned."""
    # Given a receiver that fails the first POST and a retry scheduled far in the future
    receiver.script = [Answer(status=500)]
    stop = threading.Event()

    def stop_after_first_attempt(attempt: PushAttempt) -> None:
        stop.set()

    # When the push is stopped right after that first failure
    report = push_receipts(
        receiver.url,
        [sms_report(n) for n in range(3)],
        message_type="SmsReport",
        batch_size=2,
        retry_delays_seconds=(3600.0,),
        stop=stop,
        on_attempt=stop_after_first_attempt,
    )

    # Then nothing more is sent and every receipt is accounted as abandoned
    assert len(receiver.requests) == 1
    assert report.stopped
    assert (report.abandoned_receipts, report.accepted_receipts, report.dropped_receipts) == (3, 0, 0)
    assert "3 abandoned" in report.summary()


def test_a_push_stopped_before_it_starts_sends_nothing(receiver: Receiver) -> None:
    """An already set stop event means no POST at all."""
    stop = threading.Event()
    stop.set()

    report = push_receipts(receiver.url, [sms_report(1)], message_type="SmsReport", stop=stop)

    assert receiver.requests == []
    assert (report.stopped, report.abandoned_receipts, report.attempts) == (True, 1, [])


def test_a_closed_port_is_a_connection_failure_and_the_batch_dropped() -> None:
    """Connection refused counts as a failed attempt, with no status, like any other failure."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]

    report = push_receipts(
        f"http://127.0.0.1:{port}/push", [sms_report(1)], message_type="SmsReport", retry_delays_seconds=(0.01,)
    )

    assert [(a.status_code, a.outcome) for a in report.attempts] == [(None, "failed"), (None, "failed")]
    assert "ConnectError" in report.attempts[0].error
    assert report.dropped_receipts == 1


def test_summary_and_dict_carry_counts_but_no_phone_numbers_or_url_secret(receiver: Receiver) -> None:
    """The human summary and the JSON report never echo receipt contents or the receiver's path."""
    receiver.script = [Answer(status=500)]

    report = push_receipts(receiver.url, [sms_report(7)], message_type="SmsReport", retry_delays_seconds=(0.01,))
    exported = json.dumps(report.to_dict())

    for text in (report.summary(), exported):
        assert "13900000007" not in text
        assert "s3cret" not in text
    assert report.summary().startswith("Pushed 1 SmsReport receipt(s) in 1 batch(es) with 2 POST(s), 1 of them failed")
    assert report.to_dict()["attempts"][0]["status_code"] == 500


def test_https_receiver_is_trusted_through_a_ca_path_or_a_context(tmp_path: Path) -> None:
    """``verify`` takes the emulator's cert.pem path or a context; without either, TLS fails verification."""
    material = generate_tls_material(tmp_path / "tls")
    context = material.server_context()

    class TlsServer(ThreadingHTTPServer):
        def get_request(self) -> tuple[socket.socket, Any]:
            raw, address = super().get_request()
            return context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False), address

        def handle_error(self, request: Any, client_address: Any) -> None:
            """A client refusing the certificate aborts the handshake: expected here, so stay quiet."""

    with _serve(Receiver(), TlsServer) as server:
        url = f"https://localhost:{server.server_address[1]}/push"
        by_path = push_receipts(url, [sms_report(1)], message_type="SmsReport", verify=str(material.cert_path))
        by_context = push_receipts(url, [sms_report(2)], message_type="SmsReport", verify=material.client_context())
        untrusted = push_receipts(url, [sms_report(3)], message_type="SmsReport", retry_delays_seconds=())

    assert (by_path.accepted_receipts, by_context.accepted_receipts) == (1, 1)
    assert untrusted.dropped_receipts == 1
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.attempts[0].error


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("ftp://127.0.0.1/push", {}),
        ("http://127.0.0.1:1/push", {"batch_size": 0}),
        ("http://127.0.0.1:1/push", {"response_timeout_seconds": 0.0}),
        ("http://127.0.0.1:1/push", {"retry_delays_seconds": (1.0, -1.0)}),
        ("http://127.0.0.1:1/push", {"message_type": ""}),
    ],
)
def test_invalid_arguments_are_refused_before_anything_is_sent(url: str, options: dict[str, Any]) -> None:
    """Arguments no push could succeed with raise EmulatorError up front."""
    arguments: dict[str, Any] = {"message_type": "SmsReport", **options}

    with pytest.raises(EmulatorError):
        push_receipts(url, [sms_report(1)], **arguments)


def test_a_receipt_that_is_not_json_serialisable_is_refused_before_anything_is_sent(receiver: Receiver) -> None:
    """Serialisation happens for every batch before the first POST."""
    receipts = [sms_report(1), {"phone_number": object()}]

    with pytest.raises(EmulatorError, match="cannot be serialised"):
        push_receipts(receiver.url, receipts, message_type="SmsReport", batch_size=1)

    assert receiver.requests == []
