"""A daemon run classifies the emulator's seeded reports and flags opt-out replies, in /metrics and the file sink."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from mns_consumer.emulator import Emulator
from tests.e2e.daemon_harness import (
    DaemonFactory,
    daemon_config,
    expected_receipts,
    file_lines,
    queue_total,
    wait_until,
)
from tests.e2e.test_metrics_and_health import metrics_url, scrape

QUEUES = {"SmsReport": "Alicom-Queue-d1-SmsReport", "SmsUp": "Alicom-Queue-d1-SmsUp"}

SEEDED_CLASSES = {
    "DELIVERED": ("delivered", False),
    "MK:0001": ("invalid_number", False),
    "MK:0002": ("invalid_number", False),
    "MK:0008": ("powered_off", True),
    "IC:0001": ("powered_off", True),
    "IC:0015": ("carrier_failure", True),
    "MN:0029": ("invalid_number", False),
    "UNDELIV": ("invalid_number", False),
    "EXPIRED": ("expired", True),
    "DB:0141": ("blocked", False),
}
"""The err_code values the emulator seeds (mns_consumer/emulator/samples.py), and their class in docs/receipts.md."""

OPT_OUT_REPLIES = {"TD", "退订", "N"}
"""The emulator's SmsUp contents that are default unsubscribe keywords (its others are not)."""


@pytest.mark.timeout(120)
def test_reports_are_counted_by_class_and_stored_with_class_flag_and_opt_out(
    make_emulator: Callable[..., Emulator], daemons: DaemonFactory, tmp_path: Path
) -> None:
    """/metrics counts each seeded report under the class its code dictates; the file sink's JSON carries them."""
    # Given 120 mainland reports with known codes and 60 replies, some of them opt-outs
    emulator = make_emulator(queues=dict(QUEUES))
    reports = emulator.produce("SmsReport", 120)
    replies = emulator.produce("SmsUp", 60)
    out = tmp_path / "out"
    config = daemon_config(
        emulator,
        {"archive": {"type": "file", "path": str(out / "{message_type}.jsonl")}},
        tmp_path / "dead.jsonl",
        metrics={"delivery_labels": ["carrier"]},
    )

    # When the daemon drains both queues
    daemon = daemons.start(config)
    base = metrics_url(daemon)
    wait_until(lambda: queue_total(emulator) == 0, "queues drained", diagnose=daemon.describe)
    expected_reports = expected_receipts(emulator, reports)
    expected_replies = expected_receipts(emulator, replies)

    def counted() -> float:
        return sum(value for (name, _), value in scrape(base).items() if name == "mns_consumer_deliveries_total")

    wait_until(lambda: counted() == len(expected_reports), "deliveries counted", diagnose=daemon.describe)
    samples = scrape(base)

    # Then each class counts exactly the reports whose code the seed table puts in it
    codes = {key: receipt.error_code or "" for key, receipt in expected_reports.items()}
    expected = Counter(SEEDED_CLASSES[code][0] for code in codes.values())
    seen: Counter[str] = Counter()
    for (name, labels), value in samples.items():
        if name == "mns_consumer_deliveries_total":
            label = dict(labels)
            assert (label["queue"], label["message_type"]) == (QUEUES["SmsReport"], "SmsReport")
            assert label["carrier"] in {"china_mobile", "china_unicom", "china_telecom", "china_broadnet", "other"}
            seen[label["class"]] += int(value)
    assert seen == expected
    assert len(expected) >= 3, "the seed should produce several classes"

    # And the file sink's JSON lines carry the class, the flag and the opt-out flag
    lines = {line["dedupe_key"]: line for line in file_lines([out / "SmsReport.jsonl", out / "SmsUp.jsonl"])}
    for key, code in codes.items():
        assert (lines[key]["outcome_class"], lines[key]["retryable"]) == SEEDED_CLASSES[code], code
        assert lines[key]["opt_out"] is None
    opted_out = {key for key, receipt in expected_replies.items() if (receipt.content or "") in OPT_OUT_REPLIES}
    for key in expected_replies:
        assert lines[key]["opt_out"] is (key in opted_out)
        assert lines[key]["outcome_class"] is None
    opt_outs = samples[("mns_consumer_opt_outs_total", (("message_type", "SmsUp"), ("queue", QUEUES["SmsUp"])))]
    assert opt_outs == len(opted_out) > 0
    assert daemon.stop() == 0
