"""The pure helpers behind ``bench/daemon_ab.py``'s table: percentiles, paired ratios, guardrail verdicts.

The runs themselves are measurements, never tests; these are the arithmetic that turns their figures
into a verdict, so a wrong median or a bound read the wrong way round would pass a regression.
"""

from __future__ import annotations

import pytest

from tests.support.bench_scripts import bench_module

ab = bench_module("daemon_ab")
bench = bench_module("daemon_bench")


def test_percentile_is_the_nearest_rank() -> None:
    hundred = [float(n) for n in range(1, 101)]
    assert bench.percentile(hundred, 0.99) == 99.0  # not the maximum: one message in a hundred may be slower
    assert bench.percentile(hundred, 0.50) == 50.0
    assert bench.percentile(hundred, 1.0) == 100.0
    assert bench.percentile([7.0], 0.99) == 7.0
    assert bench.percentile([1.0, 2.0, 3.0], 0.0) == 1.0


def test_summarize_takes_the_median_of_the_ratios_within_rounds() -> None:
    # Round 2 ran on a slow machine for both sides: its pair still says "equal".
    summary = ab.summarize(baseline=[100.0, 200.0, 110.0], candidate=[110.0, 200.0, 99.0])
    assert summary.baseline == 110.0
    assert summary.candidate == 110.0
    assert summary.ratio == pytest.approx(
        1.0
    )  # ratios 1.1, 1.0, 0.9; the ratio of the medians would be 1.0 by chance only
    assert (summary.ratio_low, summary.ratio_high) == pytest.approx((0.9, 1.1))
    skewed = ab.summarize(baseline=[100.0, 100.0, 300.0], candidate=[130.0, 120.0, 300.0])
    assert skewed.ratio == pytest.approx(1.2)
    assert skewed.candidate / skewed.baseline == pytest.approx(1.3)  # what comparing medians would have said


def test_guardrails_read_their_bounds_the_right_way_round() -> None:
    def summary(ratio: float, candidate: float) -> object:
        return ab.Summary(baseline=1.0, candidate=candidate, ratio=ratio, ratio_low=ratio, ratio_high=ratio)

    cpu, p99, throughput = ab.GUARDRAILS["cpu"], ab.GUARDRAILS["p99"], ab.GUARDRAILS["throughput"]
    assert cpu.met(summary(ratio=1.3, candidate=1e9))
    assert not cpu.met(summary(ratio=1.31, candidate=1.0))
    assert p99.met(summary(ratio=9.0, candidate=50.0))
    assert not p99.met(summary(ratio=1.0, candidate=50.1))
    assert throughput.met(summary(ratio=0.95, candidate=1.0))  # what running the same code twice differs by
    assert not throughput.met(summary(ratio=0.94, candidate=1e9))
    assert ab.GUARDRAILS["rss"].describe("MB") == "<= 100 MB"
    assert cpu.describe("µs") == "ratio <= 1.3"


def test_report_marks_a_broken_guardrail_and_leaves_unbounded_rows_unjudged() -> None:
    rows = [
        ab.Measure("CPU per receipt, file, loopback", "µs", ab.GUARDRAILS["cpu"]),
        ab.Measure("peak RSS, 8 queues", "MB", ab.GUARDRAILS["rss"]),
        ab.Measure("p99 enqueue->delete, file, +20 ms", "ms"),
    ]
    figures = {
        "CPU per receipt, file, loopback": {"baseline": [100.0, 100.0], "candidate": [140.0, 150.0]},
        "peak RSS, 8 queues": {"baseline": [70.0, 71.0], "candidate": [72.0, 72.0]},
        "p99 enqueue->delete, file, +20 ms": {"baseline": [60.0, 60.0], "candidate": [66.0, 66.0]},
    }
    header, cpu, rss, p99, verdict = ab.report_lines(rows, figures)
    assert header.split()[:3] == ["measure", "baseline", "candidate"]
    assert cpu.split()[-4:] == ["ratio", "<=", "1.3", "NO"]
    assert " 1.450 " in cpu
    assert rss.split()[-4:] == ["<=", "100", "MB", "yes"]
    assert p99.rstrip().endswith("1.10-1.10")
    assert verdict == "guardrails NOT met: CPU per receipt, file, loopback"
    del rows[0], figures["CPU per receipt, file, loopback"]
    assert ab.report_lines(rows, figures)[-1] == "guardrails: all met"
