"""Paired A/B of the daemon: this working tree against an earlier revision, drain by drain, in rounds.

A change worth a few percent is smaller than what a shared 2-core machine drifts within the hour, so
comparing with a figure measured earlier tells nothing. Here each round drains the same seeded queue
with the daemon from the baseline revision and from this tree, one right after the other (the order
alternating between rounds), and the result is the median over rounds of the ratio within a round:
messages per second and CPU per receipt, per sink. The baseline is ``git archive``\\ d into a
temporary folder and put first on the daemon's ``PYTHONPATH``; the emulator and the bench harness are
this tree's (``bench/daemon_bench.py``) for both, so only the daemon differs. Run with::

    .venv/bin/python bench/daemon_ab.py --baseline HEAD~1 [--rounds 5] [--messages 15000] [--sinks file,sqlite]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_bench import QUEUE_TYPE, SINKS, EmulatorProcess, clean_env, daemon_drain

ROOT = Path(__file__).resolve().parents[1]


def export_revision(revision: str, folder: Path) -> Path:
    """The package as it was at ``revision``, unpacked under ``folder``; returns the folder to import from."""
    archive = folder / "baseline.tar"
    with open(archive, "wb") as out:
        subprocess.run(  # noqa: S603  (our own git, a revision the operator names)
            ["git", "archive", revision, "mns_consumer"],  # noqa: S607
            cwd=ROOT,
            stdout=out,
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "tree", filter="data")
    return folder / "tree"


def imported_package(tree: Path, folder: Path) -> Path:
    """Where a daemon started as ``drain`` starts it (PYTHONPATH=tree, cwd a data folder) imports the package from."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", "import mns_consumer; print(mns_consumer.__file__)"],
        env={**clean_env(), "PYTHONPATH": str(tree)},
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip()).resolve().parent.parent


def drain(tree: Path, sink: str, count: int, folder: Path) -> tuple[float, float]:
    """Messages per second and daemon CPU µs per receipt of one drain with the package from ``tree``."""
    with EmulatorProcess((QUEUE_TYPE,)) as emulator:
        # Only the daemon, started after the emulator, inherits it: both sides meet the same emulator.
        os.environ["PYTHONPATH"] = str(tree)
        try:
            row = daemon_drain(emulator, folder=folder, sinks=SINKS[sink], count=count)
        finally:
            del os.environ["PYTHONPATH"]
    return row["messages_per_second"], row["consumer_cpu_seconds"] / row["messages"] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="git revision to compare this working tree with")
    parser.add_argument("--rounds", type=int, default=5, help="paired drains per sink")
    parser.add_argument("--messages", type=int, default=15000, help="seeded messages per drain")
    parser.add_argument("--sinks", default="file,sqlite", help="comma-separated: file, sqlite")
    args = parser.parse_args()
    sinks = [sink.strip() for sink in args.sinks.split(",")]
    unknown = sorted(set(sinks) - set(SINKS))
    if unknown:
        parser.error(f"unknown sink(s) {', '.join(unknown)}; choose from {', '.join(SINKS)}")

    with tempfile.TemporaryDirectory(prefix="daemon-ab-") as scratch:
        folder = Path(scratch)
        trees = {"baseline": export_revision(args.baseline, folder), "candidate": ROOT}
        for name, tree in trees.items():
            # Each side must run its own code: a check, since a daemon started in a source tree once
            # imported that tree for both sides, and every ratio came out as 1.00 +- noise.
            loaded = imported_package(tree, folder / f"check-{name}")
            if loaded != tree.resolve():
                raise SystemExit(f"the {name} daemon would import mns_consumer from {loaded}, not {tree}")
            print(f"{name}: mns_consumer from {loaded}")
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for round_number in range(args.rounds):
            order = list(trees) if round_number % 2 == 0 else list(reversed(trees))
            for sink in sinks:
                for name in order:
                    where = folder / f"{sink}-{name}-{round_number}"
                    rate, cpu = drain(trees[name], sink, args.messages, where)
                    results.setdefault((sink, name), []).append((rate, cpu))
                    print(f"round {round_number + 1} {sink:6s} {name:9s} {rate:8.0f} msg/s {cpu:6.0f} µs/receipt")

    print(f"\ncandidate (this tree) / baseline ({args.baseline}), median of {args.rounds} paired rounds:")
    for sink in sinks:
        pairs = list(zip(results[(sink, "candidate")], results[(sink, "baseline")], strict=True))
        rates = [new[0] / old[0] for new, old in pairs]
        cpus = [new[1] / old[1] for new, old in pairs]
        print(
            f"  {sink:6s} messages/s {statistics.median(rates):.3f}"
            f" (rounds {min(rates):.2f}-{max(rates):.2f}),"
            f" CPU per receipt {statistics.median(cpus):.3f} (rounds {min(cpus):.2f}-{max(cpus):.2f})"
        )


if __name__ == "__main__":
    main()
