"""The logging pipeline: secrets and phone numbers masked, JSON lines, third-party lines, files, console."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.strategies
import pydantic
import pytest
import structlog
from structlog.testing import LogCapture

from mns_consumer.observe import redaction
from mns_consumer.observe.logging import LoggingConfig, configure_logging, get_logger, reopen_log_file, reset_logging
from mns_consumer.observe.redaction import (
    MASK,
    is_secret_key,
    mask_phone_number,
    mask_phone_numbers,
    redact_secrets,
)

SECRET = "s3cr3t-VALUE-42"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put structlog and the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    reset_logging()
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def captured() -> LogCapture:
    """Events after redact_secrets and mask_phone_numbers, captured by structlog.testing.LogCapture."""
    capture = LogCapture()
    structlog.configure(processors=[redact_secrets, mask_phone_numbers, capture])
    return capture


def json_pipeline(**settings: Any) -> io.StringIO:
    """Configure the real pipeline in JSON mode, writing to a fresh StringIO, and return it."""
    stream = io.StringIO()
    configure_logging(LoggingConfig(**{"format": "json", **settings}), stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written so far, parsed as JSON (fails if any line is not JSON)."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- redaction of keys -------------------------------------------------------------------------------


def test_secret_keys_are_masked_at_every_nesting_level(captured: LogCapture) -> None:
    """A secret-named key is masked in the event, in nested dicts and in dicts inside lists and tuples."""
    get_logger("t").info(
        "token.refreshed",
        security_token=SECRET,
        credentials={"AccessKeyId": "LTAI1", "AccessKeySecret": SECRET},
        request={"headers": {"Authorization": f"MNS LTAI1:{SECRET}", "x-acs-security-token": SECRET}},
        sinks=[{"name": "hook", "webhook_secret": SECRET}, ({"api-key": SECRET},)],
        Cookie=SECRET,
        db_password=12345,
    )

    [event] = captured.entries
    assert event["security_token"] == MASK
    assert event["credentials"] == MASK
    assert event["request"] == {"headers": {"Authorization": MASK, "x-acs-security-token": MASK}}
    assert event["sinks"] == [{"name": "hook", "webhook_secret": MASK}, ({"api-key": MASK},)]
    assert event["Cookie"] == MASK
    assert event["db_password"] == MASK


def test_allow_listed_and_ordinary_keys_are_kept(captured: LogCapture) -> None:
    """Keys that merely mention a secret word, or name identifiers, keep their values."""
    get_logger("t").info(
        "token.refreshed",
        token_expires_at="2024-05-01T12:00:00+08:00",
        token_seconds_to_expiry=118,
        SignatureMethod="HMAC-SHA1",
        access_key_id="LTAI1",
        dedupe_key="ab12",
        security_token=None,
        webhook_secret="",
        has_password=True,
    )

    [event] = captured.entries
    assert event["token_expires_at"] == "2024-05-01T12:00:00+08:00"
    assert event["token_seconds_to_expiry"] == 118
    assert event["SignatureMethod"] == "HMAC-SHA1"
    assert event["access_key_id"] == "LTAI1"
    assert event["dedupe_key"] == "ab12"
    assert event["security_token"] is None
    assert event["webhook_secret"] == ""
    assert event["has_password"] is True


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("access_key_secret", True),
        ("SecurityToken", True),
        ("x-acs-security-token", True),
        ("X-Api-Key", True),
        ("Set-Cookie", True),
        ("token_expires_at", False),
        ("TokenExpiresAt", False),
        ("access_key_id", False),
        ("dedupe_key", False),
        ("queue", False),
    ],
)
def test_secret_key_names_are_matched_case_and_separator_insensitively(name: str, secret: bool) -> None:
    """is_secret_key ignores case, underscores and hyphens, and honours the allow-list."""
    assert is_secret_key(name) is secret


def test_redaction_does_not_change_the_callers_objects(captured: LogCapture) -> None:
    """Nested containers are copied: the dict the caller logged still holds its real values."""
    headers = {"security-token": SECRET, "items": [{"password": SECRET}]}

    get_logger("t").info("request.sent", headers=headers)

    assert headers == {"security-token": SECRET, "items": [{"password": SECRET}]}
    assert captured.entries[0]["headers"] == {"security-token": MASK, "items": [{"password": MASK}]}


# -- redaction inside strings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Authorization: MNS STS.NUx:{SECRET}", f"Authorization: MNS {MASK}"),
        (f"authorization={SECRET}", f"authorization={MASK}"),
        (f"security-token: {SECRET}\nDate: Wed", f"security-token: {MASK}\nDate: Wed"),
        (f"x-acs-security-token: {SECRET}", f"x-acs-security-token: {MASK}"),
        (
            f"GET /?AccessKeyId=LTAI1&Signature={SECRET}%3D&SignatureMethod=HMAC-SHA1&Action=Q",
            f"GET /?AccessKeyId=LTAI1&Signature={MASK}&SignatureMethod=HMAC-SHA1&Action=Q",
        ),
        (f"SecurityToken={SECRET}&Format=JSON", f"SecurityToken={MASK}&Format=JSON"),
        (
            f"postgresql+psycopg://mns:{SECRET}@db:5432/receipts",
            f"postgresql+psycopg://mns:{MASK}@db:5432/receipts",
        ),
        (f"X-Signature: sha256={SECRET}", f"X-Signature: {MASK}"),
        (
            f"{{'Authorization': 'MNS id:{SECRET}', 'x-mns-version': '2015-06-06'}}",
            f"{{'Authorization': 'MNS {MASK}', 'x-mns-version': '2015-06-06'}}",
        ),
        (
            f'{{"AccessKeyId": "LTAI1", "AccessKeySecret": "{SECRET}"}}',
            f'{{"AccessKeyId": "LTAI1", "AccessKeySecret": "{MASK}"}}',
        ),
        (f"Cookie: session={SECRET}; theme=dark", f"Cookie: {MASK}"),
        ("sinks.hook.secret: required key is missing", "sinks.hook.secret: required key is missing"),
        ("token.refreshed at 2024-05-01T12:00:00Z", "token.refreshed at 2024-05-01T12:00:00Z"),
        ("https://mns.example.com:443/queues/q", "https://mns.example.com:443/queues/q"),
    ],
)
def test_secret_looking_substrings_of_strings_are_masked(captured: LogCapture, text: str, expected: str) -> None:
    """Headers, query parameters, URL passwords and quoted pairs inside string values are masked."""
    get_logger("t").warning("request.failed", error=text, nested=[{"detail": text}])

    [event] = captured.entries
    assert event["error"] == expected
    assert event["nested"] == [{"detail": expected}]


# -- phone numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("13912341111", "139****1111"),
        ("+8613912341111", "+861******1111"),
        ("13900001111,13900002222", "139****1111,139****2222"),
        ("1391234", "*******"),
        ("95588", "*****"),
    ],
)
def test_phone_numbers_keep_only_their_first_three_and_last_four_digits(number: str, masked: str) -> None:
    """Long numbers show 3 + 4 digits; numbers too short to hide 4 digits are masked entirely."""
    assert mask_phone_number(number) == masked


def test_phone_number_keys_are_masked_at_every_nesting_level(captured: LogCapture) -> None:
    """phone_number, PhoneNum, mobile, to (and lists of them) are masked, nested or not."""
    get_logger("t").info(
        "receipt.decoded",
        phone_number="13912341111",
        detail={"PhoneNum": 13912342222, "receipts": [{"mobile": "13912343333"}]},
        to=["13912344444"],
        queue="Alicom-Queue-1-SmsReport",
    )

    [event] = captured.entries
    assert event["phone_number"] == "139****1111"
    assert event["detail"] == {"PhoneNum": "139****2222", "receipts": [{"mobile": "139****3333"}]}
    assert event["to"] == ["139****4444"]
    assert event["queue"] == "Alicom-Queue-1-SmsReport"


def test_phone_numbers_are_masked_in_the_configured_pipeline_by_default() -> None:
    """With the default configuration a logged phone number never reaches the output."""
    stream = json_pipeline()

    get_logger("t").info("receipt.decoded", phone_number="13912341111")

    assert lines(stream)[0]["phone_number"] == "139****1111"
    assert "13912341111" not in stream.getvalue()


def test_phone_masking_can_be_turned_off() -> None:
    """mask_phone_numbers: false logs phone numbers as they are."""
    stream = json_pipeline(mask_phone_numbers=False)

    get_logger("t").info("receipt.decoded", phone_number="13912341111")

    assert lines(stream)[0]["phone_number"] == "13912341111"


# -- the configured pipeline -------------------------------------------------------------------------


def test_json_lines_carry_ts_level_event_and_logger_first() -> None:
    """Each event is one JSON object with an ISO UTC ts, the level, the event name and the logger."""
    stream = json_pipeline()

    get_logger("mns_consumer.consume.poller").info("batch.received", queue="q1", count=3)

    [line] = lines(stream)
    assert list(line)[:4] == ["ts", "level", "logger", "event"]
    assert line["level"] == "info"
    assert line["event"] == "batch.received"
    assert line["logger"] == "mns_consumer.consume.poller"
    assert line["ts"].endswith("Z")
    assert (line["queue"], line["count"]) == ("q1", 3)


def test_module_loggers_from_structlog_get_logger_carry_their_name() -> None:
    """structlog.get_logger(__name__), the house idiom, names the logger as get_logger does."""
    stream = json_pipeline()

    structlog.get_logger("mns_consumer.sinks.file").info("sink.file.opened")

    assert lines(stream)[0]["logger"] == "mns_consumer.sinks.file"


def test_context_bound_with_contextvars_is_merged() -> None:
    """Keys bound with structlog.contextvars (queue=, batch_id=) appear on every line."""
    stream = json_pipeline()
    structlog.contextvars.bind_contextvars(queue="q1", batch_id=7)

    get_logger("t").info("receipts.deleted", count=2)

    assert lines(stream)[0] | {"ts": None} == {
        "ts": None,
        "level": "info",
        "logger": "t",
        "event": "receipts.deleted",
        "queue": "q1",
        "batch_id": 7,
        "count": 2,
    }


def test_events_below_the_configured_level_are_dropped() -> None:
    """level: warning drops info and debug events."""
    stream = json_pipeline(level="warning")
    log = get_logger("t")

    log.info("batch.received")
    log.warning("delete.failed")

    assert [line["event"] for line in lines(stream)] == ["delete.failed"]


def test_secrets_never_reach_the_json_output() -> None:
    """Through the real JSON renderer, no secret from keys, nested structures or strings is written."""
    stream = json_pipeline()

    get_logger("t").warning(
        f"token.refused: security-token: {SECRET}",
        headers={"Authorization": f"MNS id:{SECRET}", "list": [{"access_key_secret": SECRET}]},
        url=f"https://mns.example.com/?Signature={SECRET}",
        dsn=f"mysql+pymysql://mns:{SECRET}@db/receipts",
    )

    assert SECRET not in stream.getvalue()
    [line] = lines(stream)
    assert line["headers"] == {"Authorization": MASK, "list": [{"access_key_secret": MASK}]}
    assert line["url"] == f"https://mns.example.com/?Signature={MASK}"


def test_exceptions_are_json_tracebacks_with_secrets_masked() -> None:
    """log.exception renders a structured traceback whose message is redacted."""
    stream = json_pipeline()

    try:
        raise RuntimeError(f"MNS said no to x-mns-security-token: {SECRET}")
    except RuntimeError:
        get_logger("t").exception("poller.crashed", queue="q1")

    assert SECRET not in stream.getvalue()
    [line] = lines(stream)
    [exception] = line["exception"]
    assert exception["exc_type"] == "RuntimeError"
    assert exception["exc_value"] == f"MNS said no to x-mns-security-token: {MASK}"
    assert exception["frames"][-1]["name"] == "test_exceptions_are_json_tracebacks_with_secrets_masked"
    assert "locals" not in exception["frames"][-1]


def test_third_party_stdlib_warnings_come_out_as_redacted_json() -> None:
    """A library's logging.warning is a JSON line in the same shape, redacted, with its extras."""
    stream = json_pipeline()

    logging.getLogger("botocore.endpoint").warning(
        "retrying %s", f"https://u:{SECRET}@s3.example.com/?X-Amz-Signature={SECRET}", extra={"password": SECRET}
    )

    assert SECRET not in stream.getvalue()
    [line] = lines(stream)
    assert line["level"] == "warning"
    assert line["logger"] == "botocore.endpoint"
    assert line["event"] == "library.log"
    assert line["message"] == f"retrying https://u:{MASK}@s3.example.com/?X-Amz-Signature={MASK}"
    assert line["password"] == MASK
    assert "ts" in line


