"""The ``mns-consumer`` command line: a thin click shell over the package, with named exit codes."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from mns_consumer import __version__
from mns_consumer.emulator.command import emulator, parse_listen
from mns_consumer.emulator.command import push as emulator_push
from mns_consumer.errors import (
    ConfigError,
    InvalidSendsError,
    SendDetailsAuthError,
    SendDetailsError,
    SendDetailsUnavailable,
    SinkUnavailable,
)
from mns_consumer.exit_codes import EXIT_FAILURE, EXIT_KILLED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE

if TYPE_CHECKING:
    from mns_consumer.config import Config

__all__ = ["EXIT_FAILURE", "EXIT_KILLED", "EXIT_OK", "EXIT_USAGE", "main"]

_T = TypeVar("_T")

EPILOG = """\b
Examples:
  mns-consumer check-config --config /etc/mns-consumer/config.yaml
  mns-consumer decode --message-type SmsReport body.txt
  mns-consumer dead-letters replay /var/lib/mns-consumer/dead-letter.jsonl --config config.yaml --remaining left.jsonl
  mns-consumer emulator --listen 127.0.0.1:9100 --queue SmsReport=Alicom-Queue-i1-SmsReport --seed-receipts 100
  mns-consumer emulator --tls --tls-dir /tmp/emu --queue SmsUp=Alicom-Queue-i1-SmsUp
  mns-consumer emulator push --url http://127.0.0.1:8080/alicom/SmsReport --type SmsReport --count 500
  mns-consumer backfill --config config.yaml --sends missing-receipts.csv
  mns-consumer reconcile --config config.yaml --date 20240501 --sends sends.csv
  mns-consumer push-server --config /etc/mns-consumer/config.yaml
"""


@click.group(epilog=EPILOG)
@click.version_option(__version__, prog_name="mns-consumer")
def main() -> None:
    """Consume Alibaba Cloud SMS receipts (MNS queues, HTTP push, QuerySendDetails) into durable sinks."""


_config_option = functools.partial(
    click.option,
    "--config",
    "config_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MNS_CONSUMER_CONFIG",
)
_json_option = functools.partial(click.option, "--json", "as_json", is_flag=True)
_sink_option = functools.partial(click.option, "--sink", "sink_names", multiple=True)
_sends_option = functools.partial(
    click.option, "--sends", "sends_file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path)
)


def _fail(code: int, message: object) -> NoReturn:
    """Say what went wrong on stderr and leave with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def _exit_on(*codes: tuple[type[Exception] | tuple[type[Exception], ...], int]) -> Iterator[None]:
    """Turn an error raised inside into ``error: <it>`` and the exit code of its first (type, code) pair."""
    try:
        yield
    except Exception as exc:
        for kind, code in codes:
            if isinstance(exc, kind):
                _fail(code, exc)
        raise


def _read_sends(sends_file: Path | None, what: str, read: Callable[[str | None], _T]) -> _T:
    """``read(standard input's text, for --sends -)``; exit 2 when the sends cannot be read or are invalid."""
    try:
        with _exit_on((InvalidSendsError, EXIT_USAGE)):
            return read(sys.stdin.read() if sends_file is not None and str(sends_file) == "-" else None)
    except OSError as exc:
        _fail(EXIT_USAGE, f"{sends_file}: cannot read {what}: {exc.strerror or exc}")


def _load(config_file: Path) -> Config:
    """The configuration, or exit 2 naming the file, the key and the fix."""
    from mns_consumer.config import load_config

    with _exit_on((ConfigError, EXIT_USAGE)):
        return load_config(config_file)


main.add_command(emulator)
emulator.epilog = emulator_push.epilog = EPILOG


