"""Paths that can never be opened are refused at load; paths the daemon can still create are not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mns_consumer.config import Config, parse_config
from mns_consumer.errors import ConfigError


def data(folder: Path, **top: Any) -> dict[str, Any]:
    return {
        "queues": [{"message_type": "SmsReport", "queue_name": "q1", "sinks": ["archive"]}],
        "sinks": {"archive": {"type": "file", "path": str(folder / "new" / "{message_type}" / "%Y-%m-%d.jsonl")}},
        "dead_letter": {"type": "file", "path": str(folder / "letters" / "dead.jsonl")},
        **top,
    }


def load(folder: Path, **top: Any) -> Config:
    return parse_config(data(folder, **top), "config.yaml")


def test_missing_folders_the_daemon_creates_are_accepted(tmp_path: Path) -> None:
    """Sinks and dead letters create their folders, so a folder that is not there yet is fine."""
    assert load(tmp_path).dead_letter is not None


def test_a_log_file_on_a_character_device_is_accepted(tmp_path: Path) -> None:
    """/dev/stderr resolves into /proc, but is a fine log file: paths are judged as written."""
    assert load(tmp_path, logging={"file": "/dev/stderr"}).logging.file == "/dev/stderr"


ROUTE = {"path": "/alicom/SmsUp", "message_type": "SmsUp", "sinks": ["archive"]}


@pytest.mark.parametrize(
    ("section", "key_path", "problem"),
    [
        (lambda folder: {"push": {"spool_path": str(folder), "routes": [ROUTE]}}, "push.spool_path", "is a folder"),
        (lambda _: {"logging": {"file": "/sys/kernel/mns.log"}}, "logging.file", "under /proc or /sys"),
        (lambda folder: {"logging": {"file": f"{folder}/no/such/mns.log"}}, "logging.file", "does not exist"),
    ],
    ids=["spool-is-a-folder", "log-under-sys", "log-in-missing-folder"],
)
def test_paths_that_cannot_work_are_refused(
    tmp_path: Path, section: Callable[[Path], dict[str, Any]], key_path: str, problem: str
) -> None:
    """Each refused path names its key and why it can never be opened."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, **section(tmp_path))
    assert caught.value.key_path == key_path
    assert problem in caught.value.problem


def test_a_file_sink_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """The fixed folder of a path template must not be a regular file."""
    (tmp_path / "new").write_text("not a folder")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert caught.value.key_path == "sinks.archive.path"
    assert f"{str(tmp_path / 'new')!r} is a file, not a folder" in caught.value.problem