def test_library_lines_carry_a_fixed_event_name_and_their_text_as_message() -> None:
    """psycopg's "error ignored in terminating" is event library.log, not an event named by its text."""
    stream = json_pipeline()

    logging.getLogger("psycopg.pool").warning("error ignored in terminating %s", "<psycopg.Connection [BAD]>")

    [line] = lines(stream)
    assert line["event"] == "library.log"
    assert line["message"] == "error ignored in terminating <psycopg.Connection [BAD]>"
    assert (line["logger"], line["level"]) == ("psycopg.pool", "warning")


def test_third_party_info_lines_are_dropped_even_from_a_debug_logger() -> None:
    """Below WARNING, library lines (httpx's per-request INFO) are not written."""
    stream = json_pipeline(level="debug")
    chatty = logging.getLogger("httpx")
    chatty.setLevel(logging.DEBUG)
    try:
        chatty.info("HTTP Request: GET https://example.com")
        chatty.error("connection reset")
    finally:
        chatty.setLevel(logging.NOTSET)

    assert [line["message"] for line in lines(stream)] == ["connection reset"]


def test_library_info_records_are_not_even_made_while_our_info_events_are_written() -> None:
    """At level info a library's INFO call stops at its logger's level check, before a record exists."""
    stream = json_pipeline(level="info")

    get_logger("mns_consumer.consume").info("poller.started")

    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert [line["event"] for line in lines(stream)] == ["poller.started"]