@main.command(
    "decode",
    epilog="""\b
Examples:
  mns-consumer decode --message-type SmsReport body.b64
  echo '{"to":"6591234567","status":"1","message_id":"12441353"}' | mns-consumer decode --message-type GlobeSmsReport
  mns-consumer decode --message-type SmsUp push-payload.json
""",
)
@click.option("--message-type", required=True, help="MessageType of the body, e.g. SmsReport or SmsUp.")
@click.argument(
    "body_file", metavar="[FILE]", default="-", type=click.Path(exists=True, dir_okay=False, allow_dash=True)
)
def decode(message_type: str, body_file: str) -> None:
    """Decode one receipt body from FILE (or stdin) and print the normalized receipt as JSON.

    The body may be an MNS body (base64 text, or the JSON object it encodes) or an HTTP push body (a JSON
    array), which prints an array. A body that does not decode is explained on stderr, with exit code 1.
    """
    from mns_consumer.errors import DecodeError
    from mns_consumer.receipts import MESSAGE_TYPES, decode_mns_body, decode_push

    if message_type not in MESSAGE_TYPES:
        raise click.BadParameter(
            f"{message_type!r} is not one of {', '.join(MESSAGE_TYPES)}", param_hint="--message-type"
        )
    with click.open_file(body_file, "rb") as stream:
        body: bytes = stream.read()
    errors: list[DecodeError] = []
    try:
        if body.lstrip().startswith(b"["):
            results = decode_push(message_type, body)
            errors = [result for result in results if isinstance(result, DecodeError)]
            output: object = [result.to_json_dict() for result in results if not isinstance(result, DecodeError)]
        else:
            output = decode_mns_body(message_type, body).to_json_dict()
        click.echo(json.dumps(output, ensure_ascii=False, indent=2))
    except DecodeError as exc:
        errors = [exc]
    for error in errors:
        click.echo(f"cannot decode {message_type}: field {error.field or '(body)'}: {error.reason}", err=True)
    sys.exit(EXIT_FAILURE if errors else EXIT_OK)


@main.command("run", epilog=EPILOG)
@_config_option(help="The YAML configuration (also from MNS_CONSUMER_CONFIG).")
def run(config_file: Path) -> None:
    """Consume the configured queues (and HTTP pushes, with a push section) into their sinks until stopped.

    SIGTERM or SIGINT drains and exits 0. SIGHUP reopens file sinks and the log file. A second
    SIGTERM/SIGINT exits at once with code 3.
    A configuration error exits 2 before anything starts.
    """
    _serve(config_file, push_only=False)


@main.command(
    "push-server",
    epilog="""\b
Examples:
  mns-consumer push-server --config /etc/mns-consumer/config.yaml
  mns-consumer emulator push --url http://127.0.0.1:8080/alicom/SmsReport/$PUSH_SECRET --type SmsReport --count 50
""",
)
@_config_option(help="The YAML configuration (also from MNS_CONSUMER_CONFIG); its push section is required.")
def push_server(config_file: Path) -> None:
    """Serve only the HTTP push receiver of the configuration (its queues are ignored) until SIGTERM.

    Each push is stored in the spool before it is acknowledged, then delivered to the route's sinks.
    Signals, exit codes, /metrics, /healthz and /readyz are those of ``run``.
    """
    _serve(config_file, push_only=True)


def _configure_logging(config: Config, config_file: Path) -> None:
    """Set up logging, or exit 2 naming ``logging.file`` when the log file cannot be opened."""
    from mns_consumer.files import describe_os_error
    from mns_consumer.observe.logging import configure_logging

    try:
        configure_logging(config.logging)
    except OSError as exc:
        where = describe_os_error(exc, config.logging.file or "")
        _fail(EXIT_USAGE, f"{config_file}: logging.file: cannot open {where} (use a writable path)")


def _serve(config_file: Path, *, push_only: bool) -> None:
    """Load the configuration and run the supervisor until it is stopped (``run`` and ``push-server``)."""
    from mns_consumer.consume.supervisor import Supervisor
    from mns_consumer.observe.logging import reopen_log_file

    config = _load(config_file)
    if push_only and config.push is None:
        _fail(
            EXIT_USAGE,
            f"{config_file}: push: no push section (add push: {{listen: ..., spool_path: ..., routes: [...]}})",
        )
    if not config.queues and config.push is None:
        _fail(EXIT_USAGE, f"{config_file}: queues: no queue is configured (add a queues[] entry or a push section)")
    if push_only:
        config = config.model_copy(update={"queues": []})
    _configure_logging(config, config_file)
    # What the imports and the configuration built lives as long as the daemon: frozen, it is no longer
    # walked by every full collection, whose pause would otherwise set the receipts' tail latency.
    gc.freeze()
    with _exit_on((ConfigError, EXIT_USAGE)):
        code = Supervisor(config, on_reopen=reopen_log_file, source=str(config_file)).run()
    sys.exit(code)


