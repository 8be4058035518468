"""Paired A/B of the daemon: this working tree against an earlier revision, run by run, in rounds.

A change worth a few percent is smaller than what a shared 2-core machine drifts within the hour, so
comparing with a figure measured earlier tells nothing. Here each round runs every measure with the
daemon from the baseline revision and from this tree, one right after the other (the order alternating
between rounds), and a ratio is the median over rounds of the candidate's figure divided by the
baseline's of the same round. The baseline is ``git archive``\\ d into a temporary folder and put first
on the daemon's ``PYTHONPATH``; the emulator and the harness (``bench/daemon_bench.py``) are this
tree's for both, so only the daemon differs. Every run gets a fresh emulator and a fresh daemon.

The measures (``--measures``; the default is the first three, issue 20's guardrails):

* ``steady``: the emulator's steady producer enqueues ``--rate`` receipts a second for ``--seconds``
  into one SmsReport queue, per sink of ``--sinks``, on loopback and with ``--latency-ms`` of WAN
  latency per MNS call (the emulator's WAN profile). CPU per receipt is the daemon's (with its child
  processes: the SQLite writer, a token fetch) from the start of the trickle until the queue is empty, over the
  receipts deleted; p99 is enqueue-to-delete of every receipt, both on the emulator's clock
  (EnqueueTime and the delete, admin ``deletions``).
* ``rss``: a daemon with 8 queues (SQLite + file sinks) drains ``--per-queue`` seeded receipts a
  queue; its VmHWM (peak RSS, start-up included) and VmRSS afterwards, child processes not included.
* ``throughput``: a ``--wan-messages`` backlog drained into SQLite at ``--latency-ms`` with one long
  poll per queue (``max_receivers: 1``), from the first receive to the last delete.
* ``drain``: a seeded loopback backlog of ``--messages`` per sink: messages/s and CPU per receipt.
* ``calls``: the throughput drain into the file sink, with ``bench/call_probe`` on the daemon's path:
  the median thread CPU of a receive and of a delete of 16 messages (the transport's share of a receipt).

Then a table: baseline and candidate (medians over rounds), the median ratio with the rounds' range,
and each guardrail's verdict (``GUARDRAILS``). Run with::

    .venv/bin/python bench/daemon_ab.py --baseline 467dfb2 [--rounds 3] [--seconds 8] [--measures steady,rss,throughput]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_bench import (
    EIGHT_TYPES,
    QUEUE_TYPE,
    SINKS,
    EmulatorProcess,
    clean_env,
    daemon_drain,
    eight_queues,
    fsync_probe,
    trickle_latency,
)

ROOT = Path(__file__).resolve().parents[1]
CALL_PROBE = Path(__file__).resolve().parent / "call_probe"
"""The folder with the ``sitecustomize`` that times MNS calls (``--measures calls``)."""
SIDES = ("baseline", "candidate")
MEASURES = ("steady", "rss", "throughput", "drain", "calls")
THROUGHPUT_SINK = "sqlite"


@dataclass(frozen=True)
class Guardrail:
    """A bound a figure must keep: on the paired ratio (candidate / baseline) or on the candidate's value."""

    limit: float
    on_ratio: bool
    at_most: bool

    def describe(self, unit: str) -> str:
        sign = "<=" if self.at_most else ">="
        return f"ratio {sign} {self.limit:g}" if self.on_ratio else f"{sign} {self.limit:g} {unit}"

    def met(self, summary: Summary) -> bool:
        value = summary.ratio if self.on_ratio else summary.candidate
        return value <= self.limit if self.at_most else value >= self.limit


GUARDRAILS = {
    "cpu": Guardrail(1.3, on_ratio=True, at_most=True),
    "p99": Guardrail(50.0, on_ratio=False, at_most=True),
    "rss": Guardrail(100.0, on_ratio=False, at_most=True),
    "throughput": Guardrail(0.95, on_ratio=True, at_most=False),
}
"""Issue 20's guardrails: CPU per receipt within 1.3x of the baseline, p99 enqueue-to-delete at the
steady rate at most 50 ms (on loopback: at +20 ms a receive and a delete alone take 40), peak RSS with 8
queues at most 100 MB, and throughput at +20 ms with one long poll not below the baseline's, less what
the median of three paired rounds differs by on a loaded machine when both sides run the same code (up
to 3 %, see docs/benchmarks.md)."""


