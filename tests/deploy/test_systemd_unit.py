"""systemd/: systemd accepts the units, the daemon's timeouts fit its own, and the status sweep's timer runs it.

``systemd-analyze`` (Debian package ``systemd``) checks the file as systemd would load it; without it the
checks that need it skip, and fail when ``MNS_CONSUMER_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mns_consumer.cli import EXIT_KILLED, EXIT_USAGE
from mns_consumer.config import Config, PushConfig, QueueConfig
from mns_consumer.consume.poller import QUEUE_MISSING_RETRY_SECONDS
from mns_consumer.push.receiver import RESERVED_DESCRIPTORS
from tests.conftest import service_unavailable

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "mns-consumer.service"
SWEEP = REPO / "systemd" / "mns-consumer-status-sweep.service"
SWEEP_TIMER = REPO / "systemd" / "mns-consumer-status-sweep.timer"
INSTALLED_EXECUTABLE = "/usr/local/bin/mns-consumer"

Unit = dict[str, dict[str, list[str]]]
"""section -> key -> every value the key was given, in order."""


def parse_unit(text: str) -> Unit:
    """The sections and assignments of a unit file (it uses no line continuations)."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span such as ``60``, ``90s``, ``2min`` or ``1min 30s``, in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, f"not a time span: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]


def only(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, f"{key}= should be set exactly once, found {values}"
    return values[0]


def default_of(model: type[Config] | type[QueueConfig] | type[PushConfig], field: str) -> float:
    value = model.model_fields[field].default
    assert isinstance(value, int | float)
    return float(value)


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        service_unavailable("systemd-analyze is not installed (Debian package systemd)")
    assert path is not None
    return path


def unit_for_this_machine(tmp_path: Path, unit: Path = UNIT) -> Path:
    """A unit with ExecStart pointing at this environment's mns-consumer, which verify requires to exist."""
    executable = Path(sys.executable).parent / "mns-consumer"
    assert executable.exists(), f"{executable} missing: install the package into this environment"
    text = unit.read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED_EXECUTABLE} " in text
    copy = tmp_path / unit.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED_EXECUTABLE} ", f"ExecStart={executable} "), encoding="utf-8")
    return copy


def verify(*units: Path) -> None:
    """``systemd-analyze verify`` loads the units without an error or a warning about them."""
    result = subprocess.run(
        [systemd_analyze(), "verify", *map(str, units)], capture_output=True, text=True, timeout=60, check=False
    )
    # verify exits 0 even on unknown keys and bad values, which it reports as warnings naming the file.
    about_units = [line for line in result.stderr.splitlines() if any(unit.name in line for unit in units)]
    assert result.returncode == 0, result.stderr
    assert about_units == []


