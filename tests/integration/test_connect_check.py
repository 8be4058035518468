"""``check-config --connect``'s sink checks against real destinations: they must reach them, not just build a client."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mns_consumer.connect_check import check_dead_letter, check_sink, check_spool
from mns_consumer.sinks.base import parse_sink_config
from mns_consumer.sinks.dead_letter import DeadLetterSinkConfig
from mns_consumer.sinks.webhook import PROBE_HEADER, verify_signature
from tests.support.sink_env_database import POSTGRES_PASSWORD, ServerEnv
from tests.support.sink_env_s3 import S3Env
from tests.support.sink_env_webhook import SECRET, WebhookReceiver


def closed_port() -> int:
    """A loopback port nobody listens on (bound once to pick it, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A live webhook receiver that checks signatures."""
    made = WebhookReceiver().start()
    yield made
    made.stop()


@pytest.fixture
def s3() -> Iterator[S3Env]:
    """A moto server with a fresh bucket."""
    made = S3Env()
    yield made
    made.close()


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 reads AWS_* variables; these tests configure everything."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


def test_a_webhook_on_a_closed_port_fails_naming_the_sink_and_the_reason() -> None:
    """Nobody listening is a failed check, not "opened"."""
    port = closed_port()
    config = parse_sink_config({"type": "webhook", "url": f"http://127.0.0.1:{port}/hook", "secret": "s3cr3t-value"})

    result = check_sink("hook", config)

    assert not result.ok
    assert result.subject == "sink hook"
    assert f"ConnectError posting to http://127.0.0.1:{port}" in result.detail
    assert "s3cr3t-value" not in result.detail


def test_a_live_receiver_passes_and_sees_a_signed_empty_probe_batch(receiver: WebhookReceiver) -> None:
    """The probe is a real request of the wire format that the receiver can recognise and ignore."""
    config = parse_sink_config({"type": "webhook", "url": receiver.url, "secret": SECRET})

    result = check_sink("hook", config)

    assert result.ok, result.detail
    assert result.detail.startswith("HTTP 200 from http://127.0.0.1:")
    [request] = receiver.requests
    headers = {key.lower(): value for key, value in request.headers.items()}
    assert headers[PROBE_HEADER.lower()] == "1"
    assert json.loads(request.body) == {"receipts": []}
    assert verify_signature(SECRET, headers["x-timestamp"], request.body, headers["x-signature"])
    assert receiver.stored == {}


def test_a_webhook_signing_with_the_wrong_secret_fails_the_check(receiver: WebhookReceiver) -> None:
    """The receiver refuses the signature (401), which write() reports as unavailable: the check fails."""
    config = parse_sink_config({"type": "webhook", "url": receiver.url, "secret": "the-wrong-secret"})

    result = check_sink("hook", config)

    assert not result.ok
    assert "HTTP 401" in result.detail
    assert "the-wrong-secret" not in result.detail


def test_a_database_on_a_closed_port_fails_without_showing_the_password() -> None:
    """The database check is a round trip: a closed port fails it."""
    port = closed_port()
    url = f"postgresql+psycopg://postgres:{POSTGRES_PASSWORD}@127.0.0.1:{port}/test"
    config = parse_sink_config({"type": "database", "url": url, "connect_timeout_seconds": 2})

    result = check_sink("db", config)

    assert not result.ok
    assert f"127.0.0.1:{port}" in result.detail
    assert POSTGRES_PASSWORD not in result.detail


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_live_database_server_answers_and_a_missing_table_is_reported(kind: str) -> None:
    """A reachable server passes; with create_table: false a missing table fails the check; nothing is created."""
    env = ServerEnv(kind)
    try:
        will_create = check_sink("db", env.config())
        must_exist = check_sink("db", env.config(create_table=False))

        assert will_create.ok, will_create.detail
        assert f"SELECT 1 answered; table {env.table!r} will be created at start" in will_create.detail
        assert not must_exist.ok
        assert f"table {env.table!r} does not exist" in must_exist.detail
        assert POSTGRES_PASSWORD not in will_create.detail + must_exist.detail
        assert not sa.inspect(env.admin).has_table(env.table)
    finally:
        env.close()


def test_an_existing_sqlite_database_answers_select_1_and_is_left_as_it_was(tmp_path: Path) -> None:
    """An existing SQLite file is queried without changing its journal mode or creating a table."""
    path = tmp_path / "receipts.db"
    sqlite3.connect(path).close()  # an empty, valid database file
    config = parse_sink_config({"type": "database", "url": f"sqlite:///{path}"})

    result = check_sink("db", config)

    assert result.ok, result.detail
    assert "SELECT 1 answered; table 'sms_receipts' will be created at start" in result.detail
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_a_missing_sqlite_database_is_not_created_by_the_check(tmp_path: Path) -> None:
    """A missing file is judged by its folder; the check creates neither."""
    path = tmp_path / "state" / "receipts.db"
    config = parse_sink_config({"type": "database", "url": f"sqlite:///{path}"})

    result = check_sink("db", config)

    assert result.ok, result.detail
    assert "will be created (0600) at start" in result.detail
    assert not (tmp_path / "state").exists()


def test_a_sqlite_database_under_a_regular_file_fails(tmp_path: Path) -> None:
    """A regular file where the folder should be fails the check, naming that path."""
    (tmp_path / "blocked").write_text("")
    config = parse_sink_config({"type": "database", "url": f"sqlite:///{tmp_path}/blocked/sub/receipts.db"})

    result = check_sink("db", config)

    assert not result.ok
    assert f"{tmp_path}/blocked" in result.detail


def test_s3_passes_with_its_bucket_and_fails_when_the_bucket_is_missing(s3: S3Env) -> None:
    """HeadBucket against moto: the configured bucket passes, a missing one fails naming it."""
    present = check_sink("archive", s3.config())
    missing = check_sink("archive", s3.config(bucket="no-such-bucket-here"))

    assert present.ok, present.detail
    assert f"HeadBucket on bucket {s3.bucket!r} answered" == present.detail
    assert not missing.ok
    assert "bucket 'no-such-bucket-here' does not exist" in missing.detail


def test_s3_behind_a_closed_port_fails(s3: S3Env) -> None:
    """An unreachable S3 endpoint fails the check."""
    s3.make_unavailable()

    result = check_sink("archive", s3.config())

    assert not result.ok
    assert s3.config().secret_access_key is not None
    assert s3.config().secret_access_key.get_secret_value() not in result.detail


def test_a_file_sink_folder_that_is_writable_passes_and_keeps_nothing(tmp_path: Path) -> None:
    """An existing folder is tested with a temporary file that is removed again."""
    config = parse_sink_config({"type": "file", "path": f"{tmp_path}/{{message_type}}.jsonl"})

    result = check_sink("archive", config)

    assert result.ok, result.detail
    assert result.detail == f"{tmp_path} is writable"
    assert list(tmp_path.iterdir()) == []


def test_a_file_sink_under_a_regular_file_fails_naming_the_path(tmp_path: Path) -> None:
    """The folder cannot be created under a regular file: the check fails and says where."""
    (tmp_path / "blocked").write_text("")
    config = parse_sink_config({"type": "file", "path": f"{tmp_path}/blocked/out/{{message_type}}.jsonl"})

    result = check_sink("archive", config)

    assert not result.ok
    assert result.detail.startswith(f"{tmp_path}/blocked: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_file_sink_in_a_read_only_folder_fails(tmp_path: Path) -> None:
    """A folder the process may not write to fails the check."""
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    config = parse_sink_config({"type": "file", "path": f"{folder}/receipts.jsonl"})

    result = check_sink("archive", config)

    assert not result.ok
    assert "Permission denied" in result.detail


def test_the_dead_letter_and_spool_checks_create_nothing(tmp_path: Path) -> None:
    """Missing folders for the dead-letter file and the spool are judged, not made."""
    dead = check_dead_letter(DeadLetterSinkConfig(path=str(tmp_path / "dl" / "dead.jsonl")))
    spool = check_spool(str(tmp_path / "spool" / "push.db"))

    assert dead.ok, dead.detail
    assert spool.ok, spool.detail
    assert list(tmp_path.iterdir()) == []
