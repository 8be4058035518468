"""The webhook sink against a real local HTTP(S) receiver: wire format, signature, outcomes, TLS, secrets."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from mns_consumer import __version__
from mns_consumer.delivery import Dispatcher, Item
from mns_consumer.emulator.tls import generate_tls_material
from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.observe.events import Events
from mns_consumer.sinks.base import SinkResult, parse_sink_config, sink_config_class
from mns_consumer.sinks.dead_letter import DeadLetterSinkConfig, read_dead_letters
from mns_consumer.sinks.webhook import WebhookSink, WebhookSinkConfig, parse_retry_after
from tests.support.receipts import make_batch, make_receipt
from tests.support.sink_env_webhook import REJECT_PHONE, SECRET, ScriptedReply, WebhookReceiver

MakeSink = Callable[..., WebhookSink]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A started plain-HTTP receiver checking signatures with :data:`SECRET`."""
    started = WebhookReceiver().start()
    yield started
    started.stop()


@pytest.fixture
def make_sink(receiver: WebhookReceiver) -> Iterator[MakeSink]:
    """A factory of opened webhook sinks (batch mode unless overridden); closes what it made."""
    made: list[WebhookSink] = []

    def make(**overrides: Any) -> WebhookSink:
        settings: dict[str, Any] = {"url": receiver.url, "secret": SECRET, "read_timeout_seconds": 5}
        sink = WebhookSinkConfig.model_validate({**settings, **overrides}).build("hook")
        sink.open()
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


def test_the_signature_verifies_with_the_documented_recipe(receiver: WebhookReceiver, make_sink: MakeSink) -> None:
    """X-Signature is sha256= hex HMAC-SHA256(secret, timestamp + "." + raw body), with a current timestamp."""
    make_sink().write(make_batch(2))
    request = receiver.requests[0]
    timestamp = request.headers["X-Timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Signature"] == f"sha256={expected}"
    assert abs(time.time() - int(timestamp)) < 300


def test_the_body_is_a_receipts_envelope_with_json_headers(receiver: WebhookReceiver, make_sink: MakeSink) -> None:
    """The body is {"receipts": [to_json_dict()...]} sent as application/json by mns-consumer/<version>."""
    batch = make_batch(3)
    make_sink().write(batch)
    request = receiver.requests[0]
    assert request.json() == {"receipts": [receipt.to_json_dict() for receipt in batch]}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"mns-consumer/{__version__}"


def test_one_receipt_per_request_mode_uses_the_same_envelope(receiver: WebhookReceiver, make_sink: MakeSink) -> None:
    """With one_per_request each request carries a one-element envelope keyed by the receipt's dedupe key."""
    batch = make_batch(2)
    make_sink(one_per_request=True).write(batch)
    assert [request.json() for request in receiver.requests] == [{"receipts": [r.to_json_dict()]} for r in batch]
    assert [request.headers["Idempotency-Key"] for request in receiver.requests] == [r.dedupe_key for r in batch]


def test_the_idempotency_key_of_a_batch_is_the_hash_of_its_sorted_dedupe_keys(
    receiver: WebhookReceiver, make_sink: MakeSink
) -> None:
    """A batch's Idempotency-Key is sha256 of its dedupe keys sorted and joined by newlines, whatever the order."""
    batch = make_batch(4)
    make_sink().write(batch)
    make_sink().write(list(reversed(batch)))
    expected = hashlib.sha256("\n".join(sorted(r.dedupe_key for r in batch)).encode()).hexdigest()
    assert [request.headers["Idempotency-Key"] for request in receiver.requests] == [expected, expected]


def test_requests_are_unsigned_without_a_secret(make_sink: MakeSink, receiver: WebhookReceiver) -> None:
    """With no secret configured there is no X-Signature header."""
    receiver.secret = None
    make_sink(secret=None).write(make_batch(1))
    assert "X-Signature" not in receiver.requests[0].headers


def test_a_2xx_answer_accepts_every_receipt(receiver: WebhookReceiver, make_sink: MakeSink) -> None:
    """Any 2xx, here 204 No Content, means the receiver took the request."""
    receiver.script.append(ScriptedReply(204))
    batch = make_batch(3)
    assert make_sink().write(batch) == SinkResult.accept_all(batch)


def test_a_4xx_answer_rejects_every_receipt_of_the_request_with_its_status_and_body(
    receiver: WebhookReceiver, make_sink: MakeSink
) -> None:
    """In batch mode a 422 rejects the whole request; the reason is the status and 200 characters of body."""
    receiver.script.append(ScriptedReply(422, body=b"invalid receipt: " + b"x" * 300))
    batch = make_batch(3)
    result = make_sink().write(batch)
    assert result.accepted == frozenset()
    assert result.rejected == dict.fromkeys((r.dedupe_key for r in batch), "HTTP 422: invalid receipt: " + "x" * 183)


