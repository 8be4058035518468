"""kill -9 while several receivers drain a backlog: what they held comes back from MNS, nothing is stored twice.

Each trial seeds a backlog behind a 20 ms WAN, starts the daemon against a PostgreSQL sink, waits until
``/metrics`` shows more than one receiver, kills it with SIGKILL, restarts it and lets it finish. The
queue's 3 s visibility timeout brings back whatever the killed process had received and not deleted.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mns_consumer.emulator import Emulator, QueueDefaults, WanProfile
from tests.chaos.checks import assert_stored_once, restart_until_stored
from tests.e2e.daemon_harness import (
    DaemonFactory,
    daemon_config,
    expected_receipts,
    postgres_sink,
    queue_total,
    wait_until,
)
from tests.support.sink_env_database import ServerEnv

TRIALS = 3
RECEIPTS = 3000
BACKLOGS_PER_TRIAL = 3
"""Backlogs seeded in a trial before receivers that never rose fail it."""
QUEUES = {"SmsReport": "Alicom-Queue-chaos2-SmsReport"}


def receivers(url: str) -> float:
    """``mns_consumer_receivers`` of the queue, 0 if the endpoint does not answer yet."""
    try:
        text = httpx.get(url, trust_env=False, timeout=2).text
    except httpx.HTTPError:
        return 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mns_consumer_receivers":
                return float(sample.value)
    return 0.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_nine_during_concurrent_receives_loses_nothing_and_stores_nothing_twice(
    make_emulator, daemons: DaemonFactory, postgres: ServerEnv, tmp_path: Path
) -> None:
    """SIGKILL while several receivers hold batches, then a restart: every receipt in PostgreSQL exactly once."""
    # Given a queue behind a WAN with a 3 s visibility timeout and a daemon configuration writing to PostgreSQL
    emulator: Emulator = make_emulator(
        queues=dict(QUEUES), queue_defaults=QueueDefaults(visibility_timeout_seconds=3), wan=WanProfile(0.02, 0.002)
    )
    dead = tmp_path / "dead.jsonl"
    config = daemons.write(
        daemon_config(
            emulator,
            # Receivers rise only while the sink keeps up, and the status projection's upserts slow each
            # write enough to drain this backlog with one receiver: it is tested apart.
            {"db": postgres_sink(postgres, status_table=False, opt_out_table=False)},
            dead,
        )
    )
    expected: set[str] = set()
    seeded = 0

    def seed() -> None:
        nonlocal seeded
        fresh = set(expected_receipts(emulator, emulator.produce("SmsReport", RECEIPTS)))
        assert not fresh & expected
        expected.update(fresh)
        seeded += RECEIPTS

    for trial in range(TRIALS):
        # When a backlog is seeded, the daemon killed -9 while it runs several receivers, restarted and left to finish
        rng = random.Random(trial)
        seed()
        victim = daemons.start(config)
        url = victim.http_url("/metrics")

        def concurrent(url: str = url) -> bool:
            """Several receivers, with enough backlog left that the kill below still finds it."""
            waiting = emulator.queue(QUEUES["SmsReport"]).counts().active
            return waiting >= RECEIPTS // 3 and receivers(url) > 1

        for _ in range(BACKLOGS_PER_TRIAL):
            wait_until(
                lambda: concurrent() or queue_total(emulator) == 0,
                f"trial {trial}: receivers rising or the backlog drained",
                diagnose=victim.describe,
            )
            if concurrent():
                break
            # Receivers rise only while the sink keeps up: a PostgreSQL slow for a moment (a checkpoint on a
            # busy machine) lets one receiver drain the whole backlog, or most of it before they rise. That
            # is the daemon behaving; seed again.
            seed()
        else:
            pytest.fail(f"trial {trial}: receivers never rose above one through {BACKLOGS_PER_TRIAL} backlogs")
        time.sleep(rng.uniform(0, 0.3))
        victim.kill()
        assert emulator.queue(QUEUES["SmsReport"]).counts().active > 0, "killed after the backlog was gone"

        restart_until_stored(daemons, config, emulator, postgres, len(expected), trial)

    # Then every seeded receipt is stored exactly once, nothing was dead-lettered, and the queue is empty
    assert_stored_once(postgres, emulator, expected, seeded, dead)
