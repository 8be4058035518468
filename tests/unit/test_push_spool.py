"""The push spool: a durable FIFO per route that survives restarts and only forgets what was removed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mns_consumer.errors import SpoolUnavailable
from mns_consumer.push.spool import Spool


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    opened = Spool(tmp_path / "state" / "spool.db")
    opened.open()
    yield opened
    opened.close()


def test_entries_come_back_per_route_in_the_order_they_were_appended(spool: Spool) -> None:
    """take() returns a route's oldest entries first and never another route's."""
    for index in range(3):
        spool.append("push:SmsReport", "SmsReport", f"[{index}]".encode(), 1)
    spool.append("push:SmsUp", "SmsUp", b"[9]", 1)
    taken = spool.take("push:SmsReport", 2)
    assert [entry.body for entry in taken] == [b"[0]", b"[1]"]
    assert {entry.route for entry in taken} == {"push:SmsReport"}
    assert [entry.body for entry in spool.take("push:SmsUp", 10)] == [b"[9]"]


def test_taking_does_not_remove_and_removing_forgets_only_the_given_entries(spool: Spool) -> None:
    """An entry stays until remove(); then only the removed ones are gone."""
    for index in range(3):
        spool.append("push:SmsReport", "SmsReport", f"[{index}]".encode(), 1)
    first = spool.take("push:SmsReport", 2)
    assert len(spool.take("push:SmsReport", 10)) == 3
    spool.remove(first)
    assert [entry.body for entry in spool.take("push:SmsReport", 10)] == [b"[2]"]
    assert spool.depth("push:SmsReport") == 1
    assert spool.depth() == 1


def test_entries_survive_closing_and_reopening(tmp_path: Path) -> None:
    """What an earlier run left is counted and delivered by the next one."""
    path = tmp_path / "spool.db"
    first = Spool(path)
    first.open()
    first.append("push:SmsUp", "SmsUp", b'[{"a":1}]', 1)
    first.close()
    second = Spool(path)
    second.open()
    try:
        assert second.depths() == {"push:SmsUp": 1}
        (entry,) = second.take("push:SmsUp", 10)
        assert (entry.message_type, entry.body, entry.receipts) == ("SmsUp", b'[{"a":1}]', 1)
    finally:
        second.close()


def test_the_spool_file_and_its_new_folder_are_private(spool: Spool) -> None:
    """Receipts hold phone numbers: 0600 in a 0700 folder, whatever the umask."""
    assert stat.S_IMODE(os.stat(spool.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(spool.path.parent).st_mode) == 0o700


def test_the_oldest_age_is_zero_when_nothing_waits(spool: Spool) -> None:
    """The oldest-age gauge reads 0 for an empty route and a small age for a waiting one."""
    assert spool.oldest_age_seconds("push:SmsReport") == 0.0
    spool.append("push:SmsReport", "SmsReport", b"[1]", 1)
    assert 0.0 <= spool.oldest_age_seconds("push:SmsReport") < 3600


def test_a_closed_spool_refuses_appends_with_spool_unavailable(spool: Spool) -> None:
    """A push that cannot be stored raises SpoolUnavailable, so the receiver answers 503."""
    spool.close()
    with pytest.raises(SpoolUnavailable):
        spool.append("push:SmsReport", "SmsReport", b"[1]", 1)


def test_an_unusable_path_is_reported_as_spool_unavailable(tmp_path: Path) -> None:
    """A spool under a regular file cannot be opened."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SpoolUnavailable):
        Spool(blocker / "spool.db").open()