def exposure_at_most_two(unit: Path) -> None:
    """``systemd-analyze security`` rates the unit's exposure 2.0 or lower (0 is fully locked down, 10 open)."""
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_unit_runs_the_daemon_as_a_notify_service_that_reloads_on_sighup(service: dict[str, list[str]]) -> None:
    """Type=notify with the documented command line, and reload sends SIGHUP to the main process."""
    assert only(service, "Type") == "notify"
    assert only(service, "NotifyAccess") == "main"
    assert only(service, "ExecStart") == f"{INSTALLED_EXECUTABLE} run --config /etc/mns-consumer/config.yaml"
    assert only(service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert only(service, "EnvironmentFile") == "-/etc/mns-consumer/env"


def test_unit_stop_timeout_exceeds_the_default_drain_timeout_with_margin(service: dict[str, list[str]]) -> None:
    """systemd waits past the drain (SIGTERM to the daemon only) before it sends SIGKILL."""
    drain_seconds = default_of(Config, "drain_timeout_seconds")
    assert seconds(only(service, "TimeoutStopSec")) > drain_seconds + 10
    assert only(service, "KillSignal") == "SIGTERM"
    assert only(service, "KillMode") == "mixed"


def test_unit_watchdog_outlasts_the_longest_healthy_gap_of_a_receive_loop(service: dict[str, list[str]]) -> None:
    """A long poll that times out, then the longest receive back-off, fits inside WatchdogSec."""
    longest_gap = (
        default_of(QueueConfig, "wait_seconds")
        + default_of(Config, "mns_request_timeout_seconds")
        + QUEUE_MISSING_RETRY_SECONDS
    )
    assert seconds(only(service, "WatchdogSec")) > longest_gap


def test_unit_open_files_limit_fits_the_default_push_connections_with_room_to_spare(
    service: dict[str, list[str]],
) -> None:
    """LimitNOFILE is set (systemd's default soft limit is 1024) and holds the push connections plus the reserve."""
    limit = int(only(service, "LimitNOFILE"))
    assert limit >= 4 * (default_of(PushConfig, "max_connections") + RESERVED_DESCRIPTORS)


def test_unit_restarts_on_failure_except_for_configuration_errors(service: dict[str, list[str]]) -> None:
    """A crash restarts after 5 s; exit 2 (bad configuration) does not, and exit 3 (second signal) is success."""
    assert only(service, "Restart") == "on-failure"
    assert seconds(only(service, "RestartSec")) == 5
    assert str(EXIT_USAGE) in only(service, "RestartPreventExitStatus").split()
    assert str(EXIT_KILLED) in only(service, "SuccessExitStatus").split()


def test_unit_runs_unprivileged_with_only_its_own_folders_writable(service: dict[str, list[str]]) -> None:
    """A dynamic user, the state folder as the one writable place, and the hardening systemd offers."""
    expected = {
        "DynamicUser": "yes",
        "StateDirectory": "mns-consumer",
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
    }
    assert {key: only(service, key) for key in expected} == expected
    assert service["SystemCallFilter"][0] == "@system-service"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """``systemd-analyze verify`` loads the unit without an error or a warning about it."""
    verify(unit_for_this_machine(tmp_path))


def test_unit_exposure_stays_at_most_two(tmp_path: Path) -> None:
    """``systemd-analyze security`` rates the unit's exposure 2.0 or lower (0 is fully locked down, 10 open)."""
    exposure_at_most_two(unit_for_this_machine(tmp_path))


# -- the status sweep: a oneshot service and its timer ------------------------------------------------

SHARED_WITH_THE_DAEMON = (
    "EnvironmentFile",
    "DynamicUser",
    "StateDirectory",
    "StateDirectoryMode",
    "LogsDirectory",
    "LogsDirectoryMode",
    "ConfigurationDirectory",
    "WorkingDirectory",
    "UMask",
    "NoNewPrivileges",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "RestrictAddressFamilies",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "SystemCallArchitectures",
    "SystemCallFilter",
    "SystemCallErrorNumber",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
)
"""What the sweep takes over from the daemon's unit: secrets, identity, folders and hardening."""


def test_sweep_service_runs_the_status_sweep_once_per_start_with_the_daemons_configuration() -> None:
    """A oneshot of ``status sweep`` on the daemon's configuration file, bounded in time."""
    sweep = parse_unit(SWEEP.read_text(encoding="utf-8"))["Service"]
    assert only(sweep, "Type") == "oneshot"
    assert only(sweep, "ExecStart") == f"{INSTALLED_EXECUTABLE} status sweep --config /etc/mns-consumer/config.yaml"
    assert 0 < seconds(only(sweep, "TimeoutStartSec")) <= 3600


def test_sweep_service_shares_the_daemons_user_folders_and_hardening(service: dict[str, list[str]]) -> None:
    """The same dynamic user (named after the daemon's unit) and every hardening line of the daemon's unit."""
    sweep = parse_unit(SWEEP.read_text(encoding="utf-8"))["Service"]
    assert {key: sweep.get(key) for key in SHARED_WITH_THE_DAEMON} == {
        key: service.get(key) for key in SHARED_WITH_THE_DAEMON
    }
    assert only(sweep, "User") == only(sweep, "Group") == UNIT.stem


def test_sweep_timer_starts_the_sweep_after_boot_and_every_ten_minutes() -> None:
    """The timer names the sweep service, fires 10 minutes after each start, and is enabled with timers.target."""
    timer = parse_unit(SWEEP_TIMER.read_text(encoding="utf-8"))
    assert only(timer["Timer"], "Unit") == SWEEP.name
    assert seconds(only(timer["Timer"], "OnUnitActiveSec")) == 600
    assert seconds(only(timer["Timer"], "OnBootSec")) > 0
    assert only(timer["Install"], "WantedBy") == "timers.target"


def test_systemd_accepts_the_sweep_service_and_timer(tmp_path: Path) -> None:
    """``systemd-analyze verify`` loads the sweep service and its timer without an error or a warning."""
    service_copy = unit_for_this_machine(tmp_path, SWEEP)
    timer_copy = tmp_path / SWEEP_TIMER.name
    timer_copy.write_text(SWEEP_TIMER.read_text(encoding="utf-8"), encoding="utf-8")
    verify(service_copy, timer_copy)


def test_sweep_service_exposure_stays_at_most_two(tmp_path: Path) -> None:
    """The sweep is as locked down as the daemon: exposure 2.0 or lower."""
    exposure_at_most_two(unit_for_this_machine(tmp_path, SWEEP))