@main.command("health", epilog=EPILOG)
@click.option(
    "--url",
    default="http://127.0.0.1:9464/healthz",
    show_default=True,
    help="The probe to ask: /healthz (alive) or /readyz (ready to consume).",
)
@click.option("--timeout-seconds", default=3.0, show_default=True, help="How long to wait for the answer, s.")
def health(url: str, timeout_seconds: float) -> None:
    """Exit 0 when the daemon's probe at URL passes, 1 otherwise: for container HEALTHCHECKs."""
    import httpx

    try:
        response = httpx.get(url, timeout=timeout_seconds, trust_env=False)
    except httpx.HTTPError as exc:
        click.echo(f"unhealthy: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(response.text)
    sys.exit(EXIT_OK if response.status_code == 200 else EXIT_FAILURE)


@main.command(
    "demo",
    epilog="""\b
Examples:
  mns-consumer demo
  mns-consumer demo --receipts 1000 --seed 7 --data-dir /tmp/demo
  mns-consumer demo --forever --http-listen 127.0.0.1:9464
  mns-consumer demo --receipts 30 --json | tail -n 1
""",
)
@click.option(
    "--receipts",
    "receipts_per_queue",
    default=200,
    show_default=True,
    type=click.IntRange(min=0),
    help="Valid receipts seeded into each queue (a few malformed ones come on top).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the sample receipts.")
@click.option(
    "--data-dir",
    default="mns-consumer-demo",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where the SQLite database, JSON Lines and dead letters go; only a new, empty or earlier demo folder.",
)
@click.option("--forever", is_flag=True, help="Keep consuming, with receipts trickling in, until Ctrl-C.")
@click.option(
    "--http-listen",
    default="127.0.0.1:9464",
    show_default=True,
    help="HOST:PORT of /metrics, /healthz and /readyz; port 0 picks a free one.",
)
@_json_option(help="Also print the summary as one JSON line at the end.")
def demo(**options: Any) -> None:
    """Run the emulator and the daemon in-process on seeded receipts, show progress, and sum up.

    Without --forever it stops once every queue is drained. Exits 0, or 2 when --data-dir holds files
    the demo did not create or --http-listen cannot be used.
    """
    from mns_consumer.demo import DemoOptions, run_demo

    parse_listen(options["http_listen"])
    with _exit_on((ConfigError, EXIT_USAGE)):
        code = run_demo(DemoOptions(**options))
    sys.exit(code)


@main.command("check-config", epilog=EPILOG)
@click.option(
    "--config",
    "config_option",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MNS_CONSUMER_CONFIG",
    help="The YAML configuration to check (also from MNS_CONSUMER_CONFIG).",
)
@click.argument("config_argument", metavar="[CONFIG]", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--connect",
    is_flag=True,
    help="Also fetch a token for each queue, probe the queue without taking messages, and reach each sink "
    "without storing anything (webhook: an empty batch marked X-MNS-Consumer-Probe: 1; database: SELECT 1; "
    "S3: HeadBucket; files: the folder is writable).",
)
@click.pass_context
def check_config(ctx: click.Context, config_option: Path | None, config_argument: Path | None, connect: bool) -> None:
    """Validate the configuration and print it in effect, with every secret masked.

    The file is given as --config FILE, like every other command, or as the positional CONFIG, the
    older spelling. Exits 0 when the file is valid (and, with --connect, everything answered), 2 when
    the file is invalid (with the file, the key and the fix), and 1 when a connection check failed (its
    line starts with [FAILED] and names the dependency and the reason).
    """
    import yaml
    from click.core import ParameterSource

    # The positional wins over MNS_CONSUMER_CONFIG, since it was typed on this command line.
    typed = ctx.get_parameter_source("config_option") is ParameterSource.COMMANDLINE
    if typed and config_argument is not None and config_argument != config_option:
        raise click.UsageError(f"two configurations given ({config_argument} and --config {config_option}): give one")
    config_file = config_argument or config_option
    if config_file is None:
        raise click.UsageError("Missing option '--config' (or the positional CONFIG).")
    config = _load(config_file)
    click.echo(str(yaml.safe_dump(config.masked(), sort_keys=False, allow_unicode=True)).rstrip())
    if connect:
        from mns_consumer.connect_check import check_connections

        results = check_connections(config)
        click.echo("\nconnection checks:")
        for result in results:
            click.echo(f"  [{'ok' if result.ok else 'FAILED'}] {result.subject}: {result.detail}")
        sys.exit(EXIT_OK if all(result.ok for result in results) else EXIT_FAILURE)


@main.group("dead-letters")
def dead_letters() -> None:
    """Inspect and replay dead letters (messages that could not be decoded or stored)."""


@dead_letters.command("replay", epilog=EPILOG)
@click.argument("letters_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_config_option(help="The configuration naming queues and sinks (also from MNS_CONSUMER_CONFIG).")
@click.option(
    "--remaining",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the letters that still fail here (FILE itself is never edited).",
)
def replay(letters_file: Path, config_file: Path, remaining: Path | None) -> None:
    """Re-decode the dead letters in FILE and deliver them to their sinks once the cause is fixed.

    A letter is replayed when it decodes and every sink of its queue accepts it. Exits 0 when every
    letter was replayed, 1 when some still fail (listed with their reasons), 2 on a bad configuration
    or a --remaining path that can never be written.
    """
    from mns_consumer.config_paths import never_openable
    from mns_consumer.replay import replay_dead_letters, write_remaining

    # Checked before replaying: letters delivered and then not written down would be lost to the operator.
    if remaining is not None and (problem := never_openable(str(remaining), is_folder=False)) is not None:
        _fail(EXIT_USAGE, f"--remaining: {str(remaining)!r} {problem}")
    config = _load(config_file)
    with _exit_on(((SinkUnavailable, ValueError), EXIT_FAILURE)):
        report = replay_dead_letters(letters_file, config)
    for letter in report.remaining:
        where = letter.message_id or letter.dedupe_key or "-"
        click.echo(f"still failing: {letter.message_type} {where}: {letter.reason}", err=True)
    if remaining is not None:
        with _exit_on(((ConfigError, SinkUnavailable), EXIT_FAILURE)):
            write_remaining(report.remaining, remaining)
        click.echo(f"wrote {len(report.remaining)} remaining letter(s) to {remaining}", err=True)
    click.echo(report.summary())
    sys.exit(EXIT_OK if not report.remaining else EXIT_FAILURE)


STATUS_EPILOG = """\b
Examples:
  mns-consumer status sweep --config /etc/mns-consumer/config.yaml
  mns-consumer status sweep --config config.yaml --sink db --older-than-hours 72
"""


@main.group("status", epilog=STATUS_EPILOG)
def status() -> None:
    """The database sinks' status table (one row per sent message)."""


@status.command(
    "sweep",
    epilog=f"{STATUS_EPILOG}\b\nRun it from a timer (systemd timer, Kubernetes CronJob) every 10 minutes or so;"
    " several at once are harmless.\n",
)
@_config_option(help="The YAML configuration (also from MNS_CONSUMER_CONFIG).")
@_sink_option(help="Sweep this database sink (repeatable); default: all.")
@click.option(
    "--older-than-hours",
    type=click.FloatRange(min=0, min_open=False),
    help="Age past which pending becomes unknown, hours (default: each sink's status_unknown_after_hours, 72).",
)
@click.option(
    "--batch-rows", default=1000, show_default=True, type=click.IntRange(1, 100000), help="Rows per transaction."
)
@_json_option(help="Print the result as one JSON object.")
def status_sweep(
    config_file: Path, sink_names: tuple[str, ...], older_than_hours: float | None, batch_rows: int, as_json: bool
) -> None:
    """Mark messages with no final report long after sending as unknown in the status tables.

    A status row still pending status_unknown_after_hours (72) after its send time becomes unknown, as
    Alibaba's console shows it; a final report arriving later still moves it to delivered or failed.
    Exits 0 when every sink was swept, 2 on a bad configuration or --sink, 4 when a database is unavailable.
    """
    from mns_consumer.sinks.status_tables import sweep_configured_sinks

    config = _load(config_file)
    _configure_logging(config, config_file)
    try:
        with _exit_on((ConfigError, EXIT_USAGE), (SinkUnavailable, EXIT_UNAVAILABLE)):
            results = sweep_configured_sinks(
                config.sinks, sink_names, older_than_hours=older_than_hours, batch_rows=batch_rows
            )
    except ValueError as exc:
        _fail(EXIT_USAGE, f"{config_file}: --sink: {exc}")
    if as_json:
        click.echo(json.dumps({"swept": [dataclasses.asdict(result) for result in results]}))
    else:
        for result in results:
            click.echo(
                f"{result.sink}: {result.swept} message(s) pending for more than {result.older_than_hours:g} h "
                f"marked unknown in {result.table}"
            )
        if not results:
            click.echo("no database sink has a status table")
    sys.exit(EXIT_OK)


@main.command(
    "backfill",
    epilog="""\b
Examples:
  mns-consumer backfill --config config.yaml --phone 13900001111 --date 2024-05-01 --biz-id 812345678901234567^0
  mns-consumer backfill --config config.yaml --sends missing.csv --dry-run
  mns-consumer backfill --config config.yaml --sends sends.jsonl --metrics-file /var/lib/node_exporter/backfill.prom
\b
A sends file is CSV with a header row, or JSON Lines, with the columns
phone_number, send_date (YYYY-MM-DD or YYYYMMDD, Beijing day) and biz_id:
  phone_number,send_date,biz_id
  13900001111,2024-05-01,812345678901234567^0
""",
)
@_config_option(help="The YAML configuration (also from MNS_CONSUMER_CONFIG): credentials, endpoints, sinks, backfill.")
@click.option("--phone", help="One send: the recipient's number (with --date and --biz-id).")
@click.option("--date", "send_date", help="One send: its Beijing day, YYYY-MM-DD or YYYYMMDD (last 30 days).")
@click.option("--biz-id", help="One send: the BizId SendSms returned (required: it is part of the dedupe key).")
@_sends_option(help="CSV (with a header row) or JSON Lines file of sends; - reads standard input.")
@_sink_option(help="Write to this sink (repeatable) instead of the sinks SmsReport is routed to.")
@click.option(
    "--include-pending/--skip-pending",
    default=None,
    help="Store sends still waiting for their report as status pending (default: backfill.include_pending).",
)
@click.option("--concurrency", type=click.IntRange(1, 32), help="Queries in flight (default: backfill.concurrency).")
@click.option("--dry-run", is_flag=True, help="Query and print the receipts as JSON lines; store nothing.")
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run's metrics here for node_exporter's textfile collector (*.prom); counters accumulate.",
)
@_json_option(help="Print the summary as one JSON object.")
def backfill(
    config_file: Path,
    phone: str | None,
    send_date: str | None,
    biz_id: str | None,
    sends_file: Path | None,
    sink_names: tuple[str, ...],
    include_pending: bool | None,
    concurrency: int | None,
    dry_run: bool,
    metrics_file: Path | None,
    as_json: bool,
) -> None:
    """Recover missing SmsReport receipts from QuerySendDetails and store them in the sinks, idempotently.

    Each send (number, day, BizId) is queried; delivered and failed records become the receipts MNS would
    have delivered, with the same dedupe keys, so receipts already stored are not stored again. Exits 0
    when everything was queried and stored, 1 when some sends failed or receipts were dead-lettered,
    2 on bad options, configuration or sends file, and 4 when Dysmsapi or a sink stayed unavailable
    (rerun later).
    """
    import os

    from mns_consumer.backfill import (
        BackfillOptions,
        collect_sends,
        describe_failure,
        events_with_textfile,
        run_backfill,
        unmatched_date_warning,
    )

    config = _load(config_file)
    sends = _read_sends(
        sends_file, "the sends file", lambda stdin: collect_sends(phone, send_date, biz_id, sends_file, stdin=stdin)
    )
    _configure_logging(config, config_file)
    events, write_metrics = events_with_textfile(metrics_file)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # The first signal lets in-flight queries finish and their receipts be stored; a second one kills.
        stop.set()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    options = BackfillOptions(
        sinks=sink_names, dry_run=dry_run, include_pending=include_pending, concurrency=concurrency
    )
    emit = (lambda receipt: click.echo(json.dumps(receipt.to_json_dict(), ensure_ascii=False))) if dry_run else None
    try:
        with _exit_on((ConfigError, EXIT_USAGE)):
            report = run_backfill(config, sends, options, environ=os.environ, events=events, stop=stop, emit=emit)
    finally:
        problem = write_metrics()
        if problem:
            click.echo(f"warning: {problem}", err=True)
    mask = config.logging.mask_phone_numbers
    for failure in report.failures:
        click.echo(f"error: {describe_failure(failure, mask=mask)}", err=True)
    if report.stopped:
        click.echo(f"stopped: {report.stopped}", err=True)
    if (warning := unmatched_date_warning(report, mask=mask)) is not None:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_json(mask=mask), ensure_ascii=False))
    else:
        click.echo(report.summary(dry_run=dry_run))
    sys.exit(report.exit_code)


