"""The soak of ``make soak`` (bench/soak.py), compressed to two minutes, and the judge behind its bounds.

The two-minute form runs the same code as the 30-minute one: the emulator and two daemons as
subprocesses, steady seeding and pushes, and all six faults, each window a few seconds. Its bounds
are about growth and recovery, not speed, so a loaded machine slows it without failing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import service_unavailable
from tests.support.bench_scripts import bench_module

soak = bench_module("soak", "soak_bench")


def _require_postgres() -> None:
    engine = sa.create_engine(soak.POSTGRES_URL.format(port=5432), connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except (sa.exc.OperationalError, sa.exc.InterfaceError):
        service_unavailable("PostgreSQL is not running on 127.0.0.1:5432")
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_two_minute_soak_with_every_fault_loses_nothing_and_grows_nothing(tmp_path: Path) -> None:
    """Two minutes of traffic through six faults: every bound holds and every receipt is stored once."""
    _require_postgres()
    # Given the soak compressed to two minutes (windows of ~5 s), at half the default rate
    settings = soak.SoakSettings(minutes=2, rate_per_second=100, sample_seconds=2, out=tmp_path)
    # When it runs
    result = soak.run_soak(settings, log=lambda line: None)
    written = soak.write_report(result, tmp_path)
    # Then every check passed, all six faults were switched on and traffic really flowed through them
    assert result.failures == [], soak.markdown(result)
    assert [window.name for window in result.faults] == list(soak.FAULTS)
    assert result.summary["faults_survived"] == len(soak.FAULTS)
    assert result.verification["expected"] >= 5000
    assert result.verification["missing"] == 0
    assert result.verification["doubled"] == 0
    assert {path.name for path in written} >= {"soak.json", "soak.md"}


# -- the judge, on made-up samples -----------------------------------------------------------------


def _samples(seconds: float, **series: Any) -> list[dict[str, float | str]]:
    """A sample a second; each series is a function of t (s)."""
    return [
        {"t": float(t), **{key: float(value(t)) if callable(value) else value for key, value in series.items()}}
        for t in range(int(seconds) + 1)
    ]


def _verification(**overrides: Any) -> dict[str, Any]:
    base = {
        "drained": True,
        "expected": 100,
        "missing": 0,
        "doubled": 0,
        "unexpected": 0,
        "traffic_errors": [],
        "dead_letters": 0,
        "exit_codes": {"daemon": 0, "replica": 0},
        "watched_daemon_starts": 1,
    }
    return {**base, **overrides}


def _failed(samples: list[dict[str, float | str]], **verification: Any) -> set[str]:
    settings = soak.SoakSettings(minutes=10)
    checks = soak.judge(settings, samples, soak.fault_schedule(settings.seconds), _verification(**verification))
    return {check["name"] for check in checks if not check["ok"]}


STEADY = {"rss_mb": lambda t: 80.0, "fds": lambda t: 20.0, "threads": lambda t: 16.0, "lag_seconds": lambda t: 0.5}


def test_the_judge_passes_a_steady_run() -> None:
    assert _failed(_samples(600, **STEADY)) == set()


def test_the_judge_fails_rss_that_keeps_growing_beyond_the_bound() -> None:
    # 80 MiB at the baseline (60-90 s), ~+25 MiB by the last 20%: over max(20 MiB, 25% of 80)
    growing = {**STEADY, "rss_mb": lambda t: 80.0 + 0.06 * max(0.0, t - 75)}
    assert _failed(_samples(600, **growing)) == {"rss"}


def test_the_judge_fails_descriptors_and_threads_that_keep_growing() -> None:
    # A leak grows through the quiet tail too (0.75-0.8 of the run against its last 20%): one that has
    # grown all along also passes the keepers' bound, and one that only began late is still caught
    leaking = {**STEADY, "fds": lambda t: 20.0 + t / 10, "threads": lambda t: 16.0 + t / 15}
    tail_only = {"fds in the quiet tail", "threads in the quiet tail"}
    assert _failed(_samples(600, **leaking)) == {"fds", "threads", *tail_only}
    late = {
        **STEADY,
        "fds": lambda t: 20.0 + max(0.0, t - 480) / 10,
        "threads": lambda t: 16.0 + max(0.0, t - 480) / 15,
    }
    assert _failed(_samples(600, **late)) == tail_only


def test_the_judge_fails_descriptors_and_threads_past_the_keepers_pool() -> None:
    pool = soak.KEEPER_POOL_PER_QUEUE * len(soak.SEEDED_SHARES)
    swollen = {
        **STEADY,
        "fds": lambda t: 20.0 + (pool + 10) * (t > 300),
        "threads": lambda t: 16.0 + (pool + 5) * (t > 300),
    }
    assert _failed(_samples(600, **swollen)) == {"fds", "threads"}


def test_the_judge_passes_the_visibility_keepers_that_a_slow_sink_started() -> None:
    parked = {**STEADY, "fds": lambda t: 20.0 + 8 * (t > 300), "threads": lambda t: 16.0 + 8 * (t > 300)}
    assert _failed(_samples(600, **parked)) == set()


def test_the_judge_fails_lag_that_stays_high_after_a_fault() -> None:
    # The sink outage is the fifth window (slots of 60 s from 90 s: 330-354 s); lag stays up for longer
    # than the recovery allowance (60 s, more than the 36 s until the replica kill's window)
    stuck = {**STEADY, "lag_seconds": lambda t: 60.0 if 330 <= t < 430 else 0.5}
    assert _failed(_samples(600, **stuck)) == {"lag after sink_outage"}


def test_the_judge_fails_lost_doubled_and_dead_lettered_receipts_and_unclean_exits() -> None:
    failed = _failed(
        _samples(600, **STEADY),
        missing=1,
        doubled=2,
        dead_letters=1,
        exit_codes={"daemon": 0, "replica": 1},
        watched_daemon_starts=2,
    )
    assert failed == {
        "nothing lost",
        "nothing doubled",
        "no dead letters",
        "clean exits",
        "watched daemon never restarted",
    }