def test_a_rejection_reason_never_repeats_a_secret_the_receiver_echoed(
    receiver: WebhookReceiver, make_sink: MakeSink
) -> None:
    """A receiver echoing our headers in its error body does not leak them into dead letters."""
    receiver.script.append(ScriptedReply(400, body=b"bad request with Authorization: Bearer s3cr3t-token"))
    result = make_sink(headers={"Authorization": "Bearer s3cr3t-token"}).write(make_batch(1))
    (reason,) = result.rejected.values()
    assert "s3cr3t-token" not in reason
    assert reason == "HTTP 400: bad request with Authorization: **********"


def test_a_header_credential_echoed_without_its_scheme_and_in_another_case_is_masked(
    receiver: WebhookReceiver, make_sink: MakeSink
) -> None:
    """An Authorization header's token, echoed bare and lower-cased, is masked in the rejection reason."""
    receiver.script.append(ScriptedReply(422, body=b"token tok-abcd-1234 has expired"))
    result = make_sink(headers={"Authorization": "Bearer Tok-AbCd-1234"}).write(make_batch(1))
    assert list(result.rejected.values()) == ["HTTP 422: token ********** has expired"]


def test_a_rejection_echoing_the_secret_in_another_case_and_a_phone_number_reaches_the_dead_letter_masked(
    receiver: WebhookReceiver, make_sink: MakeSink, tmp_path: Path
) -> None:
    """A 422 quoting our HMAC key upper-cased and the receipt's phone number: neither reaches the dead letter or log."""
    # Given a receiver that refuses the receipt, echoing the secret in capitals and the phone number
    receipt = make_receipt(7)
    phone = receipt.phone_number
    assert phone is not None
    echo = f'{{"error":"key {SECRET.upper()} is not ours","detail":"cannot deliver to {phone}","to":"{phone}"}}'
    receiver.script.append(ScriptedReply(422, {"Content-Type": "application/json"}, echo.encode()))
    dead = DeadLetterSinkConfig(path=str(tmp_path / "dead.jsonl")).build()
    dispatcher = Dispatcher("Alicom-Queue-i1-SmsReport", "SmsReport", [make_sink()], dead, Events(), threading.Event())

    # When the dispatcher writes it and dead-letters the rejection
    with capture_logs() as logs:
        assert dispatcher.dispatch([Item(receipt.raw, "M1", receipt)])
    dead.close()

    # Then the dead letter's reason and the log's keep the status and the words, not the secret or the number
    (letter,) = read_dead_letters(tmp_path / "dead.jsonl")
    logged = [event["reason"] for event in logs if event["event"] == "receipt.rejected"]
    assert len(logged) == 1
    assert letter.reason == f"rejected by sink 'hook': {logged[0]}"
    for reason in (letter.reason, *logged):
        assert "HTTP 422: " in reason
        assert SECRET.lower() not in reason.lower()
        assert phone not in reason
        assert f"cannot deliver to {phone[:3]}****{phone[-4:]}" in reason
    assert letter.raw == receipt.raw


@pytest.mark.parametrize("status", [500, 502, 503, 408, 425, 429, 401, 403, 404, 301])
def test_transient_or_misdirected_statuses_raise_unavailable_and_reject_nothing(
    receiver: WebhookReceiver, make_sink: MakeSink, status: int
) -> None:
    """5xx, 408/425/429, auth and routing failures and redirects are the endpoint's problem: retry later."""
    receiver.script.append(ScriptedReply(status, headers={"Location": "http://elsewhere.invalid/"}))
    with pytest.raises(SinkUnavailable, match=f"HTTP {status}") as raised:
        make_sink().write(make_batch(2))
    assert raised.value.sink == "hook"
    assert raised.value.retry_after_seconds is None


def test_retry_after_in_seconds_is_passed_on(receiver: WebhookReceiver, make_sink: MakeSink) -> None:
    """A 429 with Retry-After: 7 raises SinkUnavailable with retry_after_seconds 7."""
    receiver.script.append(ScriptedReply(429, headers={"Retry-After": "7"}))
    with pytest.raises(SinkUnavailable) as raised:
        make_sink().write(make_batch(1))
    assert raised.value.retry_after_seconds == 7.0


def test_retry_after_as_an_http_date_is_turned_into_seconds(receiver: WebhookReceiver, make_sink: MakeSink) -> None:
    """A 503 with Retry-After as an HTTP date two minutes ahead gives about 120 seconds."""
    later = datetime.now(UTC) + timedelta(seconds=120)
    receiver.script.append(ScriptedReply(503, headers={"Retry-After": format_datetime(later, usegmt=True)}))
    with pytest.raises(SinkUnavailable) as raised:
        make_sink().write(make_batch(1))
    assert raised.value.retry_after_seconds is not None
    assert 100 <= raised.value.retry_after_seconds <= 121


