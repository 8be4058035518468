"""``check-config --connect`` as users run it: a subprocess whose exit code and lines say what was reached."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mns_consumer.emulator import Emulator
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_OK
from mns_consumer.sinks.webhook import PROBE_HEADER
from tests.e2e.daemon_harness import write_config
from tests.e2e.test_config_and_replay_commands import run
from tests.support.sink_env_webhook import SECRET, WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A live webhook receiver that checks signatures."""
    made = WebhookReceiver().start()
    yield made
    made.stop()


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def webhook_config(tmp_path: Path, emulator: Emulator, url: str) -> Path:
    """A configuration whose one queue (served by the emulator) goes to a webhook at ``url``."""
    return write_config(
        tmp_path / "config.yaml",
        {
            "credentials": {
                "access_key_id": emulator.settings.access_key_id,
                "access_key_secret": emulator.settings.access_key_secret,
            },
            "endpoints": {"dybaseapi": emulator.endpoint, "mns": emulator.url, "protocol": "http"},
            "queues": [{"message_type": "SmsReport", "queue_name": "Alicom-Queue-i1-SmsReport", "sinks": ["hook"]}],
            "sinks": {"hook": {"type": "webhook", "url": url, "secret": SECRET}},
            "dead_letter": {"type": "file", "path": str(tmp_path / "dead.jsonl")},
        },
    )


def test_a_webhook_nobody_listens_on_fails_the_command_with_exit_1(
    tmp_path: Path, make_emulator: Callable[..., Emulator]
) -> None:
    """Everything else answers; the webhook on a closed port makes the command exit 1, saying why."""
    port = closed_port()
    config = webhook_config(tmp_path, make_emulator(), f"http://127.0.0.1:{port}/hook")

    result = run("check-config", "--connect", str(config))

    assert result.returncode == EXIT_FAILURE, result.stdout + result.stderr
    assert f"[FAILED] sink hook: ConnectError posting to http://127.0.0.1:{port}" in result.stdout
    assert "[ok] queue Alicom-Queue-i1-SmsReport (SmsReport)" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_a_live_webhook_passes_and_receives_the_probe(
    tmp_path: Path, make_emulator: Callable[..., Emulator], receiver: WebhookReceiver
) -> None:
    """With every dependency reachable the command exits 0, and the receiver saw one marked probe."""
    config = webhook_config(tmp_path, make_emulator(), receiver.url)

    result = run("check-config", "--connect", str(config))

    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert "[ok] sink hook: HTTP 200 from http://127.0.0.1:" in result.stdout
    [request] = receiver.requests
    assert {key.lower(): value for key, value in request.headers.items()}[PROBE_HEADER.lower()] == "1"
    assert receiver.stored == {}
