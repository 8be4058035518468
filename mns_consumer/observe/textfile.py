"""Metrics of one-shot commands as a node_exporter textfile, with counters kept across runs.

A ``backfill`` run is gone before Prometheus could scrape it, so it writes its series to a file that
node_exporter serves. Counters there must not restart at zero on every run (two runs would look like
no increase), so the file's values are added to this run's before it is atomically rewritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import write_to_textfile
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from mns_consumer.observe.metrics import Metrics

BACKFILL_FAMILIES_PREFIX = "mns_consumer_backfill_"
"""Families a backfill run owns entirely."""

SHARED_FAMILIES = ("mns_consumer_failures", "mns_consumer_receipts_dead_lettered")
"""Daemon counters a backfill run also counts into (with ``queue="backfill"``)."""


class _Families(Collector):
    """The backfill families of a registry: what goes into the textfile."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for family in self._metrics.registry.collect():
            if family.name.startswith(BACKFILL_FAMILIES_PREFIX) or family.name in SHARED_FAMILIES:
                yield family


def carry_over(metrics: Metrics, path: Path) -> int:
    """Add the counters of an earlier run's textfile (missing, unreadable or damaged: none) to this
    run's ``metrics``; returns how many series were carried over."""
    try:
        families: Iterable[Metric] = list(text_string_to_metric_families(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        # A damaged file is replaced by this run's values rather than stopping the run.
        return 0
    backfill = (metrics.backfill_queries, metrics.backfill_found, metrics.backfill_stored)
    counters = {family.name: c for c in (*backfill, metrics.failures, metrics.dead_lettered) for family in c.describe()}
    carried = 0
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
