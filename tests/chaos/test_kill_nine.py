"""kill -9 at random instants: whatever a killed daemon held comes back from MNS, and nothing is stored twice.

Each trial seeds receipts into two queues, starts the daemon against a PostgreSQL sink, kills it with
SIGKILL at a random instant after it is ready (``random.Random(trial)``, so runs repeat), restarts it,
lets it finish and stops it with SIGTERM. The queues' 3 s visibility timeout brings back what the
killed process had received but not deleted.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from mns_consumer.emulator import Emulator, QueueDefaults
from tests.chaos.checks import assert_stored_once, restart_until_stored
from tests.e2e.daemon_harness import DaemonFactory, daemon_config, expected_receipts, postgres_sink
from tests.support.sink_env_database import ServerEnv

TRIALS = 10
RECEIPTS_PER_QUEUE = 150
MAX_KILL_DELAY_SECONDS = 1.5
QUEUES = {"SmsReport": "Alicom-Queue-chaos-SmsReport", "SmsUp": "Alicom-Queue-chaos-SmsUp"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_nine_at_random_instants_loses_nothing_and_stores_nothing_twice(
    make_emulator, daemons: DaemonFactory, postgres: ServerEnv, tmp_path: Path
) -> None:
    """After ten SIGKILLs at random instants and restarts, every seeded receipt is in PostgreSQL exactly once."""
    # Given two queues with a 3 s visibility timeout and a daemon configuration writing to PostgreSQL
    emulator: Emulator = make_emulator(queues=dict(QUEUES), queue_defaults=QueueDefaults(visibility_timeout_seconds=3))
    dead = tmp_path / "dead.jsonl"
    config = daemons.write(
        daemon_config(
            emulator,
            {"db": postgres_sink(postgres)},
            dead,
        )
    )
    expected: set[str] = set()

    for trial in range(TRIALS):
        # When receipts are seeded, the daemon is killed -9 at a random instant, restarted and left to finish
        rng = random.Random(trial)
        generated = [item for message_type in QUEUES for item in emulator.produce(message_type, RECEIPTS_PER_QUEUE)]
        fresh = set(expected_receipts(emulator, generated))
        assert not fresh & expected
        expected |= fresh
        victim = daemons.start(config)
        time.sleep(rng.uniform(0, MAX_KILL_DELAY_SECONDS))
        victim.kill()

        restart_until_stored(daemons, config, emulator, postgres, len(expected), trial)

    # Then every seeded receipt is stored exactly once, nothing was dead-lettered, and the queues are empty
    assert_stored_once(postgres, emulator, expected, TRIALS * RECEIPTS_PER_QUEUE * len(QUEUES), dead)
