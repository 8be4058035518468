"""Fixtures of the daemon's end-to-end tests: daemon processes, and a PostgreSQL table behind a cut-able proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.daemon_harness import DaemonFactory
from tests.support.sink_env_database import ServerEnv


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    """Starts daemons from configurations written to the test's folder; kills any still running afterwards."""
    factory = DaemonFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.kill_all()


@pytest.fixture
def postgres() -> Iterator[ServerEnv]:
    """A fresh table on the machine's PostgreSQL, reached through a proxy the test can cut; dropped afterwards."""
    env = ServerEnv("postgresql")
    try:
        yield env
    finally:
        env.close()
