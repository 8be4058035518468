"""The SQLite sink at a steady rate: CPU per receipt and enqueue-to-delete latency, per setting.

Each round runs the daemon (SQLite sink only) once per ``--variant`` (JSON merged into the sink's
settings; by default one run as configured) against a fresh emulator whose steady producer enqueues
``--rate`` receipts/s for ``--seconds``, the variants' order alternating between rounds. CPU counts
the daemon and its live children; latency is enqueue to delete on the emulator's clock
(``bench/daemon_bench.py``'s trickle rows). Run::

    .venv/bin/python bench/sqlite_rate_bench.py [--rate 1000] [--seconds 20] [--rounds 3] [--variant JSON ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import daemon_bench


def with_settings(settings: dict[str, Any]) -> Any:
    """``emulator_config`` whose SQLite sink has ``settings`` merged in."""
    original = daemon_bench.emulator_config

    def config(*args: Any, **kwargs: Any) -> dict[str, Any]:
        made = original(*args, **kwargs)
        made["sinks"]["db"].update(settings)
        return made

    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="receipts per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run, s")
    parser.add_argument("--rounds", type=int, default=3, help="runs per variant, alternating")
    parser.add_argument("--variant", action="append", type=json.loads, help="sink settings to merge (repeatable)")
    args = parser.parse_args()
    variants: list[dict[str, Any]] = args.variant or [{}]
    runs: list[list[dict[str, float]]] = [[] for _ in variants]
    original = daemon_bench.emulator_config
    with tempfile.TemporaryDirectory(prefix="sqlite-rate-bench-") as scratch:
        for round_number in range(args.rounds):
            order = list(range(len(variants)))
            if round_number % 2:
                order.reverse()
            for index in order:
                daemon_bench.emulator_config = with_settings(variants[index])
                try:
                    with daemon_bench.EmulatorProcess((daemon_bench.QUEUE_TYPE,)) as emulator:
                        folder = Path(scratch) / f"{round_number}-{index}"
                        row = daemon_bench.trickle_latency(emulator, folder, ("db",), args.rate, args.seconds)
                finally:
                    daemon_bench.emulator_config = original
                row["cpu_ms_per_receipt"] = row["consumer_cpu_cores"] / row["achieved_per_second"] * 1000
                runs[index].append(row)
                print(
                    f"{json.dumps(variants[index])}: {row['achieved_per_second']:.0f}/s, "
                    f"CPU {row['cpu_ms_per_receipt']:.3f} ms/receipt, p50 {row['p50_ms']:.1f} ms, "
                    f"p99 {row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms",
                    file=sys.stderr,
                )
    for variant, rows in zip(variants, runs, strict=True):
        medians = {
            key: statistics.median(row[key] for row in rows)
            for key in ("achieved_per_second", "cpu_ms_per_receipt", "p50_ms", "p99_ms", "max_ms")
        }
        print(json.dumps({"variant": variant, "medians": medians}))


if __name__ == "__main__":
    main()
