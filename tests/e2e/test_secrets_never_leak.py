"""Secrets never leak: a whole run with recognisable secrets, every failure we can cause, every output read.

The daemon runs as a subprocess at ``logging.level: debug`` (JSON, then console format) under umask
000, with secrets it cannot help handling: the emulator's master AccessKey secret, the queue tokens
Dybaseapi hands out (read from the in-process emulator as it mints them), a webhook HMAC secret and
an ``Authorization`` header, a push route secret and a PostgreSQL password (a throwaway role: the
server trusts loopback, but the password still travels in the URL). Failures are caused on purpose:
malformed receipts, a webhook that rejects while echoing the secrets back in another letter case, the
webhook down, Dybaseapi refusing tokens, a push with a wrong secret, the database cut off. Every
output a person or a scraper sees is then searched for each secret in each of its shapes (plain,
case-changed, URL-encoded, base64): the daemon's log, ``/metrics``, ``/healthz``, ``/readyz``, every
file under its data folder (dead letters, spool, file sink), and the output of ``check-config``,
``check-config --connect``, ``dead-letters replay`` and ``backfill``. The emulator's own output is
not searched: it stands in for Alibaba, which knows the secrets.

A last test holds the push receiver under slow-loris connections and an oversize body while valid
pushes must still be acknowledged.
"""

from __future__ import annotations

import base64
import csv
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from mns_consumer.emulator import Emulator
from mns_consumer.emulator.clock import BEIJING, Clock
from mns_consumer.emulator.credentials import TemporaryCredential
from mns_consumer.emulator.push_client import push_receipts
from mns_consumer.emulator.samples import ReceiptFactory
from tests.conftest import service_unavailable
from tests.e2e.daemon_harness import FAST_QUEUE, FAST_SETTINGS, clean_env, queue_total, wait_until, write_config
from tests.support.secret_scan import find_leaks, secret_forms
from tests.support.sink_env_webhook import ScriptedReply, WebhookReceiver
from tests.support.slow_clients import SlowLoris, oversize_push
from tests.support.tcp_proxy import TcpProxy