def test_third_party_exceptions_are_structured_and_redacted() -> None:
    """logging.exception from a library carries a structured, redacted traceback."""
    stream = json_pipeline()

    try:
        raise ConnectionError(f"proxy refused Proxy-Authorization: Basic {SECRET}")
    except ConnectionError:
        logging.getLogger("urllib3.connectionpool").exception("request failed")

    assert SECRET not in stream.getvalue()
    [exception] = lines(stream)[0]["exception"]
    assert exception["exc_value"] == f"proxy refused Proxy-Authorization: Basic {MASK}"


def test_configuring_twice_replaces_the_previous_configuration() -> None:
    """A second configure_logging leaves one root handler: library lines are not doubled."""
    first = json_pipeline()
    second = json_pipeline()

    logging.getLogger("sqlalchemy.pool").warning("pool overflow")

    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_a_failing_destination_is_reported_once_and_never_raises_into_the_caller(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A closed stream (a full disk alike) costs the lines, not the daemon: one notice on the process's stderr."""
    stream = json_pipeline()
    stream.close()

    get_logger("t").info("first.lost")
    logging.getLogger("httpx").error("second.lost")

    assert capfd.readouterr().err.count("mns-consumer: cannot write logs") == 1


def test_default_destination_is_stderr_as_it_is_at_write_time(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a file or stream, lines go to the current sys.stderr, and nothing to stdout."""
    configure_logging(LoggingConfig(format="json"))

    get_logger("t").info("consumer.started")

    out, err = capsys.readouterr()
    assert out == ""
    assert json.loads(err)["event"] == "consumer.started"


def test_console_format_renders_a_readable_redacted_line() -> None:
    """format: console writes key=value text, not JSON, and still masks secrets and tracebacks."""
    stream = io.StringIO()
    configure_logging(LoggingConfig(format="console"), stream=stream)

    try:
        raise ValueError(f"bad security-token: {SECRET}")
    except ValueError:
        get_logger("mns_consumer.cli").exception("run.failed", webhook_secret=SECRET, queue="q1")

    text = stream.getvalue()
    assert SECRET not in text
    assert "run.failed" in text
    assert "queue=q1" in text
    assert f"webhook_secret={MASK}" in text
    assert f"ValueError: bad security-token: {MASK}" in text
    assert "\x1b[" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


@pytest.mark.parametrize(("stream_type", "is_json"), [(io.StringIO, True), (_Terminal, False)])
def test_auto_format_is_json_unless_the_destination_is_a_terminal(
    stream_type: type[io.StringIO], is_json: bool
) -> None:
    """format: auto renders JSON for pipes, files and journald, and the console renderer on a TTY."""
    stream = stream_type()
    configure_logging(LoggingConfig(), stream=stream)

    get_logger("t").info("consumer.started")

    first = stream.getvalue().splitlines()[0]
    assert first.startswith("{") is is_json


# -- log file ----------------------------------------------------------------------------------------


def test_log_file_is_reopened_after_rotation(tmp_path: Path) -> None:
    """After logrotate renames the file, reopen_log_file makes new lines go to a new file."""
    path = tmp_path / "mns-consumer.log"
    configure_logging(LoggingConfig(file=str(path)))
    log = get_logger("t")
    log.info("before.rotation")

    # Given logrotate moved the file away, when SIGHUP is handled,
    path.rename(tmp_path / "mns-consumer.log.1")
    reopen_log_file()
    log.info("after.rotation")
    logging.getLogger("httpx").warning("library.after.rotation")

    # then the old file keeps the old lines and the new file gets the rest.
    old = [json.loads(line)["event"] for line in (tmp_path / "mns-consumer.log.1").read_text().splitlines()]
    new = [json.loads(line) for line in path.read_text().splitlines()]
    assert old == ["before.rotation"]
    assert [line["event"] for line in new] == ["after.rotation", "library.log"]
    assert new[1]["message"] == "library.after.rotation"


def test_reopen_without_a_log_file_does_nothing() -> None:
    """reopen_log_file is safe to call when logs go to a stream, or before configuration."""
    reopen_log_file()
    stream = json_pipeline()

    reopen_log_file()
    get_logger("t").info("still.logging")

    assert lines(stream)[0]["event"] == "still.logging"


def test_unopenable_log_file_fails_configuration(tmp_path: Path) -> None:
    """A log file in a missing directory is an OSError at configuration, before anything changes."""
    with pytest.raises(OSError, match="No such file"):
        configure_logging(LoggingConfig(file=str(tmp_path / "missing" / "x.log")))


def test_failed_reopen_keeps_logging_to_the_old_file(tmp_path: Path) -> None:
    """If the file cannot be reopened, lines keep going to the old file with a warning saying why."""
    directory = tmp_path / "logs"
    directory.mkdir()
    path = directory / "mns-consumer.log"
    configure_logging(LoggingConfig(file=str(path)))

    directory.rename(tmp_path / "moved")
    reopen_log_file()

    events = [json.loads(line) for line in (tmp_path / "moved" / "mns-consumer.log").read_text().splitlines()]
    assert [event["event"] for event in events] == ["logging.reopen_failed"]
    assert events[0]["path"] == str(path)


# -- the configuration model -------------------------------------------------------------------------


def test_logging_config_rejects_unknown_keys_and_is_frozen() -> None:
    """LoggingConfig is strict like every config section: typos fail, values cannot be changed."""
    with pytest.raises(pydantic.ValidationError):
        LoggingConfig.model_validate({"levle": "debug"})
    with pytest.raises(pydantic.ValidationError):
        LoggingConfig.model_validate({"format": "xml"})
    config = LoggingConfig()
    with pytest.raises(pydantic.ValidationError):
        config.level = "debug"  # type: ignore[misc]
    assert (config.level, config.format, config.mask_phone_numbers, config.file) == ("info", "auto", True, None)


def test_every_logging_config_field_is_described_with_its_default() -> None:
    """Each field documents itself, including its default, for config.example.yaml and check-config."""
    for name, field in LoggingConfig.model_fields.items():
        assert field.description, name
        assert "default" in field.description, name


def test_reset_logging_removes_the_root_handler_and_closes_the_file(tmp_path: Path) -> None:
    """reset_logging undoes configure_logging: no handler of ours stays, the file is closed."""
    handlers_before = logging.getLogger().handlers[:]
    configure_logging(LoggingConfig(file=str(tmp_path / "x.log")))

    reset_logging()

    assert logging.getLogger().handlers == handlers_before
    reopen_log_file()


_FRAGMENTS = (
    "Authorization: MNS id:sig",
    "x-acs-security-token: abc",
    "Signature=xyz",
    "password",
    "api_key=k",
    '"AccessKeySecret": "s"',
    "postgresql://u:pw@host/db",
    "cookie=c",
    "queue=Alicom-Queue-1-SmsReport",
    "ts=2026-11-22T05:00:00Z",
    ":",
    "=",
    "@",
    "://",
    " ",
    "-",
    "_",
    "'",
    '"',
    "token",
    "Sec",
    "ret",
)


@hypothesis.given(hypothesis.strategies.lists(hypothesis.strategies.sampled_from(_FRAGMENTS), max_size=8))
def test_the_fast_path_of_scrub_text_never_skips_what_the_patterns_would_mask(parts: list[str]) -> None:
    """Texts the pre-check lets through unchanged are exactly those the five patterns leave unchanged."""
    text = "".join(parts)
    patterns = redaction
    full = patterns._AUTH_PATTERN.sub(patterns._auth_replacement, text)
    full = patterns._URL_PASSWORD_PATTERN.sub(rf"\1{patterns.MASK}\2", full)
    full = patterns._QUOTED_PAIR_PATTERN.sub(patterns._quoted_pair_replacement, full)
    full = patterns._HEADER_PATTERN.sub(patterns._header_replacement, full)
    full = patterns._ASSIGNMENT_PATTERN.sub(patterns._assignment_replacement, full)
    assert patterns.scrub_text(text) == full
