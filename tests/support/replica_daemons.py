"""Replicas of ``mns-consumer run``, each in its own network namespace, each restartable after kill -9.

A :class:`Replica` is one "host": a namespace of a :class:`~tests.support.replica_network.ReplicaNetwork`
and a configuration file of its own. Each start makes a new incarnation (a
:class:`~tests.e2e.daemon_harness.Daemon` whose command runs inside the namespace), and the log events of
every incarnation stay readable, so a test can tell what a replica did over its whole life.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.daemon_harness import Daemon, clean_env
from tests.support.replica_network import ReplicaNetwork


class NamespacedDaemon(Daemon):
    """A :class:`Daemon` started inside a replica's namespace (``ip netns exec`` execs, so the pid is Python's)."""

    def __init__(self, network: ReplicaNetwork, index: int, config_path: Path, output_dir: Path, label: str) -> None:
        super().__init__(config_path, output_dir, label)
        self.network = network
        self.index = index

    def start(self) -> NamespacedDaemon:
        """Start the process in the namespace (returns at once; see :meth:`wait_ready`)."""
        argv = [sys.executable, "-m", "mns_consumer", "run", "--config", str(self.config_path)]
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                self.network.command(self.index, argv),
                stdout=stdout,
                stderr=stderr,
                env=clean_env(),
                cwd=self.config_path.parent,
            )
        return self


class Replica:
    """One replica "host": its namespace, its configuration and every process it has run."""

    def __init__(self, network: ReplicaNetwork, index: int, config_path: Path) -> None:
        self.network = network
        self.index = index
        self.config_path = config_path
        self.incarnations: list[NamespacedDaemon] = []

    @property
    def current(self) -> NamespacedDaemon:
        """The latest incarnation."""
        return self.incarnations[-1]

    def start(self) -> NamespacedDaemon:
        """Start a new incarnation (without waiting for it to be ready)."""
        label = f"replica-{self.index}-{len(self.incarnations) + 1}"
        daemon = NamespacedDaemon(self.network, self.index, self.config_path, self.config_path.parent, label)
        self.incarnations.append(daemon)
        return daemon.start()

    def kill(self) -> None:
        """SIGKILL the current incarnation (if running) and reap it."""
        if self.incarnations:
            self.current.kill()

    def events_named(self, name: str) -> list[dict[str, Any]]:
        """The log events with this name, over every incarnation."""
        return [event for daemon in self.incarnations for event in daemon.events_named(name)]

    def describe(self) -> str:
        """Every incarnation's status and stderr tail, for failure messages."""
        return "\n".join(f"replica {self.index} #{n + 1}: {d.describe()}" for n, d in enumerate(self.incarnations))


def event_time(event: dict[str, Any]) -> datetime:
    """When a log event was written (its ``ts``, ISO 8601 UTC)."""
    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00"))


def batches_held(daemon: Daemon, at: datetime, *, settle: datetime | None = None) -> set[tuple[str, int]]:
    """The (queue, batch id) a daemon had received by ``at`` and not deleted by ``settle`` (default ``at``).

    This reads the daemon's debug log (``batch.received`` and ``receipts.deleted``).
    """
    settle = settle or at
    events = daemon.events()
    received = {
        (event["queue"], int(event["batch_id"]))
        for event in events
        if event["event"] == "batch.received" and event_time(event) <= at
    }
    deleted = {
        (event["queue"], int(event["batch_id"]))
        for event in events
        if event["event"] == "receipts.deleted" and event_time(event) <= settle
    }
    return received - deleted
