"""Every command the README, the manual and the demo show runs as shown, against the emulator.

The convention (also in docs/development.md, "Commands shown are commands tested"):

* Every fenced ``sh`` block of ``README.md`` and ``docs/*.md`` is run, unless the line before it is
  ``<!-- not-runnable: REASON -->``. Other shell labels (``bash``, ``shell``, ...) fail the test, so a
  block cannot leave the convention by its label.
* A ``yaml`` block after ``<!-- file: NAME -->`` is written to NAME before the next block runs.
* A page's blocks run in order in one temporary folder; one block's commands share their environment.
* Every command exits 0. ``mns-consumer run``, ``push-server`` and ``emulator`` (and any command
  ending in ``&``) are started, waited for until ready, and stopped at the end of their block: SIGINT
  in the foreground (Ctrl-C), SIGTERM in the background; they too must exit 0.
* Substituted, so that what is shown stays what users type: the ports 9100, 9464 and 8080 become free
  ports; ``/var/lib/mns-consumer/`` a folder in the temporary one; ``export NAME=...`` the emulator's
  AccessKey; a ``file:`` configuration without ``endpoints:`` gets those of an emulator serving its
  queues; proxy variables are unset.

The commands run as real subprocesses (``bash -c``), with the virtualenv's ``mns-consumer`` first on
PATH, so a command that drifted from the code fails here rather than in a user's terminal.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mns_consumer.emulator import Emulator, EmulatorSettings

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
SHELL_LABELS = {"bash", "shell", "console", "shell-session", "zsh", "sh-session"}
LONG_RUNNING = re.compile(r"^mns-consumer (run|push-server|emulator(?! push))\b")
FIXED_PORTS = ("9100", "9464", "8080")
READY_SECONDS = 60.0
COMMAND_SECONDS = 180.0

pytestmark = pytest.mark.slow


@dataclass
class Block:
    """One fenced block of a page: its label, text, line and the HTML comment before it (if any)."""

    page: Path
    line: int
    label: str
    text: str
    note: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, in order, with the comment line just before each."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^```(\S*)", lines[index])
        if opening is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index] != "```":
            body.append(lines[index])
            index += 1
        note = lines[start - 1].strip() if start > 0 else ""
        found.append(Block(page, start + 1, opening.group(1), "\n".join(body) + "\n", note))
        index += 1
    return found


def commands(text: str) -> list[str]:
    """A block's logical commands: continuation lines joined, a heredoc kept with its command."""
    result: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and index < len(lines):
            line = line[:-1] + lines[index].lstrip()
            index += 1
        heredoc = re.search(r"<<-?'?(\w+)'?", line)
        if heredoc:
            terminator = heredoc.group(1)
            body = []
            while index < len(lines) and lines[index] != terminator:
                body.append(lines[index])
                index += 1
            index += 1
            line = "\n".join([line, *body, terminator])
        result.append(line)
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Page:
    """The state one page's blocks share: a folder, substitutions, and an emulator when one is needed."""

    folder: Path
    stack: ExitStack
    ports: dict[str, str] = field(default_factory=lambda: {port: str(free_port()) for port in FIXED_PORTS})
    emulator: Emulator | None = None

    @property
    def state_dir(self) -> Path:
        return self.folder / "var" / "lib" / "mns-consumer"

    def substitute(self, text: str) -> str:
        for fixed, free in self.ports.items():
            text = re.sub(rf"(?<![0-9]){fixed}(?![0-9])", free, text)
        return text.replace("/var/lib/mns-consumer/", f"{self.state_dir}/")

    def emulator_for(self, queues: dict[str, str]) -> Emulator:
        """The page's emulator (started at first need), serving ``queues`` with a few receipts each."""
        if self.emulator is None:
            settings = EmulatorSettings(queues=queues, seed_receipts=10, seed=3)
            self.emulator = self.stack.enter_context(Emulator(settings))
        return self.emulator

    def placeholders(self, command: str) -> str:
        """``export NAME=...`` with the emulator's value; any other placeholder is an error."""
        if not command.startswith("export ") or "=..." not in command:
            return command
        described = self.emulator_for({}).describe() if self.emulator is None else self.emulator.describe()
        values = {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": described["access_key_id"],
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": described["access_key_secret"],
        }

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            assert name in values, f"no test value for the placeholder {name}=...: add one or show a real value"
            return f"{name}={shlex.quote(values[name])}"

        return re.sub(r"\b([A-Z_][A-Z0-9_]*)=\.\.\.(?=\s|$)", value, command)

    def write_file(self, block: Block, name: str) -> None:
        """A ``file:`` block, substituted; aimed at the page's emulator when it names no endpoints."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        text = self.substitute(block.text)
        data: Any = yaml.safe_load(text)
        if isinstance(data, dict) and "queues" in data and "endpoints" not in data:
            queues = {queue["message_type"]: queue["queue_name"] for queue in data["queues"]}
            described = self.emulator_for(queues).describe()
            endpoints = {key: described[f"{key}_endpoint"] for key in ("dybaseapi", "dysmsapi", "mns")}
            text += yaml.safe_dump({"endpoints": {**endpoints, "protocol": described["protocol"]}})
        (self.folder / name).write_text(text, encoding="utf-8")


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env.pop("MNS_CONSUMER_CONFIG", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **(extra or {})}


@dataclass
class Started:
    """A long-running command: its process, log, and how it is stopped."""

    command: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_signal: int

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


def _emulator_ready(command: str, folder: Path) -> bool:
    listen = re.search(r"--listen\s+(\S+)", command)
    assert listen is not None, f"an emulator shown in the docs names its --listen address: {command}"
    try:
        with urllib.request.urlopen(f"http://{listen.group(1)}/__emulator/state", timeout=2):
            pass
    except OSError:
        return False
    target = re.search(r">\s*(\S+)\s*$", command)
    if target is None:
        return True
    path = folder / target.group(1)
    return path.is_file() and path.read_text(encoding="utf-8").endswith("\n") and path.stat().st_size > 0


def start(command: str, folder: Path, env: dict[str, str], *, foreground: bool, index: int) -> Started:
    """Start a long-running command and wait until it is ready; fail with its output if it is not."""
    log = folder / f".long-running-{index}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["/bin/bash", "-c", f"exec {command}"],
            cwd=folder,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = Started(command, process, log, signal.SIGINT if foreground else signal.SIGTERM)
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"`{command}` exited {process.returncode} before it was ready:\n{started.output()}")
        if command.startswith("mns-consumer emulator"):
            if _emulator_ready(command, folder):
                return started
        elif '"daemon.ready"' in started.output() or "daemon.ready" in started.output():
            return started
        time.sleep(0.1)
    stop(started)
    pytest.fail(f"`{command}` was not ready within {READY_SECONDS} s:\n{started.output()}")


def stop(started: Started) -> int:
    if started.process.poll() is None:
        started.process.send_signal(started.stop_signal)
        try:
            started.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(started.process.pid, signal.SIGKILL)
            started.process.wait()
    return int(started.process.returncode)


ENV_DUMP = "__documented_commands_env"


def run_block(block: Block, page: Page) -> None:
    """Run one runnable block's commands in order, as the convention above says."""
    env = environment()
    running: list[Started] = []
    try:
        for index, shown in enumerate(commands(page.substitute(block.text))):
            command = page.placeholders(shown)
            background = command.endswith("&")
            command = command.removesuffix("&").rstrip()
            if background or LONG_RUNNING.match(command):
                assert not running or background or running[-1].stop_signal == signal.SIGTERM, command
                running.append(start(command, page.folder, env, foreground=not background, index=len(running)))
                continue
            dump = page.folder / ENV_DUMP
            script = f"{command}\n__status=$?\nenv -0 > {shlex.quote(str(dump))}\nexit $__status\n"
            done = subprocess.run(
                ["/bin/bash", "-c", script],
                cwd=page.folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=COMMAND_SECONDS,
                check=False,
            )
            assert done.returncode == 0, (
                f"{block.where}: command {index + 1} exited {done.returncode}: {shown}\n"
                f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
            )
            if dump.exists():
                env = dict(item.split("=", 1) for item in dump.read_text().split("\0") if "=" in item)
                dump.unlink()
    finally:
        # Last started, first stopped: a daemon drains while the emulator it reads is still there.
        codes = [(started, stop(started)) for started in reversed(running)]
    for started, code in codes:
        assert code == 0, f"{block.where}: `{started.command}` exited {code} when stopped:\n{started.output()}"