ACCESS_KEY_SECRET = "Ak9Qx7Lm2Vw4RtZp8N3bYc6Hd1Jf5G"  # 30 characters, as Alibaba issues them
WEBHOOK_SECRET = "Wh3Fp8ZkQ1sT6vN2mL9xC4"
WEBHOOK_BEARER = "Br6Wq2Bn7LxK9pD3tR5yH8"
PUSH_SECRET = "Ps5Jn1HbR8cV4kM7wQ2zT9"
DATABASE_PASSWORD = "Db8Tc4Ys+/Kd2Fw6Nq"  # '+' and '/' make its URL-encoded form differ
MISTYPED_PUSH_SECRET = PUSH_SECRET[:-1] + "X"
"""A route secret one character off (a typo in Alibaba's console): logging it would give the secret away."""
SLOW_LORIS_CONNECTIONS = 300  # more than wip/push's default max_connections (256), so shedding is exercised
VALID_PUSHES_UNDER_ATTACK = 20


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(*args: str, timeout: float = 120) -> str:
    """Run a one-shot command of ours to its end; returns stdout and stderr together."""
    done = subprocess.run(
        [sys.executable, "-m", "mns_consumer", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=timeout,
        check=False,
    )
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def _counter(metrics_text: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@dataclass
class PostgresRole:
    """A throwaway login role with a recognisable password, reached through a cut-able proxy."""

    admin: sa.Engine
    name: str
    proxy: TcpProxy

    @property
    def url(self) -> str:
        password = DATABASE_PASSWORD.replace("+", "%2B").replace("/", "%2F")
        return f"postgresql+psycopg://{self.name}:{password}@127.0.0.1:{self.proxy.port}/test"


@pytest.fixture
def postgres_role() -> Iterator[PostgresRole]:
    """``CREATE ROLE ... LOGIN PASSWORD`` in the ``test`` database; dropped (with what it owns) afterwards."""
    admin = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": 3},
    )
    try:
        with admin.connect():
            pass
    except (sa.exc.OperationalError, sa.exc.InterfaceError):
        admin.dispose()
        service_unavailable("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"secscan_{uuid.uuid4().hex[:10]}"
    quoted_password = DATABASE_PASSWORD.replace("'", "''")
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE ROLE {name} LOGIN PASSWORD '{quoted_password}'"))
        connection.execute(sa.text(f"GRANT CREATE, USAGE ON SCHEMA public TO {name}"))
    proxy = TcpProxy("127.0.0.1", 5432).start()
    try:
        yield PostgresRole(admin, name, proxy)
    finally:
        proxy.stop()
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP OWNED BY {name}"))
            connection.execute(sa.text(f"DROP ROLE {name}"))
        admin.dispose()


@dataclass
class Scene:
    """Everything one scenario run set up, and every output it captured (name -> text)."""

    emulator: Emulator
    webhook: WebhookReceiver
    database: PostgresRole
    folder: Path
    data: Path
    config: Path
    http_port: int
    push_port: int
    minted: list[TemporaryCredential] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    wrong_modes: dict[str, str] = field(default_factory=dict)
    files_seen: set[str] = field(default_factory=set)

    def http(self, path: str) -> str:
        return httpx.get(f"http://127.0.0.1:{self.http_port}{path}", timeout=10).text

    def snapshot_probes(self, moment: str) -> None:
        """Keep what ``/metrics``, ``/healthz`` and ``/readyz`` say now."""
        for path in ("/metrics", "/healthz", "/readyz"):
            self.outputs[f"{path} ({moment})"] = self.http(path)

    def check_modes(self, moment: str) -> None:
        """Note every file not 0600 and folder not 0700 under the data folder (the daemon ran under umask 000)."""
        for path in [self.data, *self.data.rglob("*")]:
            try:
                mode = stat.S_IMODE(path.lstat().st_mode)
            except FileNotFoundError:
                continue  # a SQLite side file removed meanwhile
            name = str(path.relative_to(self.data))
            self.files_seen.add(name)
            if mode != (0o700 if path.is_dir() else 0o600):
                self.wrong_modes[f"{name} ({moment})"] = oct(mode)

    def failures(self, stage: str) -> float:
        return _counter(self.http("/metrics"), "mns_consumer_failures_total", stage=stage)

    def secrets(self) -> dict[str, str]:
        found = {
            "AccessKey secret": ACCESS_KEY_SECRET,
            "webhook secret": WEBHOOK_SECRET,
            "webhook Authorization header": WEBHOOK_BEARER,
            "push route secret": PUSH_SECRET,
            "mistyped push route secret": MISTYPED_PUSH_SECRET,
            "database password": DATABASE_PASSWORD,
        }
        for n, credential in enumerate(self.minted):
            found[f"security token #{n}"] = credential.security_token
            found[f"temporary AccessKey secret #{n}"] = credential.access_key_secret
        return found


def _config(scene: Scene, log_format: str) -> dict[str, Any]:
    emulator = scene.emulator
    return {
        "credentials": {"access_key_id": emulator.settings.access_key_id, "access_key_secret": ACCESS_KEY_SECRET},
        "endpoints": {
            "dybaseapi": emulator.endpoint,
            "dysmsapi": emulator.endpoint,
            "mns": emulator.url,
            "protocol": emulator.scheme,
        },
        "queues": [
            {
                "message_type": "SmsReport",
                "queue_name": emulator.queue_for("SmsReport"),
                "sinks": ["db", "archive"],
                **FAST_QUEUE,
            },
            {"message_type": "SmsUp", "queue_name": emulator.queue_for("SmsUp"), "sinks": ["hook"], **FAST_QUEUE},
        ],
        "sinks": {
            "db": {"type": "database", "url": scene.database.url, "table": "receipts", "connect_timeout_seconds": 2},
            "archive": {"type": "file", "path": str(scene.data / "archive" / "{message_type}.jsonl")},
            "hook": {
                "type": "webhook",
                "url": scene.webhook.url,
                "secret": WEBHOOK_SECRET,
                "headers": {"Authorization": f"Bearer {WEBHOOK_BEARER}"},
                "connect_timeout_seconds": 2,
                "read_timeout_seconds": 5,
            },
        },
        "dead_letter": {"type": "file", "path": str(scene.data / "dead" / "dead-letter.jsonl")},
        "logging": {"format": log_format, "level": "debug"},
        "http": {"listen": f"127.0.0.1:{scene.http_port}"},
        "push": {
            "listen": f"127.0.0.1:{scene.push_port}",
            "spool_path": str(scene.data / "spool" / "spool.db"),
            "routes": [
                {"path": "/alicom/SmsReport", "secret": PUSH_SECRET, "message_type": "SmsReport", "sinks": ["db"]}
            ],
        },
        **FAST_SETTINGS,
    }


def _echo_secrets(status: int) -> ScriptedReply:
    """A receiver's rejection quoting the request's credentials back in other letter cases."""
    # No "Authorization:" label before the token: only the sink's knowledge of its own secrets can mask it.
    body = f"bad request: signing key {WEBHOOK_SECRET.upper()} and token {WEBHOOK_BEARER.lower()} refused"
    return ScriptedReply(status, {"Content-Type": "text/plain"}, body.encode())


def _write_sends(emulator: Emulator, path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["phone_number", "send_date", "biz_id"])
        for record in emulator.send_log.snapshot():
            day = datetime.fromtimestamp(record.send_time, BEIJING).date()
            writer.writerow([record.phone_number, day.strftime("%Y%m%d"), record.biz_id])


def _play(scene: Scene, log_format: str) -> None:
    """Run the daemon through every failure, then the one-shot commands; fill ``scene.outputs``."""
    emulator, webhook, database = scene.emulator, scene.webhook, scene.database
    write_config(scene.config, _config(scene, log_format))
    scene.config.chmod(0o600)
    emulator.produce("SmsReport", 8, malformed=3)
    emulator.produce("SmsUp", 4)
    webhook.script.append(_echo_secrets(422))
    stderr_path = scene.folder / f"daemon-{log_format}.stderr"
    with stderr_path.open("wb") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "mns_consumer", "run", "--config", str(scene.config)],
            stdout=stderr,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            umask=0,
        )
    try:

        def describe() -> str:
            return f"exit {daemon.poll()}; log tail:\n{stderr_path.read_text(errors='replace')[-3000:]}"

        def up() -> bool:
            if daemon.poll() is not None:
                pytest.fail(f"the daemon exited: {describe()}")
            try:
                return httpx.get(f"http://127.0.0.1:{scene.http_port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, "the daemon became ready", diagnose=describe)
        # Malformed receipts and the webhook's rejection go to dead letters; the rest is stored.
        wait_until(lambda: queue_total(emulator) == 0, "the first receipts were settled", diagnose=describe)
        scene.snapshot_probes("after dead letters")

        # Dybaseapi refuses tokens: every queue token expires and the next three token calls fail.
        refusal = emulator.add_fault(
            kind="error", service="dybaseapi", operation="QueryTokenForMnsQueue", status=403,
            code="Forbidden.RAM", message="You are not authorized to do this action.", times=3,
        )  # fmt: skip
        emulator.expire_tokens()
        emulator.produce("SmsReport", 2)
        wait_until(lambda: refusal.fired >= 1, "a token call was refused", diagnose=describe)
        scene.snapshot_probes("token refused")
        wait_until(lambda: queue_total(emulator) == 0, "receipts settled after the refusals", diagnose=describe)

        # The webhook goes down while SmsUp receipts wait for it.
        webhook.stop()
        before = scene.failures("sink")
        emulator.produce("SmsUp", 2)
        wait_until(lambda: scene.failures("sink") > before, "the webhook failure was seen", diagnose=describe)
        scene.snapshot_probes("webhook down")
        webhook.start()
        wait_until(
            lambda: queue_total(emulator) == 0, "receipts settled after the webhook came back", diagnose=describe
        )

        # The database is cut off while SmsReport receipts wait for it.
        database.proxy.stop()
        before = scene.failures("sink")
        emulator.produce("SmsReport", 2)
        wait_until(lambda: scene.failures("sink") > before, "the database failure was seen", diagnose=describe)
        scene.snapshot_probes("database down")
        database.proxy.start()
        wait_until(
            lambda: queue_total(emulator) == 0, "receipts settled after the database came back", diagnose=describe
        )

        # Pushes: one with the right secret, one with a wrong one (404), one too large (413).
        receipts = [dict(item.receipt) for item in ReceiptFactory(Clock(), 11).make_many("SmsReport", 3)]
        base = f"http://127.0.0.1:{scene.push_port}/alicom/SmsReport"
        report = push_receipts(f"{base}/{PUSH_SECRET}", receipts, message_type="SmsReport", retry_delays_seconds=())
        assert report.accepted_receipts == 3, report
        wrong = httpx.post(f"{base}/{MISTYPED_PUSH_SECRET}", json=receipts, timeout=10)
        assert wrong.status_code == 404, wrong.text
        scene.snapshot_probes("after pushes")
        scene.check_modes("while running")
        assert daemon.poll() is None, describe()
        daemon.terminate()
        daemon.wait(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=30)
    scene.outputs[f"daemon log ({log_format})"] = stderr_path.read_text(errors="replace")

    config = str(scene.config)
    scene.outputs["check-config"] = _run("check-config", "--config", config)
    scene.outputs["check-config --connect (all up)"] = _run("check-config", "--connect", "--config", config)
    webhook.stop()
    database.proxy.stop()
    emulator.add_fault(
        kind="error", service="dybaseapi", operation="QueryTokenForMnsQueue", status=403, code="Forbidden.RAM"
    )
    scene.outputs["check-config --connect (all down)"] = _run("check-config", "--connect", "--config", config)
    emulator.faults.clear()
    scene.outputs["backfill (database down)"] = _backfill(scene)
    database.proxy.start()
    webhook.start()
    scene.outputs["backfill"] = _backfill(scene)
    webhook.script.extend([_echo_secrets(422)] * 4)
    dead_letters = scene.data / "dead" / "dead-letter.jsonl"
    remaining = scene.folder / f"remaining-{log_format}.jsonl"
    scene.outputs["dead-letters replay"] = _run(
        "dead-letters", "replay", str(dead_letters), "--config", config, "--remaining", str(remaining)
    )
    scene.outputs["dead-letters replay --remaining file"] = (
        remaining.read_text(errors="replace") if remaining.exists() else ""
    )
    scene.check_modes("after the commands")
    for path in sorted(scene.data.rglob("*")):
        if path.is_file():
            # latin-1 reads any bytes (the spool is SQLite), so a secret stored there is found as text.
            scene.outputs[f"data file {path.relative_to(scene.data)}"] = path.read_bytes().decode("latin-1")


def _backfill(scene: Scene) -> str:
    sends = scene.folder / "sends.csv"
    _write_sends(scene.emulator, sends)
    return _run("backfill", "--config", str(scene.config), "--sends", str(sends), "--json")


@pytest.fixture
def scene(make_emulator: Callable[..., Emulator], postgres_role: PostgresRole, tmp_path: Path) -> Iterator[Scene]:
    """An emulator recording the tokens it mints, a webhook receiver and fresh folders."""
    emulator = make_emulator(access_key_secret=ACCESS_KEY_SECRET, seed=23)
    webhook = WebhookReceiver(WEBHOOK_SECRET).start()
    (tmp_path / "conf").mkdir()
    scene = Scene(
        emulator=emulator,
        webhook=webhook,
        database=postgres_role,
        folder=tmp_path,
        data=tmp_path / "data",
        config=tmp_path / "conf" / "config.yaml",
        http_port=_free_port(),
        push_port=_free_port(),
    )
    mint = emulator.credentials.mint

    def recording_mint(message_type: str, queue_name: str) -> TemporaryCredential:
        credential = mint(message_type, queue_name)
        scene.minted.append(credential)
        return credential

    # Recording only: the emulator mints as ever, and the test learns every token it handed out.
    emulator.credentials.mint = recording_mint  # type: ignore[method-assign]
    try:
        yield scene
    finally:
        webhook.stop()


@pytest.mark.parametrize("form", sorted(secret_forms(DATABASE_PASSWORD)))
@pytest.mark.parametrize("prefix", ["", "a", "ab"])
def test_the_leak_search_finds_every_shape_of_a_secret_wherever_it_sits(form: str, prefix: str) -> None:
    """The search itself: each shape is found inside other text, at every offset (base64 depends on it)."""
    if form.startswith("base64"):
        encode = base64.urlsafe_b64encode if form.startswith("base64url") else base64.b64encode
        shape = encode(f"{prefix}user:{DATABASE_PASSWORD}".encode()).decode()
    else:
        shape = prefix + secret_forms(DATABASE_PASSWORD)[form]
    leaks = find_leaks({"log": f"Authorization: Basic {shape} trailing"}, {"database password": DATABASE_PASSWORD})
    assert leaks, f"{form} of the secret was not found in {shape!r}"


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_no_secret_reaches_logs_probes_files_or_command_output(scene: Scene, log_format: str) -> None:
    """Every secret, in every shape, is absent from everything the daemon and its commands put out."""
    # Given/When: a debug-level run through every failure, and every one-shot command after it.
    _play(scene, log_format)

    # Then: the run really exercised what it searches (so an empty search means something).
    assert scene.minted, "the emulator minted no queue token"
    log = scene.outputs[f"daemon log ({log_format})"]
    assert "debug" in log.lower(), "the daemon logged nothing at debug level"
    dead_letters = scene.outputs["data file dead/dead-letter.jsonl"]
    assert dead_letters.count("\n") >= 3 + 1, "expected the malformed receipts and the webhook rejection"
    assert "HTTP 422" in dead_letters, "the webhook's rejection (echoing the secrets) was not dead-lettered"
    assert "[FAILED]" in scene.outputs["check-config --connect (all down)"]
    assert "422" in scene.outputs["dead-letters replay"]
    # And: no secret appears anywhere.
    leaks = find_leaks(scene.outputs, scene.secrets())
    assert not leaks, "secrets leaked:\n" + "\n".join(map(str, leaks))

    # And: every file the daemon made under umask 000 is 0600, in 0700 folders.
    assert {"dead/dead-letter.jsonl", "spool/spool.db", "archive/SmsReport.jsonl"} <= scene.files_seen, scene.files_seen
    assert not scene.wrong_modes, f"files or folders with the wrong mode under umask 000: {scene.wrong_modes}"


def test_push_receiver_sheds_slow_loris_and_oversize_requests_without_starving_valid_pushes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """200 connections dribbling a byte a second and an oversize body leave valid pushes answered {"code":0}."""
    # Given: a push-only daemon with a small body limit.
    push_port, http_port = _free_port(), _free_port()
    max_body_bytes = 1_000_000
    config = write_config(
        tmp_path / "config.yaml",
        {
            "sinks": {"archive": {"type": "file", "path": str(tmp_path / "data" / "{message_type}.jsonl")}},
            "dead_letter": {"type": "file", "path": str(tmp_path / "data" / "dead-letter.jsonl")},
            "logging": {"format": "json", "level": "info"},
            "http": {"listen": f"127.0.0.1:{http_port}"},
            "push": {
                "listen": f"127.0.0.1:{push_port}",
                "spool_path": str(tmp_path / "data" / "spool.db"),
                "max_body_bytes": max_body_bytes,
                "routes": [
                    {
                        "path": "/alicom/SmsReport",
                        "secret": PUSH_SECRET,
                        "message_type": "SmsReport",
                        "sinks": ["archive"],
                    }
                ],
            },
            **FAST_SETTINGS,
        },
    )
    output = tmp_path / "daemon.out"
    with output.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "mns_consumer", "push-server", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, env=clean_env(),
        )  # fmt: skip
    path = f"/alicom/SmsReport/{PUSH_SECRET}"
    loris: SlowLoris | None = None
    try:

        def describe() -> str:
            return f"exit {daemon.poll()}; output:\n{output.read_text(errors='replace')[-3000:]}"

        def up() -> bool:
            if daemon.poll() is not None:
                pytest.fail(f"the daemon exited: {describe()}")
            try:
                return httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, "the push server became ready", diagnose=describe)

        # When: 200 slow connections are held and an oversize body is sent...
        loris = SlowLoris(push_port, path, SLOW_LORIS_CONNECTIONS)
        oversize_status: list[int | None] = []
        oversize = threading.Thread(
            target=lambda: oversize_status.append(oversize_push(push_port, path, max_body_bytes))
        )
        oversize.start()
        time.sleep(2)  # let the slow connections dribble their first bytes before the valid pushes
        held_at_start = loris.held()
        # ...while valid pushes are sent, each on a fresh connection as Alibaba sends them.
        factory = ReceiptFactory(Clock(), 29)
        acknowledged = 0
        answers: list[str] = []
        for _ in range(VALID_PUSHES_UNDER_ATTACK):
            receipts = [dict(item.receipt) for item in factory.make_many("SmsReport", 3)]
            try:
                answer = httpx.post(f"http://127.0.0.1:{push_port}{path}", json=receipts, timeout=10)
            except httpx.HTTPError as exc:
                answers.append(f"{type(exc).__name__}: {exc}")
                continue
            answers.append(f"{answer.status_code} {answer.text}")
            if answer.status_code == 200 and answer.json().get("code") == 0:
                acknowledged += 1
        held_at_end = loris.held()
        oversize.join(timeout=60)

        # Then: every valid push was acknowledged, and the oversize body was refused.
        with capsys.disabled():
            print(
                f"\nslow-loris: {SLOW_LORIS_CONNECTIONS} connections opened, {held_at_start} held when the valid "
                f"pushes began, {held_at_end} still held after them; valid pushes acknowledged meanwhile: "
                f"{acknowledged}/{VALID_PUSHES_UNDER_ATTACK}; oversize body answered: {oversize_status}"
            )
        assert held_at_start > 0, "no slow connection was held: the attack did not happen"
        assert acknowledged == VALID_PUSHES_UNDER_ATTACK, answers
        assert oversize_status in ([413], [None]), oversize_status
        assert daemon.poll() is None, describe()
    finally:
        if loris is not None:
            loris.close()
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=30)