@dataclass(frozen=True)
class Summary:
    """One measure over the rounds: each side's median, and the median and range of the paired ratios."""

    baseline: float
    candidate: float
    ratio: float
    ratio_low: float
    ratio_high: float


def summarize(baseline: list[float], candidate: list[float]) -> Summary:
    """Medians of both sides, and of the ratios candidate / baseline taken within each round."""
    ratios = [new / old for old, new in zip(baseline, candidate, strict=True)]
    return Summary(
        statistics.median(baseline), statistics.median(candidate), statistics.median(ratios), min(ratios), max(ratios)
    )


@dataclass(frozen=True)
class Measure:
    """One row of the table: a figure of one kind of run, and the guardrail it answers to, if any."""

    label: str
    unit: str
    guardrail: Guardrail | None = None


# -- the two daemons ------------------------------------------------------------------------------


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
    """Where a daemon started as the runs start it (PYTHONPATH=tree, cwd a data folder) imports the package from."""
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


@contextlib.contextmanager
def daemon_from(tree: Path, call_probe: Path | None = None) -> Iterator[None]:
    """Processes started meanwhile import the package from ``tree``: enter it after the emulator started,
    so that only the daemon (and its child processes) differ between the sides. With ``call_probe``,
    the daemon writes its MNS calls' thread CPU there (``bench/call_probe``)."""
    os.environ["PYTHONPATH"] = str(tree) if call_probe is None else os.pathsep.join((str(tree), str(CALL_PROBE)))
    if call_probe is not None:
        os.environ["MNS_CONSUMER_CALL_PROBE"] = str(call_probe)
    try:
        yield
    finally:
        del os.environ["PYTHONPATH"]
        os.environ.pop("MNS_CONSUMER_CALL_PROBE", None)


EMULATOR_OPTIONS: list[str] = []
"""Options every emulator of the run gets (``--tls`` serves MNS over HTTPS, as Alibaba does)."""