def test_retry_after_parsing_handles_both_forms_and_garbage() -> None:
    """Seconds, HTTP dates (past ones give 0) and malformed values (None) per RFC 9110."""
    now = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after("Sun, 22 Nov 2026 10:01:00 GMT", now) == 60.0
    assert parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
    assert parse_retry_after(None, now) is None


def test_a_closed_port_raises_unavailable(receiver: WebhookReceiver, make_sink: MakeSink) -> None:
    """Connection refused is transient: SinkUnavailable naming the origin, not the path."""
    sink = make_sink()
    receiver.stop()
    with pytest.raises(SinkUnavailable, match=r"ConnectError posting to http://127\.0\.0\.1:\d+: "):
        sink.write(make_batch(1))


def test_a_timed_out_request_raises_unavailable_and_its_retry_is_absorbed_by_the_receiver(
    receiver: WebhookReceiver, make_sink: MakeSink
) -> None:
    """A receiver slower than read_timeout_seconds gives SinkUnavailable; the retry's key makes it store once."""
    # Given a receiver that stores the request only after the sink gave up waiting
    sink = make_sink(read_timeout_seconds=0.3)
    batch = make_batch(2)
    receiver.delay_seconds = 1.0
    # When the sink writes, times out, and retries once the receiver is quick again
    with pytest.raises(SinkUnavailable, match="ReadTimeout"):
        sink.write(batch)
    time.sleep(1.0)
    receiver.delay_seconds = 0
    assert sink.write(batch) == SinkResult.accept_all(batch)
    # Then both requests carried one Idempotency-Key and the receipts were stored once
    assert len({request.headers["Idempotency-Key"] for request in receiver.requests}) == 1
    assert sorted(receiver.deliveries) == sorted(r.dedupe_key for r in batch)


def test_one_per_request_mode_rejects_only_the_refused_receipt(receiver: WebhookReceiver, make_sink: MakeSink) -> None:
    """Each request stands alone: a 422 for one receipt leaves the others accepted."""
    good = make_batch(3)
    bad = dataclasses.replace(make_receipt(50), phone_number=REJECT_PHONE)
    result = make_sink(one_per_request=True).write([good[0], bad, *good[1:]])
    assert result.accepted == frozenset(r.dedupe_key for r in good)
    assert result.rejected == {bad.dedupe_key: f"HTTP 422: phone_number {REJECT_PHONE} is not a number"}
    assert sorted(receiver.stored) == sorted(r.dedupe_key for r in good)


def test_a_failure_midway_keeps_the_receipts_already_accepted_out_of_the_retry(
    receiver: WebhookReceiver, make_sink: MakeSink
) -> None:
    """After a 503 on the second of three requests, the retry sends only the second and third receipts."""
    sink = make_sink(one_per_request=True)
    batch = make_batch(3)
    receiver.script.extend([None, ScriptedReply(503)])
    with pytest.raises(SinkUnavailable):
        sink.write(batch)
    assert sink.write(batch) == SinkResult.accept_all(batch)
    sent = [request.headers["Idempotency-Key"] for request in receiver.requests]
    assert sent == [batch[0].dedupe_key, batch[1].dedupe_key, batch[1].dedupe_key, batch[2].dedupe_key]


def test_batches_larger_than_max_batch_are_split_into_several_requests(
    receiver: WebhookReceiver, make_sink: MakeSink
) -> None:
    """Five receipts with max_batch 2 go out as requests of 2, 2 and 1 receipts."""
    make_sink(max_batch=2).write(make_batch(5))
    assert [len(request.json()["receipts"]) for request in receiver.requests] == [2, 2, 1]


def test_receipts_sent_recently_are_accepted_without_a_request(receiver: WebhookReceiver, make_sink: MakeSink) -> None:
    """A batch repeated (in any order, with copies) is accepted from the dedupe window; nothing is sent."""
    sink = make_sink()
    batch = make_batch(3)
    sink.write(batch)
    assert sink.write([batch[2], batch[0], batch[2]]) == SinkResult.accept_all(batch[:1] + batch[2:])
    assert len(receiver.requests) == 1


def test_proxy_variables_are_ignored_unless_asked_for(
    receiver: WebhookReceiver, make_sink: MakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead HTTP_PROXY does not divert the sink, since use_env_proxy defaults to false."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    assert make_sink().write(make_batch(1)).accepted
    with pytest.raises(SinkUnavailable):
        make_sink(use_env_proxy=True).write(make_batch(1, start=5))


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[WebhookReceiver, Path]]:
    """An HTTPS receiver with a freshly generated self-signed certificate, and that certificate's path."""
    material = generate_tls_material(tmp_path)
    started = WebhookReceiver(tls=material.server_context()).start()
    yield started, material.cert_path
    started.stop()


