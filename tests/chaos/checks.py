"""What the chaos tests check: a restarted daemon finishes the queue, and each receipt is stored once."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mns_consumer.emulator import Emulator
from mns_consumer.sinks.dead_letter import read_dead_letters
from tests.e2e.daemon_harness import DaemonFactory, queue_total, table_keys, wait_until
from tests.support.sink_env_database import ServerEnv


def duplicated_keys(engine: sa.Engine, table: str) -> list[str]:
    """Dedupe keys stored more than once."""
    query = sa.text(f"SELECT dedupe_key FROM {table} GROUP BY dedupe_key HAVING count(*) > 1")  # noqa: S608
    with engine.connect() as connection:
        return list(connection.execute(query).scalars())


def restart_until_stored(
    daemons: DaemonFactory, config: Path, emulator: Emulator, postgres: ServerEnv, total: int, trial: int
) -> None:
    """Start the daemon again, wait until the queues are empty and ``total`` rows stored, stop it cleanly."""
    survivor = daemons.start(config)
    wait_until(
        lambda: queue_total(emulator) == 0 and len(table_keys(postgres.admin, postgres.table)) == total,
        f"trial {trial}: every receipt stored after the restart",
        diagnose=survivor.describe,
    )
    assert survivor.stop() == 0, survivor.describe()
    assert not survivor.events_named("poller.crashed")


def assert_stored_once(postgres: ServerEnv, emulator: Emulator, expected: set[str], count: int, dead: Path) -> None:
    """Every expected receipt stored exactly once (``count`` in all), nothing dead-lettered, the queues empty."""
    assert duplicated_keys(postgres.admin, postgres.table) == []
    keys = table_keys(postgres.admin, postgres.table)
    assert len(keys) == len(expected) == count
    assert set(keys) == expected
    assert queue_total(emulator) == 0
    assert not dead.exists() or list(read_dead_letters(dead)) == []
