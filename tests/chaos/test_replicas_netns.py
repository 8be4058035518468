"""Three replicas on three "hosts" share the queues: kill -9s and a network cut lose nothing and store nothing twice.

Each replica is ``mns-consumer run`` in its own network namespace with its own address, joined by a veth
pair to a bridge in the root namespace (:mod:`tests.support.replica_network`). The emulator listens on
the bridge's address and answers every MNS call 20 ms late (a ``latency`` fault); the database
(PostgreSQL or MariaDB, a fresh table) is reached through a forwarder on the same address, so a
replica's MNS and database traffic both cross its own link. While a topped-up backlog drains, replicas
are killed with SIGKILL and restarted at random instants (``random.Random(23)``, so runs repeat), and
one replica holding a batch is cut off the network for longer than the queue's visibility timeout and
any extension its keeper made, then brought back; the test waits until MNS refused that replica's
deletes of what it held (its handles went stale when another replica took the messages).

The 20 ms come from the emulator rather than ``tc qdisc ... netem`` on the veths, which would delay real
packets but needs the kernel's sch_netem, missing on these machines (``Specified qdisc kind is unknown``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mns_consumer.emulator import Emulator, QueueDefaults
from mns_consumer.emulator.samples import GeneratedReceipt
from mns_consumer.sinks.dead_letter import read_dead_letters
from tests.chaos.checks import duplicated_keys
from tests.conftest import service_unavailable
from tests.e2e.daemon_harness import daemon_config, expected_receipts, queue_total, table_keys, wait_until, write_config
from tests.support.replica_daemons import NamespacedDaemon, Replica, batches_held, event_time
from tests.support.replica_network import BoundTcpProxy, NetworkUnavailable, ReplicaNetwork
from tests.support.sink_env_database import SERVERS, ServerEnv

REPLICAS = 3
QUEUES = {"SmsReport": "Alicom-Queue-replicas-SmsReport", "SmsUp": "Alicom-Queue-replicas-SmsUp"}
MNS_LATENCY_SECONDS = 0.02
VISIBILITY_SECONDS = 3
EXTENSION_SECONDS = 5
"""The shortest extension the daemon allows (``visibility_extension_seconds``): what the keeper may add."""
CUT_SECONDS = EXTENSION_SECONDS + 2
"""Longer than the visibility timeout and than an extension made just before the cut."""
LOW_WATER = 300
"""Receipts kept visible in each queue while the chaos lasts, so every kill and the cut land mid-drain."""
TOP_UP = 200
KILLS = 4
DRAIN_DEADLINE_SECONDS = 120.0


class Feeder:
    """Keeps each queue's backlog above :data:`LOW_WATER` from a thread, and remembers what it produced."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.generated: list[GeneratedReceipt] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.05):
                for message_type, queue_name in QUEUES.items():
                    if self.emulator.queue(queue_name).counts().active < LOW_WATER:
                        self.generated += self.emulator.produce(message_type, TOP_UP)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the test thread by stop())
            self.errors.append(exc)

    def stop(self) -> None:
        """Stop producing; raise what the thread raised."""
        self.halt()
        if self.errors:
            raise self.errors[0]

    def halt(self) -> None:
        """Stop producing (also after a failure: a second call does nothing)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


@pytest.fixture
def network() -> Iterator[ReplicaNetwork]:
    """A bridge and one namespace per replica, removed afterwards (skips where namespaces cannot be made)."""
    try:
        made = ReplicaNetwork(REPLICAS)
    except NetworkUnavailable as exc:
        service_unavailable(f"cannot make network namespaces: {exc}")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=["postgresql", "mariadb"])
def database(request: pytest.FixtureRequest, network: ReplicaNetwork) -> Iterator[tuple[ServerEnv, str]]:
    """A fresh table, and the URL that reaches its server through a forwarder on the bridge's address."""
    env = ServerEnv(request.param)
    forwarder = BoundTcpProxy(network.server_address, "127.0.0.1", SERVERS[request.param][3]).start()
    url = sa.make_url(env.url).set(host=network.server_address, port=forwarder.port)
    try:
        yield env, url.render_as_string(hide_password=False)
    finally:
        forwarder.stop()
        env.close()


def _row_count(engine: sa.Engine, table: str) -> int:
    if not sa.inspect(engine).has_table(table):
        return 0
    with engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def _cut_mid_batch(network: ReplicaNetwork, replica: Replica) -> datetime:
    """Wait until ``replica`` holds a received batch not yet deleted, then cut its link; returns when."""
    wait_until(
        lambda: bool(batches_held(replica.current, datetime.now(UTC))),
        f"replica {replica.index} holding a batch",
        diagnose=replica.describe,
    )
    network.cut(replica.index)
    return datetime.now(UTC)