def test_tls_certificates_are_verified_by_default(tls_receiver: tuple[WebhookReceiver, Path]) -> None:
    """A self-signed certificate fails verification unless ca_file trusts it."""
    receiver, cert_path = tls_receiver
    untrusting = WebhookSinkConfig(type="webhook", url=receiver.url, secret=SECRET).build("hook")
    trusting = WebhookSinkConfig(type="webhook", url=receiver.url, secret=SECRET, ca_file=str(cert_path)).build("hook")
    untrusting.open()
    trusting.open()
    try:
        with pytest.raises(SinkUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.write(make_batch(1))
        batch = make_batch(2, start=10)
        assert trusting.write(batch) == SinkResult.accept_all(batch)
    finally:
        untrusting.close()
        trusting.close()
    assert sorted(receiver.stored) == sorted(r.dedupe_key for r in batch)


def test_the_secrets_never_appear_in_repr_str_dumps_or_errors(receiver: WebhookReceiver, make_sink: MakeSink) -> None:
    """The HMAC secret and header values are masked in the config, the sink and its errors."""
    secret, token = "hmac-very-secret", "Bearer header-very-secret"
    sink = make_sink(secret=secret, headers={"Authorization": token})
    config = sink.config
    receiver.stop()
    with pytest.raises(SinkUnavailable) as raised:
        sink.write(make_batch(1))
    texts = [repr(config), str(config), config.model_dump_json(), repr(sink), str(raised.value), repr(raised.value)]
    for text in texts:
        assert secret not in text
        assert "header-very-secret" not in text


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"url": "ftp://example.com/hook"}, "http:// or https://"),
        ({"url": "https://user:pw@example.com/hook"}, "must not contain credentials"),
        ({"headers": {"X-Signature": "forged"}}, "set by the sink itself"),
        ({"headers": {"X-Ok": "a\r\nInjected: 1"}}, "line break"),
        ({"secret": ""}, "must not be empty"),
        ({"verify_tls": False, "ca_file": "ca.pem"}, "ca_file has no effect"),
        ({"max_batch": 0}, "greater than or equal to 1"),
        ({"timeout": 5}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_configurations_are_refused(overrides: dict[str, Any], problem: str) -> None:
    """Wrong schemes, embedded credentials, reserved or unsafe headers and unknown keys fail validation."""
    with pytest.raises(ValidationError, match=problem):
        WebhookSinkConfig.model_validate({"type": "webhook", "url": "https://example.com/hook", **overrides})


def test_the_registry_builds_a_webhook_sink_from_its_yaml_mapping() -> None:
    """``type: webhook`` resolves to WebhookSinkConfig and builds a WebhookSink with defaults."""
    config = parse_sink_config({"type": "webhook", "url": "https://example.com/hook", "secret": "s"})
    assert sink_config_class("webhook") is WebhookSinkConfig
    assert isinstance(config, WebhookSinkConfig)
    assert (config.verify_tls, config.one_per_request, config.max_batch) == (True, False, 256)
    assert isinstance(config.build("hook"), WebhookSink)


def test_writing_before_open_is_a_bug(receiver: WebhookReceiver) -> None:
    """write on an unopened sink raises RuntimeError, not SinkUnavailable."""
    sink = WebhookSinkConfig(type="webhook", url=receiver.url).build("hook")
    with pytest.raises(RuntimeError, match="not open"):
        sink.write(make_batch(1))


def test_the_receiver_verification_helper_refuses_stale_or_forged_requests(
    receiver: WebhookReceiver, make_sink: MakeSink
) -> None:
    """verify_signature accepts the request as sent and refuses a changed body or an old timestamp."""
    from mns_consumer.sinks.webhook import verify_signature

    make_sink().write(make_batch(1))
    request = receiver.requests[0]
    timestamp, signature = request.headers["X-Timestamp"], request.headers["X-Signature"]
    assert verify_signature(SECRET, timestamp, request.body, signature)
    assert not verify_signature(SECRET, timestamp, request.body + b" ", signature)
    assert not verify_signature("other", timestamp, request.body, signature)
    assert not verify_signature(SECRET, timestamp, request.body, signature, now=int(timestamp) + 301)
    assert json.loads(request.body)["receipts"][0]["dedupe_key"] == make_receipt(0).dedupe_key


def test_an_unreadable_ca_file_is_a_configuration_error_at_open(tmp_path: Path) -> None:
    """open() refuses a ca_file that is not a PEM bundle with a ConfigError naming the key."""
    missing = tmp_path / "missing.pem"
    sink = WebhookSinkConfig(type="webhook", url="https://127.0.0.1:9/hook", ca_file=str(missing)).build("hook")
    with pytest.raises(ConfigError, match="cannot load") as raised:
        sink.open()
    assert raised.value.key_path == "ca_file"
