"""``allow_unknown_message_type``: a queue of a type this version does not decode is kept, not lost."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

from mns_consumer.emulator import Emulator
from mns_consumer.sinks.dead_letter import read_dead_letters
from tests.e2e.daemon_harness import DaemonFactory, daemon_config, queue_total, wait_until

QUEUE = "Alicom-Queue-i1-VoiceReport"


def test_an_allowed_unknown_type_is_consumed_into_dead_letters_with_its_raw_body(
    tmp_path: Path, make_emulator: Callable[..., Emulator], daemons: DaemonFactory
) -> None:
    """Every message of the queue is kept in dead_letter byte for byte, then deleted from MNS."""
    # Given a VoiceReport queue holding one message, and a configuration that allows the unknown type
    emulator = make_emulator(queues={"VoiceReport": QUEUE})
    body = base64.b64encode(json.dumps({"call_id": "c-1", "status_code": "200000"}).encode()).decode()
    emulator.queue(QUEUE).send(body)
    dead = tmp_path / "dead-letter.jsonl"
    config = daemon_config(
        emulator,
        {"archive": {"type": "file", "path": str(tmp_path / "{message_type}.jsonl")}},
        dead,
        queue_settings={"allow_unknown_message_type": True},
    )

    # When the daemon runs until the queue is empty
    daemon = daemons.start(config)
    wait_until(lambda: queue_total(emulator, [QUEUE]) == 0, "queue drained", diagnose=daemon.describe)
    assert daemon.stop() == 0

    # Then the message is a dead letter with its body as received, ready for `dead-letters replay`
    (letter,) = read_dead_letters(dead)
    assert letter.message_type == "VoiceReport"
    assert letter.raw == body.encode()
    assert "unknown message type 'VoiceReport'" in letter.reason
    assert not (tmp_path / "VoiceReport.jsonl").exists()