def _cut_off(network: ReplicaNetwork, replica: Replica) -> tuple[NamespacedDaemon, datetime]:
    """Cut ``replica`` off mid-batch for :data:`CUT_SECONDS`, then wait until MNS refused its stale deletes.

    Returns:
        The incarnation that was cut, and when.
    """
    daemon, cut_at = replica.current, _cut_mid_batch(network, replica)
    time.sleep(CUT_SECONDS)
    network.restore(replica.index)
    # What it held went to another replica meanwhile: once back, its deletes of it are refused.
    wait_until(
        lambda: any(event_time(e) > cut_at for e in daemon.events_named("receipts.delete_failed")),
        f"replica {replica.index} refused the deletes of what it held when cut",
        diagnose=replica.describe,
    )
    return daemon, cut_at


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_replicas_on_separate_hosts_share_the_queues_and_store_each_receipt_once_through_kills_and_a_cut(
    make_emulator: Callable[..., Emulator],
    network: ReplicaNetwork,
    database: tuple[ServerEnv, str],
    tmp_path: Path,
) -> None:
    """Through kill -9s and a network cut, each receipt is stored exactly once, by three replicas that all worked."""
    env, url = database
    rng = random.Random(23)
    # Given an emulator on the bridge answering MNS 20 ms late, a 3 s visibility timeout, and three replicas
    emulator = make_emulator(
        host=network.server_address,
        queues=dict(QUEUES),
        queue_defaults=QueueDefaults(visibility_timeout_seconds=VISIBILITY_SECONDS),
    )
    emulator.add_fault(kind="latency", service="mns", seconds=MNS_LATENCY_SECONDS)
    replicas: list[Replica] = []
    for index in range(REPLICAS):
        folder = tmp_path / f"replica-{index}"
        folder.mkdir()
        config = daemon_config(
            emulator,
            {"db": {"type": "database", "url": url, "table": env.table, "connect_timeout_seconds": 2}},
            folder / "dead.jsonl",
            queue_settings={"visibility_extension_seconds": EXTENSION_SECONDS},
            logging={"format": "json", "level": "debug"},
        )
        replicas.append(Replica(network, index, write_config(folder / "config.yaml", config)))

    feeder = Feeder(emulator).start()
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.current.wait_ready()

        # When replicas are killed -9 and restarted at random while the backlog drains, and one is cut off
        cut = replicas[rng.randrange(REPLICAS)]
        cut_daemon, cut_at = None, None
        for kill in range(KILLS):
            time.sleep(rng.uniform(0.5, 1.5))
            victim = replicas[rng.randrange(REPLICAS)]
            victim.kill()
            time.sleep(rng.uniform(0.0, 1.0))
            victim.start().wait_ready()
            if kill == 1:
                cut_daemon, cut_at = _cut_off(network, cut)
        feeder.stop()

        expected = set(expected_receipts(emulator, feeder.generated))
        wait_until(
            lambda: queue_total(emulator) == 0 and _row_count(env.admin, env.table) >= len(expected),
            "every receipt stored and deleted",
            deadline_seconds=DRAIN_DEADLINE_SECONDS,
            diagnose=lambda: "\n".join(replica.describe() for replica in replicas),
        )
        for replica in replicas:
            assert replica.current.stop() == 0, replica.describe()
    finally:
        feeder.halt()
        for replica in replicas:
            replica.kill()

    # Then every seeded receipt is in the table exactly once, and nothing is left in the queues
    assert duplicated_keys(env.admin, env.table) == []
    assert set(table_keys(env.admin, env.table)) == expected
    assert queue_total(emulator) == 0
    # And every replica stored some of them (the work was shared), none crashed, none dead-lettered
    for replica in replicas:
        stored = sum(int(event["accepted"]) for event in replica.events_named("sink.written"))
        assert stored > 0, f"replica {replica.index} stored nothing: {replica.describe()}"
        assert not replica.events_named("poller.crashed"), replica.describe()
        dead = replica.config_path.parent / "dead.jsonl"
        assert not dead.exists() or list(read_dead_letters(dead)) == []
    # And the cut replica was mid-batch: it held a batch it had not deleted a second after the cut
    assert cut_daemon is not None
    assert cut_at is not None
    assert batches_held(cut_daemon, cut_at, settle=cut_at + timedelta(seconds=1)), cut.describe()
