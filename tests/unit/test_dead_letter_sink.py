"""The file dead-letter sink and its reader on real files: round trip, durability, torn lines, failures."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.sinks.base import DeadLetter, Reopenable
from mns_consumer.sinks.dead_letter import DeadLetterSinkConfig, FileDeadLetterSink, read_dead_letters

BEIJING = timezone(timedelta(hours=8))


def make_letter(n: int = 0, **overrides: Any) -> DeadLetter:
    """A dead letter numbered ``n`` from an MNS queue, rejected by a sink."""
    fields: dict[str, Any] = {
        "message_type": "SmsReport",
        "source": "mns",
        "queue": "Alicom-Queue-i1-SmsReport",
        "raw": f'{{"phone_number":"139{n:08d}","err_msg":"用户接收成功"}}'.encode(),
        "reason": "sink 'db' rejected it: phone_number too long",
        "failed_at": datetime(2026, 11, 22, 10, 0, n, tzinfo=BEIJING),
        "message_id": f"msg-{n}",
        "dequeue_count": 3,
        "sink": "db",
        "dedupe_key": f"key-{n}",
    }
    fields.update(overrides)
    return DeadLetter(**fields)


@pytest.fixture
def make_sink(tmp_path: Path) -> Iterator[Callable[..., FileDeadLetterSink]]:
    """A factory of opened dead-letter sinks over ``tmp_path``; closes them all afterwards."""
    made: list[FileDeadLetterSink] = []

    def make(path: str = "state/dead-letter.jsonl", **fields: Any) -> FileDeadLetterSink:
        sink = DeadLetterSinkConfig(type="file", path=str(tmp_path / path), **fields).build()
        sink.open()
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


def test_dead_letters_round_trip_through_the_file_including_binary_bodies(
    make_sink: Callable[..., FileDeadLetterSink], tmp_path: Path
) -> None:
    """Every field, a UTF-8 body and a binary body come back from read_dead_letters as written."""
    letters = [
        make_letter(1),
        make_letter(2, raw=b"\x00\xff\xfe binary \x80", source="push", queue=None, message_id=None),
        make_letter(3, dequeue_count=None, sink=None, dedupe_key=None, reason="DecodeError: not JSON"),
    ]
    make_sink().write(letters)
    assert list(read_dead_letters(tmp_path / "state/dead-letter.jsonl")) == letters


def test_each_dead_letter_is_one_json_line_with_raw_text_or_raw_base64(
    make_sink: Callable[..., FileDeadLetterSink], tmp_path: Path
) -> None:
    """A UTF-8 body is stored as raw text, any other as raw_base64, with failed_at carrying its offset."""
    make_sink().write([make_letter(1), make_letter(2, raw=b"\xff")])
    first, second = (json.loads(line) for line in (tmp_path / "state/dead-letter.jsonl").read_bytes().splitlines())
    assert first["raw"] == '{"phone_number":"13900000001","err_msg":"用户接收成功"}'
    assert "raw_base64" not in first
    assert first["failed_at"] == "2026-11-22T10:00:01+08:00"
    assert first["dequeue_count"] == 3
    assert second["raw_base64"] == "/w=="
    assert "raw" not in second


def test_a_naive_failed_at_is_written_as_utc(make_sink: Callable[..., FileDeadLetterSink], tmp_path: Path) -> None:
    """A failed_at without an offset is taken as UTC, so every stored time has one."""
    make_sink().write([make_letter(1, failed_at=datetime(2026, 11, 22, 2, 0))])
    (read,) = read_dead_letters(tmp_path / "state/dead-letter.jsonl")
    assert read.failed_at == datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def test_write_fsyncs_before_returning(
    make_sink: Callable[..., FileDeadLetterSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each write ends with an fsync of the dead-letter file."""
    sink = make_sink()
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    sink.write([make_letter(1)])
    sink.write([make_letter(2)])
    assert len(synced) == 2
    assert all(stat.S_ISREG(os.fstat(fd).st_mode) for fd in synced)


@pytest.mark.usefixtures("permissive_umask")
def test_the_file_is_created_0600_in_a_0700_folder(
    make_sink: Callable[..., FileDeadLetterSink], tmp_path: Path
) -> None:
    """The dead-letter file and its new folder are private whatever the umask."""
    make_sink()
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state/dead-letter.jsonl").stat().st_mode) == 0o600


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Run with umask 000, the worst case for file modes."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_an_unusable_path_raises_sink_unavailable_and_the_next_write_recovers(
    make_sink: Callable[..., FileDeadLetterSink], tmp_path: Path
) -> None:
    """With a regular file where the folder should be, write raises SinkUnavailable; once fixed, it works."""
    sink = make_sink()
    (tmp_path / "state").rename(tmp_path / "elsewhere")
    (tmp_path / "state").write_bytes(b"")
    with pytest.raises(SinkUnavailable, match="dead_letter") as caught:
        sink.write([make_letter(1)])
    assert caught.value.sink == "dead_letter"
    (tmp_path / "state").unlink()
    sink.write([make_letter(2)])
    assert list(read_dead_letters(tmp_path / "state/dead-letter.jsonl")) == [make_letter(2)]


