"""The file sink on real files: line format, strftime paths, modes, fsync, dedupe, recovery."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import Reopenable, Sink, SinkResult, parse_sink_config
from mns_consumer.sinks.file import FileSink, FileSinkConfig, encode_json_line
from tests.support.receipts import BEIJING, make_batch, make_receipt

NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, at: datetime = NOON) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def make_sink(tmp_path: Path) -> Iterator[Callable[..., FileSink]]:
    """A factory of opened file sinks over ``tmp_path`` (path relative to it); closes them all afterwards."""
    made: list[FileSink] = []

    def make(path: str = "out/receipts.jsonl", *, clock: Clock | None = None, **fields: Any) -> FileSink:
        config = FileSinkConfig(type="file", path=str(tmp_path / path), **fields)
        sink = FileSink("archive", config, now=clock or Clock())
        sink.open()
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file, parsed."""
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def keys_of(path: Path) -> list[str]:
    """The dedupe keys of a JSONL file, in order."""
    return [line["dedupe_key"] for line in lines_of(path)]


def keys(receipts: list[Receipt]) -> list[str]:
    """The dedupe keys of receipts, in order."""
    return [r.dedupe_key for r in receipts]


def test_file_sink_is_a_reopenable_sink(make_sink: Callable[..., FileSink]) -> None:
    """The file sink satisfies the Sink and Reopenable protocols."""
    sink = make_sink()
    assert isinstance(sink, Sink)
    assert isinstance(sink, Reopenable)


def test_registry_builds_the_file_sink_from_its_config() -> None:
    """``type: file`` resolves to FileSinkConfig, whose build makes a FileSink with that name."""
    config = parse_sink_config({"type": "file", "path": "/var/lib/mns-consumer/receipts.jsonl"})
    assert isinstance(config, FileSinkConfig)
    assert config.build("archive").name == "archive"


