"""The S3 sink against moto's standalone server over real HTTP: layout, idempotence, restarts, failures."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import SinkResult, parse_sink_config
from mns_consumer.sinks.s3 import S3Sink, S3SinkConfig, encode_object
from tests.support.receipts import make_batch, make_receipt
from tests.support.sink_env_s3 import S3Env


class Clock:
    """A settable UTC clock for object keys."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


T0 = datetime(2026, 11, 22, 10, 0, 4, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 reads AWS_* variables (profiles, endpoints, CA bundles); these tests configure everything."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def env() -> Iterator[S3Env]:
    """A moto server with a fresh bucket behind a cuttable proxy."""
    made = S3Env()
    yield made
    made.close()


@pytest.fixture
def clock() -> Clock:
    """A clock standing at :data:`T0`."""
    return Clock(T0)


@pytest.fixture
def sink(env: S3Env, clock: Clock) -> Iterator[S3Sink]:
    """An opened sink on the environment's bucket, on the test clock."""
    made = env.make_sink(clock)
    made.open()
    yield made
    made.close()


def digest(receipts: list[Receipt]) -> str:
    """The documented object-key digest: sha256 of the sorted dedupe keys joined by newlines, 16 digits."""
    return hashlib.sha256("\n".join(sorted(r.dedupe_key for r in receipts)).encode()).hexdigest()[:16]


def test_objects_are_gzip_json_lines_under_the_documented_key_per_message_type(env: S3Env, sink: S3Sink) -> None:
    """One object per message type at {prefix}{type}/YYYY/MM/DD/HHMMSS-{digest}.jsonl.gz, with its metadata."""
    reports = make_batch(3)
    replies = [make_receipt(7, message_type="SmsUp", kind="reply")]
    assert sink.write([reports[0], *replies, *reports[1:]]) == SinkResult.accept_all([*reports, *replies])
    report_key = f"receipts/SmsReport/2026/11/22/100004-{digest(reports)}.jsonl.gz"
    reply_key = f"receipts/SmsUp/2026/11/22/100004-{digest(replies)}.jsonl.gz"
    assert env.object_keys() == [report_key, reply_key]
    stored = env.get(report_key)
    lines = gzip.decompress(stored["Bytes"]).decode().splitlines()
    assert [json.loads(line) for line in lines] == [r.to_json_dict() for r in reports]
    assert (stored["ContentType"], stored["ContentEncoding"]) == ("application/x-ndjson", "gzip")
    assert stored["ETag"].strip('"') == hashlib.md5(stored["Bytes"], usedforsecurity=False).hexdigest()


def test_the_object_body_is_the_same_bytes_for_the_same_receipts() -> None:
    """Gzip without a name or mtime makes equal content give equal bytes (and equal Content-MD5)."""
    assert encode_object(make_batch(3)) == encode_object(make_batch(3))


def test_a_retry_after_a_failed_put_reuses_the_first_attempts_key(env: S3Env, sink: S3Sink, clock: Clock) -> None:
    """The key's time is when the receipts were first attempted, so retries land on one key."""
    # Given a write that failed at T0 because the store was unreachable
    batch = make_batch(2)
    env.make_unavailable()
    with pytest.raises(SinkUnavailable):
        sink.write(batch)
    env.restore()
    # When the same receipts are retried a minute later
    clock.now = T0 + timedelta(minutes=1)
    sink.write(batch)
    # Then the object carries the first attempt's time
    assert env.object_keys() == [f"receipts/SmsReport/2026/11/22/100004-{digest(batch)}.jsonl.gz"]


class AnswerDroppingProxy:
    """Forwards requests to a server but, while ``drop`` is set, hangs up instead of passing the answer on.

    Interim ``100 Continue`` answers still pass, since botocore waits for one before sending a PutObject body.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.drop = True
        self.request_lines: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, is_answer: bool) -> None:
        try:
            while data := source.recv(65536):
                if is_answer and self.drop and not data.startswith(b"HTTP/1.1 100 "):
                    break
                if not is_answer and data[:4] in (b"PUT ", b"GET ", b"HEAD"):
                    self.request_lines.append(data.split(b"\r\n", 1)[0])
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            # shutdown, not just close: the other pipe thread is still blocked reading this socket.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        """Stop listening."""
        self.listener.close()


def test_a_put_whose_answer_was_lost_is_overwritten_not_duplicated(env: S3Env, clock: Clock) -> None:
    """When PutObject stored the object but the answer never came, the retry overwrites that same object."""
    # Given a sink whose first PutObject reaches the store but whose answer is lost
    _, moto_port = env.moto.get_host_and_port()
    proxy = AnswerDroppingProxy(moto_port)
    sink = env.make_sink(clock, endpoint_url=f"http://127.0.0.1:{proxy.port}", dedupe_scan_max_objects=0)
    proxy.drop = False
    sink.open()
    batch = make_batch(3)
    try:
        proxy.drop = True
        with pytest.raises(SinkUnavailable, match="ConnectionClosedError"):
            sink.write(batch)
        assert len(env.object_keys()) == 1
        assert len([line for line in proxy.request_lines if line.startswith(b"PUT ")]) == 1, "botocore retried"
        # When the dispatcher retries after the network recovered, a little later
        proxy.drop = False
        clock.now = T0 + timedelta(seconds=30)
        assert sink.write(batch) == SinkResult.accept_all(batch)
    finally:
        sink.close()
        proxy.close()
    # Then there is still one object, holding each receipt once
    assert len(env.object_keys()) == 1
    assert sorted(env.stored_keys()) == sorted(r.dedupe_key for r in batch)


def test_receipts_stored_recently_are_not_stored_again(env: S3Env, sink: S3Sink) -> None:
    """A repeated batch is accepted from the dedupe window without a new object; copies collapse."""
    batch = make_batch(3)
    sink.write([*batch, batch[0]])
    assert sink.write(batch) == SinkResult.accept_all(batch)
    assert sorted(env.stored_keys()) == sorted(r.dedupe_key for r in batch)


def test_a_restarted_sink_absorbs_duplicates_of_the_newest_objects(env: S3Env, clock: Clock) -> None:
    """open() reads the newest dedupe_scan_max_objects objects, so their receipts are not stored again."""
    # Given three objects written a minute apart by an earlier sink
    first = env.make_sink(clock)
    first.open()
    batches = [make_batch(2, start=10 * n) for n in range(3)]
    for n, batch in enumerate(batches):
        clock.now = T0 + timedelta(minutes=n)
        first.write(batch)
    first.close()
    # When a new sink that reads at most two objects at open gets all three batches again
    second = env.make_sink(clock, dedupe_scan_max_objects=2)
    second.open()
    try:
        for batch in batches:
            second.write(batch)
    finally:
        second.close()
    # Then only the oldest batch, which it did not read, was stored a second time
    expected = [r.dedupe_key for batch in batches for r in batch] + [r.dedupe_key for r in batches[0]]
    assert sorted(env.stored_keys()) == sorted(expected)


def test_the_preload_reads_yesterday_but_not_older_days(env: S3Env, clock: Clock) -> None:
    """Objects from yesterday (UTC) are read at open; older ones are not."""
    # Given objects written two days ago and yesterday
    writer = env.make_sink(clock)
    writer.open()
    old, recent = make_batch(1), make_batch(1, start=1)
    clock.now = T0 - timedelta(days=2)
    writer.write(old)
    clock.now = T0 - timedelta(days=1)
    writer.write(recent)
    writer.close()
    # When a sink opened today gets both receipts again
    clock.now = T0
    reader = env.make_sink(clock)
    reader.open()
    try:
        reader.write([*old, *recent])
    finally:
        reader.close()
    # Then only the two-day-old receipt was written again
    assert sorted(env.stored_keys()) == sorted([old[0].dedupe_key, old[0].dedupe_key, recent[0].dedupe_key])


def test_foreign_objects_under_the_prefix_do_not_stop_the_preload(env: S3Env, clock: Clock) -> None:
    """A non-gzip object named like ours is skipped at open, and the sink works."""
    env.put_raw("receipts/SmsReport/2026/11/22/090000-0000000000000000.jsonl.gz", b"not gzip")
    sink = env.make_sink(clock)
    sink.open()
    try:
        batch = make_batch(1)
        assert sink.write(batch) == SinkResult.accept_all(batch)
    finally:
        sink.close()


def test_a_missing_bucket_is_a_configuration_error_at_open(env: S3Env) -> None:
    """open() refuses a bucket that does not exist with a ConfigError naming it."""
    sink = env.make_sink(bucket="no-such-bucket-here")
    with pytest.raises(ConfigError, match="'no-such-bucket-here' does not exist") as raised:
        sink.open()
    assert raised.value.key_path == "bucket"


def test_an_unreachable_store_at_open_raises_unavailable(env: S3Env) -> None:
    """open() with the endpoint down raises SinkUnavailable, so the daemon can retry it."""
    env.make_unavailable()
    try:
        with pytest.raises(SinkUnavailable, match="EndpointConnectionError"):
            env.make_sink().open()
    finally:
        env.restore()


def test_a_bucket_deleted_underneath_raises_unavailable_and_rejects_nothing(env: S3Env, sink: S3Sink) -> None:
    """NoSuchBucket on write is a whole-call failure: the S3 sink never rejects receipts."""
    env.admin.delete_bucket(Bucket=env.bucket)
    with pytest.raises(SinkUnavailable, match="NoSuchBucket"):
        sink.write(make_batch(1))


def test_a_missing_boto3_asks_for_the_s3_extra(env: S3Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without boto3, building the sink raises a ConfigError saying to install mns-consumer[s3]."""
    config = env.config()
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ConfigError, match=r"install mns-consumer\[s3\]"):
        config.build("s3")