def test_open_raises_config_error_when_the_path_lies_under_a_regular_file(tmp_path: Path) -> None:
    """A file that can never be created at start is a configuration error naming the key and the path."""
    (tmp_path / "blocked").write_bytes(b"")
    sink = DeadLetterSinkConfig(type="file", path=str(tmp_path / "blocked/dead-letter.jsonl")).build()
    with pytest.raises(ConfigError, match=f"dead_letter.path: cannot create or open {tmp_path}/blocked"):
        sink.open()


def test_reader_skips_a_torn_last_line(tmp_path: Path) -> None:
    """A last line without its newline (a write that never finished) is not a dead letter."""
    path = tmp_path / "dead-letter.jsonl"
    DeadLetterSinkConfig(path=str(path)).build().write([make_letter(1), make_letter(2)])
    whole = path.read_bytes()
    path.write_bytes(whole[:-30])
    assert list(read_dead_letters(path)) == [make_letter(1)]


def test_the_sink_drops_a_torn_tail_before_appending(tmp_path: Path) -> None:
    """After a crash mid-write, the next write removes the fragment, so the file reads back cleanly."""
    # Given a dead-letter file whose last write stopped mid-line
    path = tmp_path / "dead-letter.jsonl"
    sink = DeadLetterSinkConfig(path=str(path)).build()
    sink.write([make_letter(1), make_letter(2)])
    sink.close()
    path.write_bytes(path.read_bytes()[:-30])
    # When a new sink appends
    again = DeadLetterSinkConfig(path=str(path)).build()
    again.open()
    again.write([make_letter(3)])
    again.close()
    # Then the fragment is gone and every complete record reads back
    assert list(read_dead_letters(path)) == [make_letter(1), make_letter(3)]


def test_a_malformed_line_raises_value_error_naming_its_line_number(tmp_path: Path) -> None:
    """A complete line that is not a dead letter stops the reader with its line number."""
    path = tmp_path / "dead-letter.jsonl"
    DeadLetterSinkConfig(path=str(path)).build().write([make_letter(1)])
    with path.open("ab") as file:
        file.write(b'{"message_type": "SmsReport"}\n')
    letters = read_dead_letters(path)
    assert next(letters) == make_letter(1)
    with pytest.raises(ValueError, match=r"dead-letter\.jsonl: line 2: .*raw"):
        next(letters)


def test_a_line_that_is_not_json_raises_value_error_naming_its_line_number(tmp_path: Path) -> None:
    """Garbage in the middle of the file is reported with its line number, not skipped."""
    path = tmp_path / "dead-letter.jsonl"
    path.write_bytes(b"not json\n")
    with pytest.raises(ValueError, match="line 1"):
        list(read_dead_letters(path))


def test_reopen_after_logrotate_writes_a_new_file(make_sink: Callable[..., FileDeadLetterSink], tmp_path: Path) -> None:
    """After the file is renamed away, the next write creates a new file at the path."""
    path = tmp_path / "state/dead-letter.jsonl"
    sink = make_sink()
    assert isinstance(sink, Reopenable)
    sink.write([make_letter(1)])
    path.rename(tmp_path / "state/dead-letter.jsonl.1")
    sink.write([make_letter(2)])
    assert list(read_dead_letters(path)) == [make_letter(2)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"path": "/x/{date}.jsonl"}, "takes no placeholders"),
        ({"path": "/x/"}, "must name a file"),
        ({"path": "/x/dl.jsonl", "file_mode": 0o200}, "must include 0o600"),
        ({"path": "/x/dl.jsonl", "type": "s3"}, "Input should be 'file'"),
        ({"path": "/x/dl.jsonl", "rotate_bytes": 10}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_dead_letter_settings_are_validation_errors(fields: dict[str, Any], message: str) -> None:
    """Placeholders, folders, unusable modes, other types and unknown keys fail validation."""
    with pytest.raises(ValidationError, match=message):
        DeadLetterSinkConfig(**fields)


def test_the_default_name_is_dead_letter() -> None:
    """build() without a name names the sink dead_letter."""
    assert DeadLetterSinkConfig(path="/x/dl.jsonl").build().name == "dead_letter"


def test_a_deeply_nested_line_raises_value_error_naming_its_line_number(tmp_path: Path) -> None:
    """A line nested too deeply for the JSON parser is refused like any malformed line, not with a RecursionError.

    Found by the replay fuzz target (tests/fuzz/crashers/replay/deep-line): ``dead-letters replay`` ended
    in a traceback.
    """
    path = tmp_path / "dead-letter.jsonl"
    DeadLetterSinkConfig(path=str(path)).build().write([make_letter(1)])
    with path.open("ab") as file:
        file.write(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    with pytest.raises(ValueError, match=r": line 2: JSON nested too deeply"):
        list(read_dead_letters(path))
