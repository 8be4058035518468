"""The SQLite sink with and without its writer process, at a steady rate: CPU per receipt and p99 latency.

Each round runs the daemon (SQLite sink only) twice against a fresh emulator whose steady producer
enqueues ``--rate`` receipts/s for ``--seconds``: once with ``writer_process: true``, once with
``false``, in alternating order. CPU counts the daemon and its live children (the writer process);
latency is enqueue to delete on the emulator's clock (``bench/daemon_bench.py``'s trickle rows). Run::

    .venv/bin/python bench/sqlite_writer_bench.py [--rate 1000] [--seconds 20] [--rounds 3]
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


def with_writer(writer: bool) -> Any:
    """``emulator_config`` whose SQLite sink has ``writer_process`` set as asked."""
    original = daemon_bench.emulator_config

    def config(*args: Any, **kwargs: Any) -> dict[str, Any]:
        made = original(*args, **kwargs)
        made["sinks"]["db"]["writer_process"] = writer
        return made

    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="receipts per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run, s")
    parser.add_argument("--rounds", type=int, default=3, help="runs per setting, alternating")
    args = parser.parse_args()
    rows: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    original = daemon_bench.emulator_config
    with tempfile.TemporaryDirectory(prefix="sqlite-writer-bench-") as scratch:
        for round_number in range(args.rounds):
            order = (True, False) if round_number % 2 == 0 else (False, True)
            for writer in order:
                daemon_bench.emulator_config = with_writer(writer)
                try:
                    with daemon_bench.EmulatorProcess((daemon_bench.QUEUE_TYPE,)) as emulator:
                        folder = Path(scratch) / f"{round_number}-{writer}"
                        row = daemon_bench.trickle_latency(emulator, folder, ("db",), args.rate, args.seconds)
                finally:
                    daemon_bench.emulator_config = original
                row["cpu_ms_per_receipt"] = row["consumer_cpu_cores"] / row["achieved_per_second"] * 1000
                rows[writer].append(row)
                print(
                    f"writer_process={str(writer).lower()}: {row['achieved_per_second']:.0f}/s, "
                    f"CPU {row['cpu_ms_per_receipt']:.3f} ms/receipt, p50 {row['p50_ms']:.1f} ms, "
                    f"p99 {row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms",
                    file=sys.stderr,
                )
    summary = {
        f"writer_process={str(writer).lower()}": {
            key: statistics.median(row[key] for row in runs)
            for key in ("achieved_per_second", "cpu_ms_per_receipt", "p50_ms", "p99_ms", "max_ms")
        }
        for writer, runs in rows.items()
    }
    for label, medians in summary.items():
        print(
            f"{label}: CPU {medians['cpu_ms_per_receipt']:.3f} ms/receipt, p50 {medians['p50_ms']:.1f} ms, "
            f"p99 {medians['p99_ms']:.1f} ms (medians of {args.rounds})"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