def test_each_receipt_is_one_compact_utf8_json_line_that_round_trips(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """A line is the receipt's JSON form, compact and unescaped UTF-8, and rebuilds the same receipt."""
    receipts = [make_receipt(1), make_receipt(2, raw=b"\xff\xfe not utf-8")]
    result = make_sink().write(receipts)
    assert result == SinkResult(accepted=frozenset(keys(receipts)))
    data = (tmp_path / "out/receipts.jsonl").read_bytes()
    assert "用户接收成功".encode() in data
    assert b'": ' not in data
    assert data.startswith(b'{"dedupe_key":')
    assert [Receipt.from_json_dict(line) for line in lines_of(tmp_path / "out/receipts.jsonl")] == receipts


def test_text_with_lone_surrogates_is_written_as_escaped_json() -> None:
    """Text that cannot be UTF-8 is written with \\u escapes rather than failing the batch."""
    line = encode_json_line({"content": "bad \ud800 text"})
    assert line == b'{"content":"bad \\ud800 text"}\n'
    assert json.loads(line) == {"content": "bad \ud800 text"}


def test_message_type_placeholder_writes_one_file_per_message_type(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """Receipts of each MessageType go to the file named after it."""
    report, reply = make_receipt(1), make_receipt(2, message_type="SmsUp", kind="reply")
    make_sink("out/{message_type}.jsonl").write([report, reply, make_receipt(3)])
    assert keys_of(tmp_path / "out/SmsReport.jsonl") == keys([report, make_receipt(3)])
    assert keys_of(tmp_path / "out/SmsUp.jsonl") == keys([reply])


def test_a_message_type_cannot_climb_out_of_the_folder(make_sink: Callable[..., FileSink], tmp_path: Path) -> None:
    """Separators and a leading dot in a MessageType are replaced, so the file stays in its folder."""
    make_sink("out/{message_type}.jsonl").write([make_receipt(1, message_type="../x")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_._x.jsonl"]


def test_strftime_directives_use_the_utc_time_of_the_write(make_sink: Callable[..., FileSink], tmp_path: Path) -> None:
    """At 23:30 UTC (07:30 next day in Beijing) the UTC date names the file, not the receipt's or local time."""
    clock = Clock(datetime(2026, 11, 23, 7, 30, tzinfo=BEIJING))
    make_sink("out/%Y-%m-%d/{message_type}-%Y%m.jsonl", clock=clock).write([make_receipt(1)])
    assert keys_of(tmp_path / "out/2026-11-22/SmsReport-202611.jsonl") == keys([make_receipt(1)])


def test_a_strftime_path_starts_a_new_file_when_the_utc_day_changes(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """Writes after midnight UTC go to the next day's file; the earlier file is left as it was."""
    clock = Clock(datetime(2026, 11, 22, 23, 59, tzinfo=UTC))
    sink = make_sink("out/receipts.jsonl.%Y-%m-%d", clock=clock)
    sink.write([make_receipt(1)])
    clock.at += timedelta(minutes=2)
    sink.write([make_receipt(2)])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "receipts.jsonl.2026-11-22",
        "receipts.jsonl.2026-11-23",
    ]
    assert keys_of(tmp_path / "out/receipts.jsonl.2026-11-22") == keys([make_receipt(1)])
    assert keys_of(tmp_path / "out/receipts.jsonl.2026-11-23") == keys([make_receipt(2)])


def open_files_under(folder: Path) -> list[str]:
    """The files under ``folder`` this process holds open, from /proc/self/fd."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        # The descriptor listdir itself used is gone by now.
        with contextlib.suppress(FileNotFoundError):
            held.append(os.readlink(f"/proc/self/fd/{fd}"))
    return sorted(path for path in held if path.startswith(f"{folder}{os.sep}"))


def test_an_hourly_path_keeps_one_handle_per_message_type_open(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """A MessageType writing to a new path closes its previous file: %H does not pile up handles until midnight."""
    clock = Clock(datetime(2026, 11, 22, 0, 30, tzinfo=UTC))
    sink = make_sink("out/{message_type}-%H.jsonl", clock=clock)
    reply = make_receipt(9, message_type="SmsUp", kind="reply")
    for hour in range(3):
        sink.write([make_receipt(hour), reply])
        clock.at += timedelta(hours=1)
    out = tmp_path / "out"
    assert open_files_under(out) == [str(out / "SmsReport-02.jsonl"), str(out / "SmsUp-00.jsonl")]
    assert keys_of(out / "SmsReport-01.jsonl") == keys([make_receipt(1)])


def test_a_doubled_percent_sign_is_a_literal_percent(make_sink: Callable[..., FileSink], tmp_path: Path) -> None:
    """``%%`` in the path is written as one ``%``, not read as a directive."""
    make_sink("out/100%%-%Y.jsonl").write([make_receipt(1)])
    assert keys_of(tmp_path / "out/100%-2026.jsonl") == keys([make_receipt(1)])


@pytest.mark.parametrize(
    ("key", "value", "advice"),
    [("rotate_bytes", 1_000_000, "logrotate"), ("rotate_daily", True, "%Y-%m-%d")],
)
def test_a_retired_rotation_key_is_a_config_error_saying_what_to_do_instead(key: str, value: Any, advice: str) -> None:
    """rotate_bytes points to logrotate and rotate_daily to a strftime path, instead of a bare unknown-key error."""
    with pytest.raises(ValidationError, match=f"{key} is no longer supported") as caught:
        parse_sink_config({"type": "file", "path": "/x/receipts.jsonl", key: value})
    assert advice in str(caught.value)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Run with umask 000, the worst case for file modes."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("permissive_umask")
def test_new_files_are_0600_and_new_folders_0700_even_with_a_permissive_umask(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """Created folders get 0700 and created files 0600 whatever the umask."""
    make_sink("a/b/{message_type}.jsonl").write([make_receipt(1)])
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a/b").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a/b/SmsReport.jsonl").stat().st_mode) == 0o600


@pytest.mark.usefixtures("permissive_umask")
def test_configured_file_mode_is_given_to_new_files(make_sink: Callable[..., FileSink], tmp_path: Path) -> None:
    """file_mode (here as YAML-style octal text) sets the mode of created files."""
    make_sink(file_mode="0o640").write([make_receipt(1)])
    assert stat.S_IMODE((tmp_path / "out/receipts.jsonl").stat().st_mode) == 0o640


@pytest.fixture
def fsync_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A spy on os.fsync recording whether each call synced a file or a folder."""
    calls: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        calls.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def test_write_fsyncs_the_file_and_the_folder_of_a_new_file(
    make_sink: Callable[..., FileSink], fsync_calls: list[str]
) -> None:
    """Creating a file syncs its folder; every write syncs the file before returning."""
    sink = make_sink()
    fsync_calls.clear()
    sink.write([make_receipt(1)])
    assert fsync_calls == ["folder", "file"]
    sink.write([make_receipt(2)])
    assert fsync_calls == ["folder", "file", "file"]


def test_fsync_false_never_syncs(make_sink: Callable[..., FileSink], fsync_calls: list[str]) -> None:
    """With fsync: false, neither the file nor the folder is synced."""
    make_sink("out/new/{message_type}.jsonl", fsync=False).write(make_batch(3))
    assert fsync_calls == []


def test_a_torn_last_line_is_ignored_and_later_lines_start_on_a_line_of_their_own(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """After a crash mid-line, appends start with a newline and the fragment dedupes nothing."""
    # Given a file whose last write stopped mid-line
    path = tmp_path / "out/receipts.jsonl"
    path.parent.mkdir()
    torn = make_receipt(2)
    path.write_bytes(encode_json_line(make_receipt(1).to_json_dict()) + encode_json_line(torn.to_json_dict())[:40])
    # When a sink opens it and writes the torn receipt again
    make_sink().write([torn, make_receipt(1)])
    # Then the fragment sits alone on its line and the receipt is stored whole after it
    lines = path.read_bytes().split(b"\n")
    assert lines[1] == encode_json_line(torn.to_json_dict())[:40]
    assert [json.loads(line)["dedupe_key"] for line in (lines[0], lines[2])] == keys([make_receipt(1), torn])
    assert lines[3:] == [b""]


def test_a_write_torn_by_a_full_disk_accepts_nothing_and_the_retry_stores_every_line(
    make_sink: Callable[..., FileSink], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC after a partial write raises SinkUnavailable; the retry starts on a new line and stores all."""
    # A full disk cannot be made here without mounting a filesystem, so os.write fails as the kernel would.
    sink = make_sink()
    real_write = os.write

    def full_disk(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[:25]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    batch = make_batch(2)
    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(SinkUnavailable, match="No space left on device") as caught:
        sink.write(batch)
    assert caught.value.sink == "archive"
    monkeypatch.setattr(os, "write", real_write)
    assert sink.write(batch).accepted == frozenset(keys(batch))
    lines = (tmp_path / "out/receipts.jsonl").read_bytes().split(b"\n")
    assert len(lines[0]) == 25
    assert [json.loads(line)["dedupe_key"] for line in lines[1:-1]] == keys(batch)


def test_keys_stored_before_a_restart_are_skipped_by_the_preloaded_window(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """A new sink over the live files (one per MessageType) skips receipts stored there."""
    reply = make_receipt(50, message_type="SmsUp", kind="reply")
    first = make_sink("out/{message_type}-%Y-%m-%d.jsonl")
    first.write([*make_batch(5), reply])
    first.close()
    second = make_sink("out/{message_type}-%Y-%m-%d.jsonl")
    assert second.write([*make_batch(6), reply]).accepted == frozenset(keys([*make_batch(6), reply]))
    stored = [k for p in sorted((tmp_path / "out").iterdir()) for k in keys_of(p)]
    assert sorted(stored) == sorted(keys([*make_batch(6), reply]))


def test_preload_ignores_files_that_only_match_the_placeholder(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """A dead-letter file beside the per-MessageType files does not count as storing its receipts."""
    folder = tmp_path / "out"
    folder.mkdir()
    receipt = make_receipt(1)
    (folder / "dead-letter.jsonl").write_bytes(encode_json_line(receipt.to_json_dict()))
    make_sink("out/{message_type}.jsonl").write([receipt])
    assert keys_of(folder / "SmsReport.jsonl") == keys([receipt])


def test_preload_reads_only_the_live_file(make_sink: Callable[..., FileSink], tmp_path: Path) -> None:
    """Keys in a file logrotate renamed away, or in yesterday's file, are not preloaded: only the live file is."""
    clock = Clock(datetime(2026, 11, 22, 23, 59, tzinfo=UTC))
    make_sink("out/%Y-%m-%d.jsonl", clock=clock).write([make_receipt(1)])
    make_sink().write([make_receipt(2)])
    (tmp_path / "out/receipts.jsonl").rename(tmp_path / "out/receipts.jsonl.1")
    clock.at += timedelta(minutes=2)
    make_sink("out/%Y-%m-%d.jsonl", clock=clock).write([make_receipt(1)])
    make_sink().write([make_receipt(2), make_receipt(3)])
    assert keys_of(tmp_path / "out/2026-11-23.jsonl") == keys([make_receipt(1)])
    assert keys_of(tmp_path / "out/receipts.jsonl") == keys([make_receipt(2), make_receipt(3)])


def test_dedupe_window_is_bounded(make_sink: Callable[..., FileSink], tmp_path: Path) -> None:
    """A key pushed out of the window by newer ones is written again."""
    sink = make_sink(dedupe_window=2)
    sink.write(make_batch(3))
    sink.write(make_batch(3))
    assert keys_of(tmp_path / "out/receipts.jsonl") == keys([*make_batch(3), make_receipt(0)])


def test_preload_keeps_the_newest_keys_when_the_files_hold_more_than_the_window(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """With more stored keys than the window holds, a restart remembers the newest ones."""
    make_sink(dedupe_window=1000).write(make_batch(5))
    make_sink(dedupe_window=2).write(make_batch(5))
    assert keys_of(tmp_path / "out/receipts.jsonl") == keys([*make_batch(5), *make_batch(3)])


def test_dedupe_window_zero_writes_repeats_but_collapses_duplicates_within_a_batch(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """With the window off, each batch is written in full, but a receipt twice in one batch is written once."""
    sink = make_sink(dedupe_window=0)
    sink.write([make_receipt(1), make_receipt(1)])
    sink.write([make_receipt(1)])
    assert keys_of(tmp_path / "out/receipts.jsonl") == keys([make_receipt(1)] * 2)


def test_reopen_after_logrotate_renamed_the_file_writes_a_new_file(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """After logrotate renames the file and SIGHUP calls reopen, writes go to a new file at the path."""
    path = tmp_path / "out/receipts.jsonl"
    sink = make_sink()
    sink.write([make_receipt(1)])
    path.rename(tmp_path / "out/receipts.jsonl.1")
    sink.reopen()
    sink.write([make_receipt(2)])
    assert keys_of(path) == keys([make_receipt(2)])
    assert keys_of(tmp_path / "out/receipts.jsonl.1") == keys([make_receipt(1)])


def test_a_file_renamed_away_without_a_signal_is_noticed_at_the_next_write(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """Without reopen, the sink sees the path names another inode and starts a new file there."""
    path = tmp_path / "out/receipts.jsonl"
    sink = make_sink()
    sink.write([make_receipt(1)])
    path.rename(tmp_path / "out/receipts.jsonl-20261122")
    sink.write([make_receipt(2)])
    assert keys_of(path) == keys([make_receipt(2)])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_unusable_folder_raises_sink_unavailable_and_the_next_write_recovers(
    make_sink: Callable[..., FileSink], tmp_path: Path
) -> None:
    """A regular file where the folder should be makes writes unavailable until it is gone."""
    sink = make_sink("out/{message_type}.jsonl")
    (tmp_path / "out").rename(tmp_path / "elsewhere")
    (tmp_path / "out").write_bytes(b"")
    with pytest.raises(SinkUnavailable, match="archive"):
        sink.write([make_receipt(1)])
    (tmp_path / "out").unlink()
    assert sink.write([make_receipt(1)]).accepted == frozenset(keys([make_receipt(1)]))
    assert keys_of(tmp_path / "out/SmsReport.jsonl") == keys([make_receipt(1)])


def test_open_raises_config_error_when_a_regular_file_blocks_the_folder(tmp_path: Path) -> None:
    """A folder that can never be created at start is a configuration error naming the key and the path."""
    (tmp_path / "blocked").write_bytes(b"")
    sink = FileSinkConfig(type="file", path=str(tmp_path / "blocked/sub/{message_type}.jsonl")).build("archive")
    with pytest.raises(ConfigError, match=f"sinks.archive.path: cannot create the folder {tmp_path}/blocked: "):
        sink.open()


def test_concurrent_writers_leave_every_line_whole(make_sink: Callable[..., FileSink], tmp_path: Path) -> None:
    """Batches written from several threads at once all end up stored, one intact line each."""
    sink = make_sink()
    threads = [threading.Thread(target=sink.write, args=(make_batch(50, start=50 * n),)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(keys_of(tmp_path / "out/receipts.jsonl")) == sorted(keys(make_batch(200)))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/x/{queue}.jsonl", "unknown placeholder {queue}"),
        ("/x/{}.jsonl", "unknown placeholder {}"),
        ("/x/{date}.jsonl", "unknown placeholder {date}.*e.g. %Y-%m-%d"),
        ("/x/{date:%Y}.jsonl", "unknown placeholder {date:%Y}.*strftime directives"),
        ("/x/{message_type!r}.jsonl", "unknown placeholder {message_type!r}"),
        ("/x/{message_type:>10}.jsonl", "unknown placeholder {message_type:>10}"),
        ("/x/%Q.jsonl", "unknown strftime directives: %Q"),
        ("/x/receipts.jsonl.100%", "a lone %"),
        ("/x/{message_type.jsonl", "expected '}' before end of string"),
        ("/x/}.jsonl", "Single '}'"),
        ("/x/", "must name a file"),
    ],
)
def test_a_bad_path_template_is_a_validation_error_saying_what_is_wrong(path: str, message: str) -> None:
    """Unknown, malformed or formatted placeholders fail at config time with a clear message."""
    with pytest.raises(ValidationError, match=message):
        FileSinkConfig(type="file", path=path)


def test_literal_braces_are_written_doubled() -> None:
    """{{ and }} stand for literal braces in the file name."""
    config = FileSinkConfig(type="file", path="/x/{{raw}}-{message_type}.jsonl")
    assert config.template().render("SmsUp", NOON) == "/x/{raw}-SmsUp.jsonl"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dedupe_window": -1}, "greater than or equal to 0"),
        ({"file_mode": 0o400}, "must include 0o600"),
        ({"file_mode": "rw-"}, "not an octal number"),
        ({"compress": True}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_are_validation_errors(fields: dict[str, Any], message: str) -> None:
    """Negative windows, unusable modes and unknown keys fail validation."""
    with pytest.raises(ValidationError, match=message):
        FileSinkConfig(**{"type": "file", "path": "/x/receipts.jsonl", **fields})


def test_every_setting_is_documented_with_its_default() -> None:
    """Each config field has a description that states its default."""
    for name, field in FileSinkConfig.model_fields.items():
        assert field.description, name
        assert "Default:" in field.description or "Required" in field.description, name