def emulator(folder: Path, latency_ms: float = 0.0, message_types: tuple[str, ...] = (QUEUE_TYPE,)) -> EmulatorProcess:
    """A fresh emulator, with a WAN profile of ``latency_ms`` a call if given, logging into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    wan = ("--latency-ms", f"{latency_ms:g}") if latency_ms else ()
    return EmulatorProcess(message_types, *wan, *EMULATOR_OPTIONS, stderr=folder / "emulator.stderr")


# -- one run of each kind; each returns its figures by measure label ------------------------------


def steady_run(
    tree: Path, folder: Path, *, sink: str, latency_ms: float, rate: float, seconds: float
) -> dict[str, float]:
    with emulator(folder, latency_ms) as running, daemon_from(tree):
        row = trickle_latency(running, folder, SINKS[sink], rate, seconds)
    network = f"+{latency_ms:g} ms" if latency_ms else "loopback"
    return {
        f"CPU per receipt, {sink}, {network}": row["consumer_cpu_seconds"] / row["messages"] * 1e6,
        f"p99 enqueue->delete, {sink}, {network}": row["p99_ms"],
    }


def rss_run(tree: Path, folder: Path, *, per_queue: int) -> dict[str, float]:
    with emulator(folder, message_types=EIGHT_TYPES) as running, daemon_from(tree):
        row = eight_queues(running, folder, per_queue, idle_seconds=0.0, poll_seconds=0.02)
    # The children (the token process, and a SQLite writer process where a revision has one) hold memory
    # the daemon would otherwise hold itself, so their sum is shown beside the daemon's own figure.
    return {
        "peak RSS, 8 queues": row["peak_rss_mb"],
        "RSS after the drain, 8 queues": row["rss_mb"],
        "RSS with children after the drain, 8 queues": row["rss_mb"] + row["children_rss_mb"],
    }


def throughput_run(tree: Path, folder: Path, *, latency_ms: float, count: int) -> dict[str, float]:
    with emulator(folder, latency_ms) as running, daemon_from(tree):
        row = daemon_drain(
            running, folder=folder, sinks=SINKS[THROUGHPUT_SINK], count=count, queue_settings={"max_receivers": 1}
        )
    return {f"throughput, +{latency_ms:g} ms, 1 long poll": row["messages_per_second"]}


def calls_run(tree: Path, folder: Path, *, latency_ms: float, count: int) -> dict[str, float]:
    """The throughput drain (file sink), with the thread CPU of each full receive and delete (16 messages)."""
    probe = folder / "calls.json"
    with emulator(folder, latency_ms) as running, daemon_from(tree, call_probe=probe):
        daemon_drain(running, folder=folder, sinks=SINKS["file"], count=count, queue_settings={"max_receivers": 1})
    calls = json.loads(probe.read_text())
    return {
        f"thread CPU per {name} of 16": statistics.median(cpu for cpu, messages in calls[name] if messages == 16) * 1e6
        for name in ("receive", "delete")
    }


def drain_run(tree: Path, folder: Path, *, sink: str, count: int) -> dict[str, float]:
    with emulator(folder) as running, daemon_from(tree):
        row = daemon_drain(running, folder=folder, sinks=SINKS[sink], count=count)
    return {
        f"drain msg/s, {sink}, loopback": row["messages_per_second"],
        f"drain CPU per receipt, {sink}, loopback": row["consumer_cpu_seconds"] / row["messages"] * 1e6,
    }


Run = Callable[[Path, Path], dict[str, float]]
"""One run of one side: (its package's tree, a scratch folder) -> figures by measure label."""


def plan(args: argparse.Namespace) -> tuple[list[tuple[str, Run]], list[Measure]]:
    """The runs of one round, by name, and the table's rows, in order."""
    runs: list[tuple[str, Run]] = []
    rows: list[Measure] = []
    latency = f"+{args.latency_ms:g} ms"
    if "steady" in args.measures:
        for network, latency_ms in (("loopback", 0.0), (latency, args.latency_ms)):
            for sink in args.sinks:
                steady = partial(steady_run, sink=sink, latency_ms=latency_ms, rate=args.rate, seconds=args.seconds)
                runs.append((f"steady {sink} {network}", steady))
                rows.append(Measure(f"CPU per receipt, {sink}, {network}", "µs", GUARDRAILS["cpu"]))
        for network in ("loopback", latency):
            for sink in args.sinks:
                # At +20 ms a receive and a delete alone take 40 ms: the 50 ms bound is loopback's.
                bound = GUARDRAILS["p99"] if network == "loopback" else None
                rows.append(Measure(f"p99 enqueue->delete, {sink}, {network}", "ms", bound))
    if "rss" in args.measures:
        runs.append(("rss", partial(rss_run, per_queue=args.per_queue)))
        rows.append(Measure("peak RSS, 8 queues", "MB", GUARDRAILS["rss"]))
        rows.append(Measure("RSS after the drain, 8 queues", "MB"))
        rows.append(Measure("RSS with children after the drain, 8 queues", "MB"))
    if "throughput" in args.measures:
        runs.append(("throughput", partial(throughput_run, latency_ms=args.latency_ms, count=args.wan_messages)))
        rows.append(Measure(f"throughput, {latency}, 1 long poll", "/s", GUARDRAILS["throughput"]))
    if "calls" in args.measures:
        runs.append(("calls", partial(calls_run, latency_ms=args.latency_ms, count=args.wan_messages)))
        rows.append(Measure("thread CPU per receive of 16", "µs"))
        rows.append(Measure("thread CPU per delete of 16", "µs"))
    if "drain" in args.measures:
        for sink in args.sinks:
            runs.append((f"drain {sink}", partial(drain_run, sink=sink, count=args.messages)))
            rows.append(Measure(f"drain msg/s, {sink}, loopback", "/s"))
            rows.append(Measure(f"drain CPU per receipt, {sink}, loopback", "µs"))
    return runs, rows


# -- report ---------------------------------------------------------------------------------------


def report_lines(rows: list[Measure], figures: dict[str, dict[str, list[float]]]) -> list[str]:
    """The table: each side's median, the median paired ratio (rounds' range), the guardrail and its
    verdict; then one line naming the guardrails not met, if any."""
    broken: list[str] = []
    lines = [f"{'measure':<42} {'baseline':>10} {'candidate':>10} {'ratio':>6} {'(rounds)':>11}  {'guardrail':<15} met"]
    for row in rows:
        summary = summarize(figures[row.label]["baseline"], figures[row.label]["candidate"])
        bound, met = "", ""
        if row.guardrail is not None:
            bound, met = row.guardrail.describe(row.unit), "yes" if row.guardrail.met(summary) else "NO"
            if met == "NO":
                broken.append(row.label)
        lines.append(
            f"{row.label:<42} {summary.baseline:>7.1f} {row.unit:<2} {summary.candidate:>7.1f} {row.unit:<2}"
            f" {summary.ratio:>6.3f} {summary.ratio_low:>5.2f}-{summary.ratio_high:<5.2f}  {bound:<15} {met}"
        )
    lines.append(f"guardrails NOT met: {'; '.join(broken)}" if broken else "guardrails: all met")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="git revision to compare this working tree with")
    parser.add_argument("--rounds", type=int, default=3, help="paired runs of every measure")
    parser.add_argument("--measures", default="steady,rss,throughput", help=f"comma-separated: {', '.join(MEASURES)}")
    parser.add_argument("--sinks", default="file,sqlite", help="comma-separated: file, sqlite (steady, drain)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each steady run, s")
    parser.add_argument("--rate", type=float, default=1000.0, help="steady receipts a second")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="WAN latency per MNS call (steady, throughput)")
    parser.add_argument("--per-queue", type=int, default=2000, help="receipts seeded per queue (rss)")
    parser.add_argument("--wan-messages", type=int, default=3000, help="backlog drained (throughput)")
    parser.add_argument("--messages", type=int, default=15000, help="backlog drained per sink (drain)")
    parser.add_argument(
        "--scratch", type=Path, default=None, help="folder for the sinks' files (default: the system's temporary one)"
    )
    parser.add_argument("--tls", action="store_true", help="the emulator serves MNS over HTTPS (every measure but rss)")
    args = parser.parse_args()
    if args.tls:
        EMULATOR_OPTIONS.append("--tls")
    args.sinks = [sink.strip() for sink in args.sinks.split(",")]
    args.measures = [measure.strip() for measure in args.measures.split(",")]
    for given, known, what in ((args.sinks, SINKS, "sink"), (args.measures, MEASURES, "measure")):
        unknown = sorted(set(given) - set(known))
        if unknown:
            parser.error(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.tls and "rss" in args.measures:
        # Its 8 queues are seeded through the SDK's own client, which cannot be given the emulator's CA.
        parser.error("rss runs over plain HTTP only: leave it out of --measures with --tls")
    runs, rows = plan(args)
    began = time.perf_counter()
    figures: dict[str, dict[str, list[float]]] = {row.label: {side: [] for side in SIDES} for row in rows}
    with tempfile.TemporaryDirectory(prefix="daemon-ab-", dir=args.scratch) as scratch:
        folder = Path(scratch)
        # The sinks fsync every batch: a disk that other work keeps busy shows in the p99 rows.
        disk = fsync_probe(folder / "fsync-before")
        trees = {"baseline": export_revision(args.baseline, folder), "candidate": ROOT}
        for name, tree in trees.items():
            # Compiled up front: a freshly exported tree would otherwise compile the modules its daemon
            # imports lazily inside the first measured window, which the other side does not.
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "mns_consumer")], check=True)  # noqa: S603
            # Each side must run its own code: a check, since a daemon started in a source tree once
            # imported that tree for both sides, and every ratio came out as 1.00 +- noise.
            loaded = imported_package(tree, folder / f"check-{name}")
            if loaded != tree.resolve():
                raise SystemExit(f"the {name} daemon would import mns_consumer from {loaded}, not {tree}")
            print(f"{name}: mns_consumer from {loaded}", flush=True)
        for round_number in range(args.rounds):
            order = SIDES if round_number % 2 == 0 else SIDES[::-1]
            for run_name, run in runs:
                for side in order:
                    where = folder / f"{run_name}-{side}-{round_number}".replace(" ", "_")
                    got = run(trees[side], where)
                    for label, value in got.items():
                        figures[label][side].append(value)
                    shown = ", ".join(f"{label.split(',')[0]} {value:.1f}" for label, value in got.items())
                    load = os.getloadavg()[0]
                    print(f"round {round_number + 1} {run_name:<22} {side:<9} {shown} (load {load:.1f})", flush=True)
        disk_after = fsync_probe(folder / "fsync-after")
    wall = time.perf_counter() - began
    print(
        f"\ncandidate (this tree) / baseline ({args.baseline}): medians of {args.rounds} paired rounds,"
        f" steady {args.rate:g}/s for {args.seconds:g} s, {wall:.0f} s in all, load {os.getloadavg()[0]:.1f};"
        f" fsync p99 {disk['p99_ms']:.1f} ms before, {disk_after['p99_ms']:.1f} ms after"
    )
    print("\n".join(report_lines(rows, figures)))
    print(json.dumps({"arguments": vars(args), "wall_seconds": round(wall), "figures": figures}, default=str))


if __name__ == "__main__":
    main()
