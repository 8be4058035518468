"""The push receiver over real loopback HTTP, with real sinks: SQLite, JSON Lines files and PostgreSQL.

Pushes are sent by the emulator's push client, which POSTs and judges answers the way Alibaba does.
Every wait is a hang guard, never a timing assertion.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from mns_consumer.config import PushConfig, parse_config
from mns_consumer.emulator.push_client import push_receipts
from mns_consumer.emulator.tls import generate_tls_material
from mns_consumer.observe.events import Events
from mns_consumer.observe.metrics import Metrics
from mns_consumer.push.service import PushService
from mns_consumer.sinks.base import Sink
from mns_consumer.sinks.dead_letter import read_dead_letters
from tests.support.receipts import pushed_keys, pushed_receipts
from tests.support.sink_env_database import DatabaseEnv, make_env

SECRET = "It-is-a-Secret-0f2c9e"
NO_RETRIES: tuple[float, ...] = ()


class Running:
    """A started PushService on a free port, with the sinks it writes to."""

    def __init__(self, tmp_path: Path, sinks: dict[str, Any], routes: list[dict[str, Any]], **push: Any) -> None:
        self.folder = tmp_path
        self.dead_letter_path = tmp_path / "dead-letter.jsonl"
        self.config = parse_config(
            {
                "sinks": sinks,
                "dead_letter": {"type": "file", "path": str(self.dead_letter_path)},
                "push": {"listen": "127.0.0.1:0", "spool_path": str(tmp_path / "spool.db"), "routes": routes, **push},
                "sink_retry_initial_seconds": 0.05,
                "sink_retry_max_seconds": 0.2,
            },
            "config.yaml",
        )
        assert self.config.push is not None
        self.push_config: PushConfig = self.config.push
        self.registry = CollectorRegistry()
        self.events = Events(Metrics(self.registry))
        self.sinks: dict[str, Sink] = {name: section.build(name) for name, section in self.config.sinks.items()}
        for sink in self.sinks.values():
            sink.open()
        assert self.config.dead_letter is not None
        self.dead_letter = self.config.dead_letter.build()
        self.dead_letter.open()
        self.service = self._make_service().listen().deliver(self.sinks, self.dead_letter)

    def _make_service(self) -> PushService:
        return PushService(
            self.push_config,
            self.events,
            metrics=self.events.metrics,
            retry_initial_seconds=0.05,
            retry_max_seconds=0.2,
        )

    def url(self, route_path: str = "/alicom/SmsReport", scheme: str = "http") -> str:
        assert self.service.receiver is not None
        return f"{scheme}://127.0.0.1:{self.service.receiver.port}{route_path}/{SECRET}"

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def wait_spool_empty(self) -> None:
        deadline = time.monotonic() + 30
        while self.service.spool.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.service.spool.depth() == 0, "hang guard: the spool did not drain within 30 s"

    def stop(self) -> None:
        self.service.stop_accepting()
        self.service.drain(time.monotonic() + 10)
        self.service.close()
        for sink in self.sinks.values():
            sink.close()
        self.dead_letter.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def make(sinks: dict[str, Any], routes: list[dict[str, Any]] | None = None, **push: Any) -> Running:
        routes = routes or [
            {"path": "/alicom/SmsReport", "secret": SECRET, "message_type": "SmsReport", "sinks": sorted(sinks)},
            {"path": "/alicom/SmsUp", "secret": SECRET, "message_type": "SmsUp", "sinks": sorted(sinks)},
        ]
        service = Running(tmp_path, sinks, routes, **push)
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()


def _file_keys(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["dedupe_key"] for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_pushed_receipts_reach_every_sink_once_even_when_alibaba_sends_them_twice(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    """Accepted batches land in SQLite and in the file exactly once; redeliveries are absorbed."""
    sqlite = make_env("sqlite", tmp_path)
    service = running(
        {
            "db": {"type": "database", "url": sqlite.url},
            "archive": {"type": "file", "path": str(tmp_path / "{message_type}.jsonl")},
        }
    )
    reports, ups = pushed_receipts("SmsReport", 120), pushed_receipts("SmsUp", 30, seed=2)

    first = push_receipts(
        service.url(), reports, message_type="SmsReport", batch_size=50, redeliver=True, retry_delays_seconds=NO_RETRIES
    )
    second = push_receipts(
        service.url("/alicom/SmsUp"), ups, message_type="SmsUp", batch_size=50, retry_delays_seconds=NO_RETRIES
    )
    service.wait_spool_empty()

    assert first.accepted_receipts == 120
    assert first.redelivered == 120
    assert second.accepted_receipts == 30
    expected = pushed_keys("SmsReport", reports) | pushed_keys("SmsUp", ups)
    assert sorted(sqlite.stored_keys()) == sorted(expected)
    archived = _file_keys(tmp_path / "SmsReport.jsonl") + _file_keys(tmp_path / "SmsUp.jsonl")
    assert sorted(archived) == sorted(expected)
    labels = {"queue": "push:SmsReport", "message_type": "SmsReport"}
    assert service.metric("mns_consumer_push_requests_total", **labels) == 6
    assert service.metric("mns_consumer_receipts_received_total", **labels) == 240
    assert service.metric("mns_consumer_push_receipts_settled_total", **labels) == 240
    # Duplicates within one delivery batch reach the sink once, so this depends on how pushes were batched.
    assert 120 <= service.metric("mns_consumer_receipts_accepted_total", sink="db", **labels) <= 240
    assert service.metric("mns_consumer_push_ack_seconds_count", **labels) == 6


def test_bad_elements_are_dead_lettered_with_their_raw_json_and_the_good_ones_stored(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    """A valid array is accepted whole; elements that are not receipts go to the dead letters with a reason."""
    archive = tmp_path / "archive.jsonl"
    service = running({"archive": {"type": "file", "path": str(archive)}})
    good = pushed_receipts("SmsReport", 3)
    body = [good[0], {"phone_number": "13900001111"}, good[1], "not an object", good[2]]

    answer = httpx.post(service.url(), json=body, trust_env=False)
    service.wait_spool_empty()

    assert answer.status_code == 200
    assert answer.json() == {"code": 0, "msg": "接收成功"}
    assert sorted(_file_keys(archive)) == sorted(pushed_keys("SmsReport", good))
    letters = list(read_dead_letters(service.dead_letter_path))
    assert [json.loads(letter.raw) for letter in letters] == [{"phone_number": "13900001111"}, "not an object"]
    assert {letter.source for letter in letters} == {"push"}
    assert {letter.queue for letter in letters} == {"push:SmsReport"}
    assert all(letter.reason.startswith("undecodable: ") for letter in letters)
    assert (
        service.metric("mns_consumer_receipts_dead_lettered_total", queue="push:SmsReport", message_type="SmsReport")
        == 2
    )


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b'{"phone_number": "1"}', {"Content-Type": "application/json"}, 400),
        (b"[{not json", {"Content-Type": "application/json"}, 400),
        (b"\xff\xfe[]", {"Content-Type": "application/json"}, 400),
        (b"[]", {"Content-Type": "text/plain"}, 415),
        (b"[]", {"Content-Type": "application/json; charset=gbk"}, 415),
        (b"[" + b"{}," * 20 + b"{}]", {"Content-Type": "application/json"}, 413),
        (b"[" + b" " * 5000 + b"]", {"Content-Type": "application/json"}, 413),
    ],
    ids=["object", "not-json", "not-utf8", "text-plain", "gbk", "too-many-items", "too-big"],
)
def test_a_bad_request_is_refused_with_a_non_zero_code_and_nothing_is_spooled(
    running: Callable[..., Running], tmp_path: Path, content: bytes, headers: dict[str, str], status: int
) -> None:
    """Bodies that are not JSON arrays, other content types and oversized pushes get a 4xx and a non-zero code."""
    service = running(
        {"archive": {"type": "file", "path": str(tmp_path / "a.jsonl")}}, max_items=10, max_body_bytes=4096
    )
    answer = httpx.post(service.url(), content=content, headers=headers, trust_env=False)
    assert answer.status_code == status
    assert answer.json()["code"] == status
    assert answer.json()["msg"]
    assert service.service.spool.depth() == 0
    assert not (tmp_path / "a.jsonl").exists()


def test_an_unknown_path_or_a_wrong_secret_gets_404_and_a_put_gets_405(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    """Only the exact path with its secret is a route; methods other than POST, GET and HEAD on it are 405."""
    service = running({"archive": {"type": "file", "path": str(tmp_path / "a.jsonl")}})
    wrong = service.url().replace(SECRET, SECRET[:-1] + "x")
    assert httpx.post(wrong, json=[], trust_env=False).status_code == 404
    assert httpx.post(service.url().rsplit("/", 1)[0], json=[], trust_env=False).status_code == 404
    assert httpx.get(wrong, trust_env=False).status_code == 404
    assert httpx.put(service.url(), json=[], trust_env=False).status_code == 405
    assert service.metric("mns_consumer_push_rejected_total", queue="push:unknown", message_type="", stage="route") == 3


def test_a_draining_receiver_answers_503_so_alibaba_retries(running: Callable[..., Running], tmp_path: Path) -> None:
    """After stop_accepting, pushes are refused with 503 and a non-zero code, and nothing is stored."""
    service = running({"archive": {"type": "file", "path": str(tmp_path / "a.jsonl")}})
    service.service.stop_accepting()
    answer = httpx.post(service.url(), json=pushed_receipts("SmsReport", 2), trust_env=False)
    assert answer.status_code == 503
    assert answer.json()["code"] == 503
    assert service.service.spool.depth() == 0


def test_a_spool_that_cannot_be_written_answers_503(running: Callable[..., Running], tmp_path: Path) -> None:
    """When the spool fails (here: closed under the receiver), the push gets a 5xx so Alibaba sends it again."""
    service = running({"archive": {"type": "file", "path": str(tmp_path / "a.jsonl")}})
    service.service.spool.close()
    answer = httpx.post(service.url(), json=pushed_receipts("SmsReport", 2), trust_env=False)
    assert answer.status_code == 503
    assert answer.json()["code"] == 503
    labels = {"queue": "push:SmsReport", "message_type": "SmsReport", "stage": "spool"}
    assert service.metric("mns_consumer_push_rejected_total", **labels) == 1


def test_a_sink_outage_delays_delivery_but_loses_and_dead_letters_nothing(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    """Pushes are acknowledged while PostgreSQL is unreachable and stored once it is back."""
    postgres: DatabaseEnv = make_env("postgresql", tmp_path)
    try:
        service = running(
            {"db": {"type": "database", "url": postgres.url, "table": postgres.table, "connect_timeout_seconds": 1}},
        )
        # Given PostgreSQL is cut off
        postgres.make_unavailable()
        reports = pushed_receipts("SmsReport", 40)
        # When Alibaba pushes
        report = push_receipts(
            service.url(), reports, message_type="SmsReport", batch_size=10, retry_delays_seconds=NO_RETRIES
        )
        # Then every push is acknowledged and waits in the spool
        assert report.accepted_receipts == 40
        deadline = time.monotonic() + 30
        while (
            service.metric(
                "mns_consumer_failures_total", queue="push:SmsReport", message_type="SmsReport", stage="sink"
            )
            == 0
        ):
            assert time.monotonic() < deadline, "hang guard: no sink failure seen"
            time.sleep(0.05)
        assert service.service.spool.depth("push:SmsReport") >= 1
        # And once PostgreSQL is back, all of them are stored, none dead-lettered
        postgres.restore()
        service.wait_spool_empty()
        assert sorted(postgres.stored_keys()) == sorted(pushed_keys("SmsReport", reports))
        assert not service.dead_letter_path.exists() or not service.dead_letter_path.read_text()
    finally:
        postgres.close()


def test_the_path_secret_never_appears_in_logs_metrics_or_dead_letters(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    """Every log event, the scrape and the dead letters name the route, never its secret path."""
    from prometheus_client import generate_latest

    service = running({"archive": {"type": "file", "path": str(tmp_path / "a.jsonl")}})
    with capture_logs() as logs:
        httpx.post(service.url(), json=[{"bad": True}, *pushed_receipts("SmsReport", 2)], trust_env=False)
        httpx.post(service.url(), content=b"{}", headers={"Content-Type": "application/json"}, trust_env=False)
        httpx.post(service.url() + "x", json=[], trust_env=False)
        service.wait_spool_empty()
    assert logs
    assert SECRET not in repr(logs)
    assert SECRET not in generate_latest(service.registry).decode()
    assert SECRET not in service.dead_letter_path.read_text(encoding="utf-8")
    assert SECRET not in json.dumps(service.service.state())


def test_the_receiver_serves_https_with_the_configured_certificate(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    """With tls_cert_file and tls_key_file the receiver speaks HTTPS, and Alibaba-style pushes are accepted."""
    material = generate_tls_material(tmp_path / "tls")
    service = running(
        {"archive": {"type": "file", "path": str(tmp_path / "a.jsonl")}},
        tls_cert_file=str(material.cert_path),
        tls_key_file=str(material.key_path),
    )
    context = ssl.create_default_context(cafile=str(material.cert_path))
    report = push_receipts(
        service.url(scheme="https"),
        pushed_receipts("SmsReport", 5),
        message_type="SmsReport",
        verify=context,
        retry_delays_seconds=NO_RETRIES,
        response_timeout_seconds=5,
    )
    assert report.accepted_receipts == 5