def test_the_module_imports_without_boto3() -> None:
    """Importing the S3 sink module (as the registry does at config load) does not need boto3."""
    code = "import sys; sys.modules['boto3'] = None; import mns_consumer.sinks.s3"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_credentials_never_appear_in_repr_or_errors(env: S3Env) -> None:
    """The secret access key is masked in the config and absent from the sink and its errors."""
    secret = "very-secret-access-key-value"
    sink = env.make_sink(secret_access_key=secret)
    env.make_unavailable()
    try:
        with pytest.raises(SinkUnavailable) as raised:
            sink.open()
    finally:
        env.restore()
    for text in (repr(sink.config), sink.config.model_dump_json(), repr(sink), str(raised.value)):
        assert secret not in text
    assert base64.b64encode(secret.encode()).decode() not in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"prefix": "receipts"}, "end with '/'"),
        ({"prefix": "/receipts/"}, "not start with '/'"),
        ({"access_key_id": "AKID"}, "set both access_key_id and secret_access_key"),
        ({"endpoint_url": "localhost:9000"}, "http:// or https://"),
        ({"addressing_style": "dns"}, "'auto', 'virtual' or 'path'"),
        ({"region_name": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_configurations_are_refused(overrides: dict[str, object], problem: str) -> None:
    """Malformed prefixes, half credentials, schemeless endpoints and unknown keys fail validation."""
    with pytest.raises(ValidationError, match=problem):
        S3SinkConfig.model_validate({"type": "s3", "bucket": "receipts", **overrides})


def test_the_registry_builds_an_s3_sink_with_defaults() -> None:
    """``type: s3`` resolves to S3SinkConfig with the documented defaults."""
    config = parse_sink_config({"type": "s3", "bucket": "receipts"})
    assert isinstance(config, S3SinkConfig)
    assert (config.prefix, config.addressing_style, config.dedupe_scan_max_objects) == ("receipts/", "auto", 2000)
    assert isinstance(config.build("archive"), S3Sink)


def test_an_unknown_aws_profile_is_a_configuration_error(env: S3Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's chain failing to start (AWS_PROFILE naming no profile) is reported as a ConfigError at open."""
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    with pytest.raises(ConfigError, match="cannot create the S3 client"):
        env.make_sink().open()
