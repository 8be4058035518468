"""``mns_consumer.files``: private modes whatever the umask, and which errors need an operator."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mns_consumer.files import (
    check_can_create_in,
    create_private_file,
    ensure_private_dir,
    needs_operator,
    open_private,
)

UMASKS = [0o000, 0o022, 0o077, 0o277]


@pytest.fixture(params=UMASKS, ids=[f"umask-{u:03o}" for u in UMASKS])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under each umask, restoring the previous one afterwards."""
    value: int = request.param
    previous = os.umask(value)
    try:
        yield value
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    """Permission bits of a path."""
    return stat.S_IMODE(path.stat().st_mode)


def test_open_private_creates_a_0600_file_in_0700_folders_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """The umask can neither widen nor narrow the modes of what is created."""
    path = tmp_path / "a" / "b" / "file.log"
    os.close(open_private(str(path), os.O_WRONLY | os.O_APPEND, make_dirs=True, fsync=True))
    assert mode(path) == 0o600
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700


def test_open_private_leaves_an_existing_file_its_mode(tmp_path: Path) -> None:
    """A file the operator made (say 0640 for a log reader group) keeps that mode."""
    path = tmp_path / "file.log"
    path.write_text("kept\n")
    path.chmod(0o640)
    fd = open_private(str(path), os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"more\n")
    os.close(fd)
    assert mode(path) == 0o640
    assert path.read_text() == "kept\nmore\n"


def test_ensure_private_dir_reports_what_it_made_and_leaves_existing_folders_alone(tmp_path: Path) -> None:
    """Only missing folders are created (0700); an existing one keeps its mode."""
    (tmp_path / "old").mkdir(mode=0o755)
    (tmp_path / "old").chmod(0o755)
    created = ensure_private_dir(str(tmp_path / "old" / "new" / "newer"))
    assert created == [str(tmp_path / "old" / "new"), str(tmp_path / "old" / "new" / "newer")]
    assert mode(tmp_path / "old") == 0o755


def test_a_regular_file_in_the_way_is_an_error_naming_it_that_needs_an_operator(tmp_path: Path) -> None:
    """Under a regular file no folder can be made: the error says where, and retrying will not help."""
    (tmp_path / "blocked").write_text("")
    with pytest.raises(NotADirectoryError) as caught:
        ensure_private_dir(str(tmp_path / "blocked" / "sub"))
    assert caught.value.filename in (str(tmp_path / "blocked"), str(tmp_path / "blocked" / "sub"))
    assert needs_operator(caught.value)
    assert not needs_operator(OSError(errno.ENOSPC, "No space left on device"))


def test_sqlite_gives_its_wal_and_shm_files_the_mode_of_a_precreated_database(tmp_path: Path, umask: int) -> None:
    """Why the database file is created first: SQLite's own files then follow its 0600."""
    path = tmp_path / "db" / "receipts.db"
    assert create_private_file(str(path))
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    try:
        assert {name: mode(tmp_path / "db" / name) for name in os.listdir(tmp_path / "db")} == {
            "receipts.db": 0o600,
            "receipts.db-wal": 0o600,
            "receipts.db-shm": 0o600,
        }
    finally:
        connection.close()
    assert not create_private_file(str(path))


def test_check_can_create_in_tests_an_existing_folder_for_real_and_leaves_nothing(tmp_path: Path) -> None:
    """The check of an existing folder creates a file there and removes it."""
    assert check_can_create_in(str(tmp_path)) == f"{tmp_path} is writable"
    assert list(tmp_path.iterdir()) == []


def test_check_can_create_in_judges_a_missing_folder_by_its_nearest_ancestor(tmp_path: Path) -> None:
    """A missing folder is not created by the check; a regular file on the way fails it."""
    assert "will be created (0700)" in check_can_create_in(str(tmp_path / "x" / "y"))
    assert not (tmp_path / "x").exists()
    (tmp_path / "blocked").write_text("")
    with pytest.raises(NotADirectoryError) as caught:
        check_can_create_in(str(tmp_path / "blocked" / "y"))
    assert caught.value.filename == str(tmp_path / "blocked")
