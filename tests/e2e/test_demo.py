"""``mns-consumer demo`` as users run it: a subprocess without a terminal, checked against its own data."""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mns_consumer.demo import DEMO_MESSAGE_TYPES, MARKER_NAME

RECEIPTS = 30


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class DemoRun:
    """One finished demo process: its exit code, output and the summary it printed as JSON."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        last = self.stdout.strip().splitlines()[-1]
        data: dict[str, Any] = json.loads(last)
        return data


def run_demo(data_dir: Path, *extra: str, receipts: int = RECEIPTS) -> DemoRun:
    """Run the demo to its end, as a subprocess whose stdout is a pipe (not a TTY)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mns_consumer",
            "demo",
            "--receipts",
            str(receipts),
            "--data-dir",
            str(data_dir),
            "--http-listen",
            "127.0.0.1:0",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=90,
        check=False,
    )
    return DemoRun(result.returncode, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoRun, Path]:
    """One default-shaped demo run (30 receipts per queue, JSON summary), shared by the tests that read it."""
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    run = run_demo(data_dir, "--json")
    assert run.returncode == 0, run.stderr
    return run, data_dir


def _jsonl_keys(path: Path) -> list[str]:
    return [json.loads(line)["dedupe_key"] for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_demo_stores_or_dead_letters_every_seeded_message_and_drains(demo_run: tuple[DemoRun, Path]) -> None:
    """Per queue, stored plus dead-lettered equals what was seeded, and exactly the malformed ones are dead."""
    run, _ = demo_run
    summary = run.summary
    assert summary["drained"] is True
    assert [queue["message_type"] for queue in summary["queues"]] == list(DEMO_MESSAGE_TYPES)
    for queue in summary["queues"]:
        assert queue["seeded"] == RECEIPTS + queue["malformed"]
        assert queue["malformed"] >= 1
        assert queue["stored"] + queue["dead_lettered"] == queue["seeded"]
        assert queue["dead_lettered"] == queue["malformed"]
        assert queue["received"] == queue["seeded"]


def test_demo_sqlite_file_holds_one_row_per_unique_stored_receipt(demo_run: tuple[DemoRun, Path]) -> None:
    """The SQLite table has one row per unique dedupe key stored, per queue as the summary says."""
    run, _ = demo_run
    summary = run.summary
    with sqlite3.connect(summary["paths"]["sqlite"]) as database:
        total, unique = database.execute("SELECT COUNT(*), COUNT(DISTINCT dedupe_key) FROM sms_receipts").fetchone()
        by_queue = dict(database.execute("SELECT queue, COUNT(*) FROM sms_receipts GROUP BY queue").fetchall())
    assert total == unique == summary["totals"]["sqlite_rows"]
    for queue in summary["queues"]:
        stored_keys = _jsonl_keys(Path(summary["paths"]["jsonl"][queue["message_type"]]))
        assert by_queue[queue["queue"]] == queue["sqlite_rows"] == len(set(stored_keys))
        assert queue["sqlite_rows"] <= queue["stored"]


def test_demo_dead_letter_file_holds_the_malformed_bodies(demo_run: tuple[DemoRun, Path]) -> None:
    """Each malformed body is one dead letter of its queue, undecodable, and the reasons add up."""
    run, _ = demo_run
    summary = run.summary
    letters = [
        json.loads(line)
        for line in Path(summary["paths"]["dead_letter"]).read_text(encoding="utf-8").splitlines()
        if line
    ]
    assert Counter(letter["queue"] for letter in letters) == {q["queue"]: q["malformed"] for q in summary["queues"]}
    assert all(letter["reason"].startswith("undecodable: ") for letter in letters)
    assert sum(summary["dead_letter_reasons"].values()) == len(letters)


def test_demo_prints_a_table_and_paths_that_exist(demo_run: tuple[DemoRun, Path]) -> None:
    """The human summary names every data file, each exists, and plain progress lines replace the live display."""
    run, data_dir = demo_run
    paths = run.summary["paths"]
    printed = [paths["sqlite"], paths["dead_letter"], *paths["jsonl"].values()]
    for path in printed:
        assert path in run.stdout
        assert Path(path).is_file()
    assert Path(paths["data_dir"]) == data_dir.resolve()
    assert (data_dir / MARKER_NAME).is_file()
    assert "dead-lettered" in run.stdout
    assert "rate/s" in run.stdout
    assert "\x1b[" not in run.stdout
    assert any(line.startswith("progress ") for line in run.stdout.splitlines())
    assert "receipt.undecodable" not in run.stderr


def test_demo_sample_query_runs_as_printed(demo_run: tuple[DemoRun, Path]) -> None:
    """The printed Python one-liner runs in a shell and lists SmsReport receipts by status."""
    run, _ = demo_run
    command = run.summary["sample_query"]["python"]
    assert command in run.stdout
    assert command.startswith("python3 -c ")
    result = subprocess.run(
        ["sh", "-c", shlex.quote(sys.executable) + command.removeprefix("python3")],  # noqa: S607  (sh from PATH)
        capture_output=True,
        text=True,
        check=True,
    )
    stored = next(q["stored"] for q in run.summary["queues"] if q["message_type"] == "SmsReport")
    rows = [line for line in result.stdout.splitlines() if line]
    assert rows
    assert sum(int(row.split(", ")[1]) for row in rows) == stored


def test_a_second_demo_run_in_the_same_folder_replaces_only_the_demo_data(tmp_path: Path) -> None:
    """A marked folder is reused: the earlier run's data is replaced, and a user's file in it is kept."""
    # Given a folder from an earlier demo run, holding a file of the user's too
    data_dir = tmp_path / "demo"
    first = run_demo(data_dir, "--json", receipts=5)
    assert first.returncode == 0, first.stderr
    keepsake = data_dir / "my-notes.txt"
    keepsake.write_text("mine", encoding="utf-8")
    # When the demo runs there again
    second = run_demo(data_dir, "--json", receipts=3)
    # Then it works, its data holds only the second run, and the user's file is untouched
    assert second.returncode == 0, second.stderr
    summary = second.summary
    with sqlite3.connect(summary["paths"]["sqlite"]) as database:
        (rows,) = database.execute("SELECT COUNT(*) FROM sms_receipts").fetchone()
    assert rows == summary["totals"]["sqlite_rows"] == summary["totals"]["stored"]
    letters = Path(summary["paths"]["dead_letter"]).read_text(encoding="utf-8").splitlines()
    assert len(letters) == summary["totals"]["dead_lettered"]
    assert keepsake.read_text(encoding="utf-8") == "mine"


def test_demo_refuses_a_folder_holding_foreign_files_with_exit_2(tmp_path: Path) -> None:
    """A non-empty folder without the demo's marker is refused, named, and left as it was."""
    data_dir = tmp_path / "mine"
    data_dir.mkdir()
    (data_dir / "receipts.db").write_text("not the demo's", encoding="utf-8")
    run = run_demo(data_dir)
    assert run.returncode == 2
    assert str(data_dir.resolve()) in run.stderr
    assert "receipts.db" in run.stderr
    assert MARKER_NAME in run.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == ["receipts.db"]
    assert (data_dir / "receipts.db").read_text(encoding="utf-8") == "not the demo's"


def test_demo_summary_gives_delivery_by_class_and_opt_outs_from_the_status_tables(
    demo_run: tuple[DemoRun, Path],
) -> None:
    """Messages per outcome class and opt-outs agree with the archived receipts: one per message, one per number."""
    run, _ = demo_run
    summary = run.summary
    paths = summary["paths"]["jsonl"]
    reports = [json.loads(line) for line in Path(paths["SmsReport"]).read_text(encoding="utf-8").splitlines() if line]
    per_message = {(report["biz_id"], report["phone_number"]): report["outcome_class"] for report in reports}
    classes = Counter(per_message.values())
    delivery = summary["delivery"]
    assert {name: entry["messages"] for name, entry in delivery["by_class"].items()} == dict(classes)
    assert delivery["messages"] == len(per_message)
    assert delivery["delivered_percent"] == round(100.0 * classes["delivered"] / len(per_message), 1)
    assert len(set(classes) - {"delivered"}) >= 2, "the seeded reports should fail in several classes"
    replies = [json.loads(line) for line in Path(paths["SmsUp"]).read_text(encoding="utf-8").splitlines() if line]
    opted_out = [reply for reply in replies if reply["opt_out"]]
    numbers = {(r["phone_number"], r["sign_name"] or "", str(r["extra"]["dest_code"])) for r in opted_out}
    assert summary["opt_outs"]["numbers"] == len(numbers) > 0
    assert summary["opt_outs"]["replies"] == len(opted_out)
    assert f"{len(per_message)} messages, {delivery['delivered_percent']}% delivered" in run.stdout
