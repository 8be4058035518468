"""The supervisor opens its sinks before consuming, retrying one that cannot be opened until a stop."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

from structlog.testing import capture_logs

from mns_consumer.config import parse_config
from mns_consumer.consume.supervisor import Supervisor
from mns_consumer.emulator import Emulator
from mns_consumer.emulator.consumer_config import emulator_config
from mns_consumer.exit_codes import EXIT_OK


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_sink_that_cannot_be_opened_is_retried_with_back_off_and_a_stop_ends_the_wait(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """PostgreSQL refusing connections at start: sink.open_failed repeats, nothing consumes, a stop exits 0."""
    # Given a configuration whose database sink points at a port nothing listens on
    data = emulator_config(make_emulator().describe(), tmp_path)
    data["sinks"] = {"db": {"type": "database", "url": f"postgresql+psycopg://127.0.0.1:{closed_port()}/test"}}
    queues = data["queues"]
    assert isinstance(queues, list)
    data["queues"] = [{**queue, "sinks": ["db"]} for queue in queues]
    data["http"] = {"listen": None}
    supervisor = Supervisor(parse_config(data, "test"), handle_signals=False, environ={})
    codes: list[int] = []

    # When the supervisor starts, and is stopped after the sink failed to open twice
    with capture_logs() as logs:
        thread = threading.Thread(target=lambda: codes.append(supervisor.run()))
        thread.start()
        while len([event for event in logs if event["event"] == "sink.open_failed"]) < 2 and thread.is_alive():
            threading.Event().wait(0.05)
        supervisor.request_stop()
        thread.join(30)

    # Then it retried with a growing back-off, never became ready, and exited 0 at once
    failed = [event for event in logs if event["event"] == "sink.open_failed"]
    assert [event["sink"] for event in failed[:2]] == ["db", "db"]
    assert 0.5 <= failed[0]["retry_in_seconds"] <= 1.0
    assert 1.0 <= failed[1]["retry_in_seconds"] <= 1.5
    assert not thread.is_alive()
    assert codes == [EXIT_OK]
    assert not supervisor.ready.is_set()
    assert supervisor.slots == []
