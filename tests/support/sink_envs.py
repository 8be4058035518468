"""Environments in which one sink runs against its real destination, for the shared contract suite.

Each sink kind provides a factory in ``tests/support/sink_env_<kind>.py`` registered in :data:`ENVS`.
An environment owns its destination (a temporary folder, a fresh table, a local HTTP receiver, a moto
server) and can make it unavailable and bring it back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import Sink


class SinkEnv(Protocol):
    """One sink kind under test with its real destination."""

    def make_sink(self) -> Sink:
        """A new sink from its config (not opened) writing to this environment's destination."""

    def stored_keys(self) -> list[str]:
        """Every dedupe key stored at the destination, one entry per stored copy (duplicates repeat)."""

    def rejectable(self, base: Receipt) -> Receipt | None:
        """A variant of ``base`` this sink permanently rejects, or None if it rejects nothing."""

    def make_unavailable(self) -> None:
        """Take the destination away (server stopped, port closed, folder gone, database locked)."""

    def restore(self) -> None:
        """Bring the destination back as it was."""

    def close(self) -> None:
        """Release everything the environment made."""


EnvFactory = Callable[[Path], SinkEnv]
"""Builds an environment in a temporary folder; skips (or fails, when services are required) when
its server is absent."""

ENV_MODULES = {
    "file": "tests.support.sink_env_file",
    "sqlite": "tests.support.sink_env_database",
    "postgresql": "tests.support.sink_env_database",
    "mariadb": "tests.support.sink_env_database",
    "webhook": "tests.support.sink_env_webhook",
    "s3": "tests.support.sink_env_s3",
}