def _page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


@pytest.fixture
def page_state(tmp_path: Path) -> Iterator[Page]:
    with ExitStack() as stack:
        yield Page(tmp_path, stack)


def test_every_shell_block_is_runnable_or_says_why_not() -> None:
    """A shell block is `sh` (and run) or carries a not-runnable reason; other shell labels are refused."""
    problems = []
    for page in PAGES:
        for block in blocks(page):
            if block.label in SHELL_LABELS:
                problems.append(f"{block.where}: label the block `sh` (runnable) or `text` (output)")
            if block.note.startswith("<!-- not-runnable") and not re.match(r"<!-- not-runnable: \S.* -->$", block.note):
                problems.append(f"{block.where}: a not-runnable block needs a reason: <!-- not-runnable: REASON -->")
            if block.note.startswith("<!-- file:") and block.label != "yaml":
                problems.append(f"{block.where}: file: blocks are yaml")
    assert problems == []
    runnable = [
        block for page in PAGES for block in blocks(page) if block.label == "sh" and "not-runnable" not in block.note
    ]
    assert len(runnable) >= 6, "the quick starts lost their runnable blocks"


@pytest.mark.parametrize("page", [page for page in PAGES if any(b.label == "sh" for b in blocks(page))], ids=_page_id)
def test_the_commands_of_a_page_run_as_shown(page: Path, page_state: Page) -> None:
    """Each runnable block of the page, in order, in one folder: every command exits 0."""
    for block in blocks(page):
        file_note = re.match(r"<!-- file: (\S+) -->$", block.note)
        if file_note:
            page_state.write_file(block, file_note.group(1))
        elif block.label == "sh" and "not-runnable" not in block.note:
            run_block(block, page_state)


def test_the_commands_the_demo_prints_run_as_printed(tmp_path: Path) -> None:
    """The demo's summary ends with commands to try: each runs, as printed, in the demo's folder."""
    demo = subprocess.run(
        [str(BIN / "mns-consumer"), "demo", "--receipts", "10", "--http-listen", "127.0.0.1:0"],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    printed = [line.strip() for line in demo.stdout.splitlines() if line.strip().startswith(("sqlite3 ", "python3 "))]
    printed += [
        line.split("replay them once fixed:", 1)[1].strip()
        for line in demo.stdout.splitlines()
        if "replay them once fixed:" in line
    ]
    assert len(printed) == 3, demo.stdout
    for command in printed:
        done = subprocess.run(
            ["/bin/bash", "-c", command],
            cwd=tmp_path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
        )
        # The replay exits 1 while letters still fail (the demo's are poison by design); never 2, a usage error.
        expected = 1 if "dead-letters replay" in command else 0
        assert done.returncode == expected, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "Usage:" not in done.stderr
