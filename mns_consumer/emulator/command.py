"""``mns-consumer emulator`` and ``mns-consumer emulator push``: the emulator's click commands.

:mod:`mns_consumer.cli` adds them to the main command; they live here, beside what they run.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

from mns_consumer.emulator.cli_options import service_options, service_settings
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9100; port 0 picks a free one)")
    return host.strip("[]") or "127.0.0.1", int(port)


def _parse_queues(values: tuple[str, ...]) -> dict[str, str]:
    queues: dict[str, str] = {}
    for value in values:
        message_type, sep, queue_name = value.partition("=")
        if not sep or not message_type or not queue_name:
            raise click.BadParameter(
                f"{value!r} is not MessageType=QueueName (e.g. SmsReport=Alicom-Queue-i1-SmsReport)"
            )
        queues[message_type] = queue_name
    return queues


@click.group(invoke_without_command=True)
@click.option("--listen", default="127.0.0.1:9100", show_default=True, help="HOST:PORT to serve on; port 0 picks one.")
@click.option("--access-key-id", default="emulator-access-key-id", show_default=True, help="Master AccessKey id.")
@click.option(
    "--access-key-secret",
    default="emulator-access-key-secret",
    show_default=True,
    envvar="MNS_EMULATOR_ACCESS_KEY_SECRET",
    help="Master AccessKey secret (also from MNS_EMULATOR_ACCESS_KEY_SECRET).",
)
@click.option(
    "--queue",
    "queue_specs",
    multiple=True,
    metavar="TYPE=QUEUE",
    help="A receipt queue to serve, e.g. SmsReport=Alicom-Queue-i1-SmsReport; repeatable.",
)
@click.option("--seed-receipts", default=0, show_default=True, help="Receipts enqueued into each queue at start.")
@click.option("--seed", default=0, show_default=True, help="Seed of sample receipts and probabilistic faults.")
@click.option("--token-ttl", "token_ttl_seconds", default=3600.0, show_default=True, help="Queue token lifetime, s.")
@click.option("--visibility-timeout", "visibility_seconds", default=30, show_default=True, help="Queue default, s.")
@click.option("--max-long-polls", default=16, show_default=True, help="Concurrent long polls per queue.")
@click.option("--tls", is_flag=True, help="Serve HTTPS with a self-signed certificate generated at start.")
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where cert.pem and key.pem are written (default: a temporary folder).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the endpoints as one JSON object.")
@click.option(
    "--print-config",
    is_flag=True,
    help="Print a ready mns-consumer configuration for this emulator (YAML) instead of the endpoints.",
)
@click.option(
    "--data-dir",
    default="mns-consumer-data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the printed configuration puts its SQLite database, files and dead letters.",
)
@service_options
@click.pass_context
def emulator(
    ctx: click.Context,
    /,
    listen: str,
    access_key_id: str,
    access_key_secret: str,
    queue_specs: tuple[str, ...],
    seed_receipts: int,
    seed: int,
    token_ttl_seconds: float,
    visibility_seconds: int,
    max_long_polls: int,
    tls: bool,
    tls_dir: Path | None,
    as_json: bool,
    print_config: bool,
    data_dir: Path,
    **service: Any,
) -> None:
    """Run the local emulator of MNS, Dybaseapi and Dysmsapi until stopped (Ctrl-C or SIGTERM)."""
    if ctx.invoked_subcommand is not None:
        return
    import yaml

    from mns_consumer.emulator import Emulator, EmulatorSettings, QueueDefaults
    from mns_consumer.emulator.consumer_config import emulator_config
    from mns_consumer.errors import EmulatorError

    host, port = parse_listen(listen)
    queues = _parse_queues(queue_specs) or {"SmsReport": "Alicom-Queue-i1-SmsReport"}
    settings = EmulatorSettings(
        host=host,
        port=port,
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
        queues=queues,
        token_ttl_seconds=token_ttl_seconds,
        seed=seed,
        seed_receipts=seed_receipts,
        tls=tls,
        tls_dir=tls_dir,
        max_long_polls_per_queue=max_long_polls,
        queue_defaults=QueueDefaults(visibility_timeout_seconds=visibility_seconds),
        **service_settings(service),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator_instance = Emulator(settings)
    try:
        emulator_instance.start()
    except (EmulatorError, ValueError) as exc:
        emulator_instance.stop()
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    with emulator_instance as running:
        described = running.describe()
        if print_config:
            click.echo(
                yaml.safe_dump(emulator_config(described, data_dir), sort_keys=False, allow_unicode=True).rstrip()
            )
        elif as_json:
            click.echo(json.dumps(described))
        else:
            click.echo(_describe_text(described))
        sys.stdout.flush()
        while not stop.wait(3600):
            pass
    click.echo("emulator stopped", err=True)


def _describe_text(described: dict[str, object]) -> str:
    queues = described["queues"]
    assert isinstance(queues, dict)  # noqa: S101  (describe() builds it)
    lines = [
        "mns-consumer emulator is serving",
        f"  MNS endpoint        {described['mns_endpoint']}",
        f"  Dybaseapi endpoint  {described['dybaseapi_endpoint']} (protocol {described['protocol']})",
        f"  Dysmsapi endpoint   {described['dysmsapi_endpoint']} (protocol {described['protocol']})",
        f"  AccessKey id        {described['access_key_id']}",
        f"  AccessKey secret    {described['access_key_secret']}",
        f"  token lifetime      {described['token_ttl_seconds']} s",
        f"  admin endpoint      {described['admin_url']}state",
    ]
    if described["ca_file"]:
        lines.append(f"  CA certificate      {described['ca_file']} (trust it with SSL_CERT_FILE or a cafile)")
    lines.append("  queues:")
    lines.extend(f"    {message_type:<18}{queue_name}" for message_type, queue_name in queues.items())
    return "\n".join(lines)


def _parse_delays(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of seconds") from None


@emulator.command("push")
@click.option("--url", required=True, help="The push receiver URL (route by type: one URL per MessageType).")
@click.option("--type", "message_type", required=True, help="MessageType of the receipts, e.g. SmsReport.")
@click.option("--count", default=10, show_default=True, help="How many receipts to push.")
@click.option("--batch-size", default=100, show_default=True, help="Receipts per POST (SmsReport/SmsUp only).")
@click.option("--variant", default="mainland", show_default=True, help="mainland or international (SmsReport).")
@click.option("--seed", default=0, show_default=True, help="Seed of the sample receipts.")
@click.option("--timeout-ms", default=700, show_default=True, help="Response timeout per POST, as Alibaba's.")
@click.option("--retry-delays", default="60,300,600", show_default=True, help="Seconds before each retry.")
@click.option("--redeliver", is_flag=True, help="Send every accepted batch a second time (idempotency check).")
@click.option("--cafile", type=click.Path(exists=True, dir_okay=False), help="CA file to trust for https URLs.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def push(
    url: str,
    message_type: str,
    count: int,
    batch_size: int,
    variant: str,
    seed: int,
    timeout_ms: int,
    retry_delays: str,
    redeliver: bool,
    cafile: str | None,
    as_json: bool,
) -> None:
    """POST sample receipts to a URL the way Alibaba's HTTP batch push mode does, and report the outcome."""
    from mns_consumer.emulator.clock import Clock
    from mns_consumer.emulator.push_client import push_receipts
    from mns_consumer.emulator.samples import ReceiptFactory

    factory = ReceiptFactory(Clock(), seed)
    try:
        receipts = [item.receipt for item in factory.make_many(message_type, count, variant=variant)]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--type") from None
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    report = push_receipts(
        url,
        receipts,
        message_type=message_type,
        batch_size=batch_size,
        response_timeout_seconds=timeout_ms / 1000,
        retry_delays_seconds=_parse_delays(retry_delays),
        redeliver=redeliver,
        verify=cafile or True,
        stop=stop,
        on_attempt=None if as_json else lambda attempt: click.echo(_attempt_line(attempt), err=True),
    )
    click.echo(json.dumps(report.to_dict()) if as_json else report.summary())
    sys.exit(EXIT_OK if report.accepted_receipts == report.receipts else EXIT_FAILURE)


def _attempt_line(attempt: object) -> str:
    fields = {name: getattr(attempt, name, None) for name in ("batch_index", "attempt", "status_code", "outcome")}
    return "push " + " ".join(f"{k}={v}" for k, v in fields.items())
