"""Metrics of one-shot commands as a node_exporter textfile, with counters kept across runs.

A ``backfill`` run lasts seconds and is gone before Prometheus could scrape it, so it writes its series
to a file that node_exporter's textfile collector serves (``--collector.textfile.directory``). Counters
in such a file must not restart at zero on every run, or two runs that each found 5 receipts would look
like no increase at all: the values already in the file are added to this run's before it is rewritten,
atomically (``write_to_textfile`` renames a temporary file into place). Gauges (last run time, duration,
success) simply take this run's values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client import Counter, write_to_textfile
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from mns_consumer.observe.metrics import Metrics

BACKFILL_FAMILIES_PREFIX = "mns_consumer_backfill_"
"""Families a backfill run owns entirely."""

SHARED_FAMILIES = ("mns_consumer_failures", "mns_consumer_receipts_dead_lettered")
"""Daemon counters a backfill run also counts into (with ``queue="backfill"``)."""


class _Families(Collector):
    """The families of a registry whose names pass a filter: what goes into the textfile."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for family in self._metrics.registry.collect():
            if _is_backfill_family(family.name):
                yield family


def _is_backfill_family(name: str) -> bool:
    return name.startswith(BACKFILL_FAMILIES_PREFIX) or name in SHARED_FAMILIES


def _counters(metrics: Metrics) -> Mapping[str, Counter]:
    """The counters carried over between runs, by family name."""
    counters = (
        metrics.backfill_queries,
        metrics.backfill_found,
        metrics.backfill_stored,
        metrics.failures,
        metrics.dead_lettered,
    )
    found: dict[str, Counter] = {}
    for counter in counters:
        for family in counter.describe():
            found[family.name] = counter
    return found


def carry_over(metrics: Metrics, path: Path) -> int:
    """Add the counter values of an earlier run's textfile to ``metrics``.

    Args:
        metrics: This run's metrics, before anything was counted.
        path: The textfile; a missing or unreadable file carries nothing over.

    Returns:
        How many series were carried over.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return 0
    counters = _counters(metrics)
    carried = 0
    try:
        families: Iterable[Metric] = list(text_string_to_metric_families(text))
    except ValueError:
        # A damaged file is replaced by this run's values rather than stopping the run.
        return 0
    for family in families:
        counter = counters.get(family.name)
        if counter is None:
            continue
        for sample in family.samples:
            if sample.name == family.name + "_total" and sample.value > 0:
                counter.labels(**sample.labels).inc(sample.value)
                carried += 1
    return carried


def write_textfile(metrics: Metrics, path: Path) -> None:
    """Write the backfill series of ``metrics`` to ``path`` atomically (node_exporter textfile format).

    Raises:
        OSError: If the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), _Families(metrics))