@main.command(
    "reconcile",
    epilog="""\b
Examples:
  mns-consumer reconcile --config config.yaml --date 20240501
  mns-consumer reconcile --config config.yaml --date 2024-05-01 --sends sends.csv --backfill --json
""",
)
@_config_option(help="The YAML configuration (also from MNS_CONSUMER_CONFIG): credentials, endpoints, database sinks.")
@click.option("--date", "send_date", required=True, help="The Beijing day to reconcile, YYYYMMDD or YYYY-MM-DD.")
@_sends_option(
    help="The application's send log (CSV or JSON Lines, as for backfill): "
    "list the day's sends without a final receipt."
)
@click.option("--backfill", "do_backfill", is_flag=True, help="Recover those sends through backfill, then count again.")
@_sink_option(help="Count this database sink (repeatable); default: all routed.")
@_json_option(help="Print the report as one JSON object.")
def reconcile(
    config_file: Path,
    send_date: str,
    sends_file: Path | None,
    do_backfill: bool,
    sink_names: tuple[str, ...],
    as_json: bool,
) -> None:
    """Compare Alibaba's daily counts (QuerySendStatistics) with the database sinks, and show the gap.

    Exits 0 when no sink lacks a delivered or failed report Alibaba counts, 1 when one does (or the
    query failed), 2 on bad options or configuration (no database sink), 4 when Dysmsapi or a database
    stayed unavailable.
    """
    import os

    from mns_consumer.backfill import parse_send_date, read_sends
    from mns_consumer.backfill.reconcile import reconcile as run_reconcile

    try:
        day = parse_send_date(send_date)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--date") from None
    config = _load(config_file)
    sends = None
    if sends_file is not None:
        sends = _read_sends(
            sends_file,
            "the send log",
            lambda stdin: read_sends(sends_file if stdin is None else Path("<stdin>"), stdin),
        )
    _configure_logging(config, config_file)
    try:
        with _exit_on((ConfigError, EXIT_USAGE), ((SendDetailsUnavailable, SinkUnavailable), EXIT_UNAVAILABLE)):
            report = run_reconcile(
                config, day, environ=os.environ, sends=sends, sink_names=sink_names, backfill=do_backfill
            )
    except SendDetailsAuthError as exc:
        _fail(EXIT_USAGE, f"QuerySendStatistics: {exc} (the RAM policy needs dysms:QuerySendStatistics)")
    except SendDetailsError as exc:
        _fail(EXIT_FAILURE, f"QuerySendStatistics: {exc}")
    mask = config.logging.mask_phone_numbers
    if as_json:
        click.echo(json.dumps(report.to_json(mask=mask), ensure_ascii=False))
    else:
        click.echo("\n".join(report.lines(mask=mask)))
    sys.exit(report.exit_code)


def emulator_main() -> None:
    """Entry point of ``python -m mns_consumer.emulator``."""
    main(args=["emulator", *sys.argv[1:]], prog_name="python -m mns_consumer.emulator")
