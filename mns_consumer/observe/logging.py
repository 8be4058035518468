"""Structured logging: one structlog pipeline for the process, with secrets and phone numbers masked.

The CLI calls :func:`configure_logging` once, before anything logs. Modules then log with
``log = structlog.get_logger(__name__)`` (or :func:`get_logger`), using constant dotted event names
and data in keys::

    log.info("batch.received", queue=queue, count=len(batch))

Every line, ours and those of third-party libraries that use the standard :mod:`logging` module
(httpx, botocore, urllib3, SQLAlchemy), goes through the same processors and renderer::

    merge contextvars -> level -> logger name -> ts (ISO 8601, UTC) -> stack -> exception
        -> redact_secrets -> mask_phone_numbers -> JSON or console renderer

so a third-party warning is a JSON line too, and is redacted too. Third-party records below WARNING
are dropped (their INFO lines are per-request noise that can carry signed URLs).

Where lines go:
    * **stderr** by default. systemd-journald and container runtimes capture stderr exactly as they
      capture stdout, and stdout stays free for command output that scripts read (``check-config``
      prints the normalised configuration, ``--version`` the version). The stream is looked up at
      each write, so a replaced ``sys.stderr`` (tests, click's runner) is followed.
    * **a file** when :attr:`LoggingConfig.file` is set, appended to and reopened by
      :func:`reopen_log_file` when the supervisor handles SIGHUP (after logrotate moved it). A file
      it creates is 0600 whatever the umask; an existing one keeps its mode.

Format ``auto`` renders JSON lines unless that destination is a terminal, where the console renderer
is easier to read. Exceptions are JSON structures (``exception``: a list of ``exc_type``,
``exc_value`` and frames, without local variables, which could hold secrets) or plain traceback text
on the console; either way they are redacted after formatting, so secrets inside exception messages
are masked too.

:func:`redact_secrets` is the last line of defence, not the first: code must not log secrets at all.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, Final, Literal, TextIO, cast

import structlog
import structlog.contextvars
import structlog.dev
import structlog.processors
import structlog.stdlib
from pydantic import BaseModel, ConfigDict, Field
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from mns_consumer.files import open_private

__all__ = [
    "MASK",
    "NOT_SECRET_KEYS",
    "PHONE_KEYS",
    "LoggingConfig",
    "configure_logging",
    "get_logger",
    "is_secret_key",
    "mask_phone_number",
    "mask_phone_numbers",
    "redact_secrets",
    "redact_text",
    "reopen_log_file",
    "reset_logging",
    "scrub_text",
]

MASK: Final = "**********"
"""What a secret is replaced with (the same mask ``Config.masked()`` shows)."""

_SECRET_WORDS: Final = (
    "secret",
    "token",
    "password",
    "passwd",
    "signature",
    "authorization",
    "credential",
    "accesskeysecret",
    "securitytoken",
    "apikey",
    "cookie",
    "privatekey",
)

NOT_SECRET_KEYS: Final = frozenset(
    {
        "token_expires_at",
        "token_expire_time",
        "token_seconds_to_expiry",
        "token_ttl_seconds",
        "token_refresh_margin_seconds",
        "signature_method",
        "signature_version",
        "signature_nonce",
        "credential_source",
        "credentials_source",
        "credentials_provider",
    }
)
"""Key names that contain a secret word but hold no secret; compared as :func:`is_secret_key` does.

``access_key_id`` and ``dedupe_key`` need no entry: they contain none of the secret words.
"""

PHONE_KEYS: Final = frozenset(
    {"phone_number", "phone_numbers", "phone", "mobile", "to", "PhoneNumber", "PhoneNumbers", "PhoneNum"}
)
"""Key names whose values :func:`mask_phone_numbers` masks, at any nesting level."""

_AUTH_HEADERS: Final = frozenset({"authorization", "proxyauthorization", "cookie", "setcookie"})
_MAX_DEPTH: Final = 16
_MIN_DIGITS_SHOWN_IN_PART: Final = 11

_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_NOT_SECRET_NORMALIZED: Final = frozenset(_normalize(name) for name in NOT_SECRET_KEYS)
_PHONE_NORMALIZED: Final = frozenset(_normalize(name) for name in PHONE_KEYS)


class LoggingConfig(BaseModel):
    """The ``logging`` section: level, format, destination and phone-number masking."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level of our own events that is written; default info."
    )
    format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="json, console, or auto: JSON lines unless the log destination is a terminal; default auto.",
    )
    mask_phone_numbers: bool = Field(
        True, description="Show phone numbers as 139****1111 (first 3 and last 4 digits); default true."
    )
    file: str | None = Field(
        None,
        min_length=1,
        description="Append to this file instead of stderr; reopened on SIGHUP for logrotate; default stderr.",
    )


@functools.lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether a key's value is masked by :func:`redact_secrets`.

    Names are compared case-insensitively and without separators, so ``security_token``,
    ``SecurityToken`` and ``x-acs-security-token`` are all secret, and so is any name containing
    secret, token, password, passwd, signature, authorization, credential, api_key, cookie or
    private_key, unless it is in :data:`NOT_SECRET_KEYS`.

    Args:
        name: A key of the event dict (or of a nested mapping), or a header or parameter name.

    Returns:
        True when the value must be masked.
    """
    normalized = _normalize(name)
    if normalized in _NOT_SECRET_NORMALIZED:
        return False
    return any(word in normalized for word in _SECRET_WORDS)


# "Authorization: MNS id:sig", "Cookie: a=b; c=d": everything after the scheme to the end of the line.
_AUTH_PATTERN: Final = re.compile(
    r"(?i)\b((?:proxy-)?authorization|(?:set-)?cookie)(['\"]?[ \t]*[:=][ \t]*['\"]?)"
    r"(?:([a-z][a-z0-9-]*)[ \t]+(?=[^\s'\"]))?[^\r\n'\"]+"
)
_URL_PASSWORD_PATTERN: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:?#]*:)[^\s/@?#]+(@)")
# "'security_token': 'abc'" and '"AccessKeySecret": "abc"' (dict reprs, JSON bodies in messages).
_QUOTED_PAIR_PATTERN: Final = re.compile(r"""(["'])([\w.-]+)\1([ \t]*:[ \t]*)(["'])((?:\\.|(?!\4).)*)\4""")
# Only hyphenated names count as headers, so prose such as "secret: required key is missing" stays.
_HEADER_PATTERN: Final = re.compile(r"(?i)\b([a-z0-9]+(?:-[a-z0-9]+)+)([ \t]*:[ \t]*)([^\s'\",;]+)")
_ASSIGNMENT_PATTERN: Final = re.compile(r"""(?<![\w.-])([\w.-]+)=(['"]?)([^\s'"&,;<>]+)""")


def _auth_replacement(match: re.Match[str]) -> str:
    scheme = match.group(3)
    return f"{match.group(1)}{match.group(2)}{scheme + ' ' if scheme else ''}{MASK}"


def _quoted_pair_replacement(match: re.Match[str]) -> str:
    if not match.group(5) or match.group(5).endswith(MASK) or not is_secret_key(match.group(2)):
        return match.group(0)
    quote, name, separator, value_quote = match.group(1, 2, 3, 4)
    return f"{quote}{name}{quote}{separator}{value_quote}{MASK}{value_quote}"


def _header_replacement(match: re.Match[str]) -> str:
    name = match.group(1)
    if _normalize(name) in _AUTH_HEADERS or not is_secret_key(name):
        return match.group(0)
    return f"{name}{match.group(2)}{MASK}"


def _assignment_replacement(match: re.Match[str]) -> str:
    if not is_secret_key(match.group(1)):
        return match.group(0)
    return f"{match.group(1)}={match.group(2)}{MASK}"


def scrub_text(text: str) -> str:
    """Mask secret-looking substrings inside free text (messages, exception text, URLs).

    Masked: the value of ``Authorization:``/``Cookie:`` headers (an auth scheme such as ``MNS`` is
    kept), headers with hyphenated secret names (``security-token``, ``x-acs-security-token``,
    ``X-Signature``), ``name=value`` pairs with secret names (``Signature=`` query parameters,
    ``SecurityToken=``, ``password=``), quoted ``"name": "value"`` pairs, and the password of URLs
    with ``user:password@``.

    Args:
        text: Any string.

    Returns:
        The text with each secret value replaced by :data:`MASK`.
    """
    if (":" not in text and "=" not in text) or not _may_hold_secret(text):
        return text
    text = _AUTH_PATTERN.sub(_auth_replacement, text)
    text = _URL_PASSWORD_PATTERN.sub(rf"\1{MASK}\2", text)
    text = _QUOTED_PAIR_PATTERN.sub(_quoted_pair_replacement, text)
    text = _HEADER_PATTERN.sub(_header_replacement, text)
    return _ASSIGNMENT_PATTERN.sub(_assignment_replacement, text)


def _may_hold_secret(text: str) -> bool:
    """Whether any pattern of :func:`scrub_text` could mask something in ``text``.

    Most log values (times, queue names, codes) cannot, and skip the five regular expressions. Every
    pattern but the URL password masks only after a name that :func:`is_secret_key` calls secret, or
    ``Authorization``/``Cookie``; such a name's normalized form is part of the normalized text.
    """
    if "@" in text and "://" in text:
        return True
    normalized = _normalize(text)
    return any(word in normalized for word in _SECRET_WORDS)


# A phone number inside free text: a run of 7 or more digits (an optional + before it), or the spaced
# or hyphenated forms 139 1234 5678 and +86 139-1234-5678. Groups of two digits (dates, times) never match.
_PHONE_IN_TEXT: Final = re.compile(r"(?<![\w+])(?:\+?\d{7,}|(?:\+\d{1,3}[ -])?\d{3,4}[ -]\d{3,4}[ -]\d{4})(?!\w)")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask secrets and phone numbers in free text that leaves the process: error texts, dead-letter reasons.

    The one redaction for text we did not write ourselves, such as the error body a webhook receiver
    answers with. It does what the log pipeline does to every string (:func:`scrub_text`), and two
    things only free text needs, since its phone numbers and secrets come under no key:

    * each of ``secrets`` (values the caller knows, such as a sink's HMAC key or header values) is
      replaced by :data:`MASK` wherever it appears, in any letter case, since receivers echo headers
      lower- or upper-cased;
    * phone numbers (runs of 7 or more digits, or ``139 1234 5678``-style groups) are masked as
      :func:`mask_phone_number` masks them, ``139****5678``.

    Args:
        text: Any string.
        secrets: Known secret values to mask; empty ones are ignored.

    Returns:
        The text with each secret replaced by :data:`MASK` and each phone number masked.
    """
    for secret in secrets:
        if secret:
            text = re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    text = scrub_text(text)
    return _PHONE_IN_TEXT.sub(lambda match: mask_phone_number(match.group()), text)


def _walk(value: Any, on_key: Callable[[str, Any], Any | None], on_text: Callable[[str], str], depth: int) -> Any:
    """Rebuild ``value`` with ``on_key`` applied to mapping items and ``on_text`` to strings.

    Containers are copied, never changed in place: they may belong to the caller.
    """
    if isinstance(value, str):
        return on_text(value)
    if depth > _MAX_DEPTH and isinstance(value, Mapping | list | tuple | set | frozenset):
        return "<nested too deep to redact>"
    if isinstance(value, Mapping):
        rebuilt: dict[Any, Any] = {}
        for key, item in value.items():
            replaced = on_key(str(key), item)
            rebuilt[key] = _walk(item, on_key, on_text, depth + 1) if replaced is None else replaced
        return rebuilt
    if isinstance(value, tuple):
        return tuple(_walk(item, on_key, on_text, depth + 1) for item in value)
    if isinstance(value, list | set | frozenset):
        return [_walk(item, on_key, on_text, depth + 1) for item in value]
    return value


def _secret_value(key: str, value: Any) -> Any | None:
    # None, booleans and "" cannot carry a secret, and masking them would claim one is set.
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value) or not is_secret_key(key):
        return None
    return MASK


def _identity(text: str) -> str:
    return text


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: mask secret values anywhere in the event dict.

    The value of any key for which :func:`is_secret_key` is true is replaced by :data:`MASK`, at any
    nesting level of dicts, lists and tuples (None, booleans and empty strings are kept). Every other
    string goes through :func:`scrub_text`. Nested containers are copied, never changed in place.

    Args:
        logger: The wrapped logger (unused).
        method_name: The log method's name (unused).
        event_dict: The event being logged.

    Returns:
        The redacted event dict.
    """
    redacted: EventDict = _walk(event_dict, _secret_value, scrub_text, 0)
    return redacted


def mask_phone_number(value: str) -> str:
    """Mask all digits of a phone number but the first 3 and the last 4: ``139****1111``.

    Numbers with fewer than 11 digits, where that would hide fewer than 4, are masked entirely.
    Comma-separated lists (``PhoneNumbers`` of SendSms) are masked number by number, and a value
    without digits is not a phone number and is returned unchanged.

    Args:
        value: A phone number as text, e.g. ``13912341111`` or ``+86 139 1234 1111``.

    Returns:
        The masked text, with non-digits such as ``+`` and spaces kept in place.
    """
    if "," in value:
        return ",".join(mask_phone_number(part) for part in value.split(","))
    digits = sum(character.isdigit() for character in value)
    if digits == 0:
        return value
    partial = digits >= _MIN_DIGITS_SHOWN_IN_PART
    masked: list[str] = []
    index = 0
    for character in value:
        if character.isdigit():
            shown = partial and (index < 3 or index >= digits - 4)
            masked.append(character if shown else "*")
            index += 1
        else:
            masked.append(character if partial else "*")
    return "".join(masked)


def _masked_phone(value: Any) -> Any | None:
    if isinstance(value, str):
        return mask_phone_number(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return mask_phone_number(str(value))
    return None


def _phone_value(key: str, value: Any) -> Any | None:
    if _normalize(key) not in _PHONE_NORMALIZED:
        return None
    if isinstance(value, list | tuple | set | frozenset):
        items = [(item, _masked_phone(item)) for item in value]
        return [item if masked is None else masked for item, masked in items]
    return _masked_phone(value)


def mask_phone_numbers(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: mask the values of phone-number keys (:data:`PHONE_KEYS`) at any nesting level.

    Each value, or each item of a list value, goes through :func:`mask_phone_number`. Phone numbers
    inside free text (an SMS reply's content) are not searched for.

    Args:
        logger: The wrapped logger (unused).
        method_name: The log method's name (unused).
        event_dict: The event being logged.

    Returns:
        The masked event dict.
    """
    masked: EventDict = _walk(event_dict, _phone_value, _identity, 0)
    return masked


_LEADING_KEYS: Final = ("ts", "level", "logger", "event")


def _leading_keys_first(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # JSON objects keep insertion order: put what a reader scans for at the start of every line.
    ordered: EventDict = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    name = record.name if isinstance(record, logging.LogRecord) else getattr(logger, "name", None)
    if name:
        event_dict["logger"] = name
    return event_dict


def _open_log_file(path: str) -> IO[str]:
    """Open the log file for appending; a new one is created 0600 whatever the umask.

    Log lines carry queue names, sink URLs and (unless masked) phone numbers, so the file is private
    like every file the daemon creates (:mod:`mns_consumer.files`). Its folder must exist: the
    configuration check reports a missing one. An existing file keeps its mode.

    Raises:
        OSError: If it cannot be opened or created.
    """
    fd = open_private(path, os.O_WRONLY | os.O_APPEND)
    try:
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


class _LogSink:
    """The one destination of every line: a file, a given stream, or whatever ``sys.stderr`` is now.

    One lock serialises our lines and third-party lines, and file reopening.
    """

    def __init__(self, stream: TextIO | None, path: str | None) -> None:
        self.path = path
        self._stream = stream
        self._file: IO[str] | None = _open_log_file(path) if path else None
        self._lock = threading.Lock()
        self._failed = False

    def _target(self) -> IO[str]:
        if self._file is not None:
            return self._file
        return self._stream if self._stream is not None else sys.stderr

    def isatty(self) -> bool:
        try:
            return self._target().isatty()
        except (OSError, ValueError):
            return False

    def write(self, text: str) -> None:
        with self._lock:
            try:
                target = self._target()
                target.write(text)
                target.flush()
            except (OSError, ValueError) as exc:
                # A full disk or a closed stream must not take the daemon down with it.
                self._report_failure(exc)

    def flush(self) -> None:
        """Nothing to do: :meth:`write` flushes each line."""

    def _report_failure(self, exc: Exception) -> None:
        if self._failed:
            return
        self._failed = True
        fallback = sys.__stderr__
        if fallback is not None and fallback is not self._target():
            try:
                fallback.write(f"mns-consumer: cannot write logs ({exc}); dropping them\n")
            except (OSError, ValueError):
                return

    def reopen(self) -> None:
        if self.path is None:
            return
        replacement = _open_log_file(self.path)
        with self._lock:
            previous, self._file = self._file, replacement
            self._failed = False
        if previous is not None:
            previous.close()

    def close(self) -> None:
        with self._lock:
            previous, self._file = self._file, None
            self.path = None
        if previous is not None:
            previous.close()


class _SinkLogger:
    """What structlog's bound loggers call with each rendered line; carries the logger's name."""

    def __init__(self, sink: _LogSink, name: str | None) -> None:
        self.name = name
        self._sink = sink

    def msg(self, message: str) -> None:
        self._sink.write(message + "\n")

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = err = msg


class _SinkLoggerFactory:
    def __init__(self, sink: _LogSink) -> None:
        self._sink = sink

    def __call__(self, *args: Any) -> _SinkLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        return _SinkLogger(self._sink, name)


class _Installed:
    def __init__(self, sink: _LogSink, handler: logging.Handler) -> None:
        self.sink = sink
        self.handler = handler


_installed: _Installed | None = None
_install_lock = threading.Lock()


def _processors(config: LoggingConfig, *, json_lines: bool) -> list[Processor]:
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.StackInfoRenderer(),
        # Formatted before redaction, so secrets in exception messages are masked as well.
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        if json_lines
        else structlog.processors.format_exc_info,
        redact_secrets,
    ]
    if config.mask_phone_numbers:
        processors.append(mask_phone_numbers)
    return processors


def configure_logging(config: LoggingConfig, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library's root logger for the whole process.

    Call it once at start-up, before anything logs: structlog caches each logger on first use.
    Calling it again replaces the previous configuration (and closes its log file).

    Args:
        config: The ``logging`` section.
        stream: Where to write when ``config.file`` is unset; by default ``sys.stderr`` as it is at
            each write.

    Raises:
        OSError: If ``config.file`` cannot be opened for appending.
    """
    global _installed
    sink = _LogSink(stream, config.file)
    json_lines = config.format == "json" or (config.format == "auto" and not sink.isatty())
    renderer: Processor
    shared = _processors(config, json_lines=json_lines)
    if json_lines:
        shared.append(_leading_keys_first)
        renderer = structlog.processors.JSONRenderer(serializer=functools.partial(json.dumps, ensure_ascii=False))
    else:
        colors = sink.isatty() and not os.environ.get("NO_COLOR")
        renderer = structlog.dev.ConsoleRenderer(colors=colors, timestamp_key="ts")
    level = _LEVELS[config.level]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_SinkLoggerFactory(sink),
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(sink)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    # On the handler as well: a library logger set to DEBUG (SQLAlchemy's echo) still propagates here.
    handler.setLevel(max(logging.WARNING, level))
    root = logging.getLogger()
    with _install_lock:
        previous, _installed = _installed, _Installed(sink, handler)
        if previous is not None:
            root.removeHandler(previous.handler)
        root.addHandler(handler)
        root.setLevel(max(logging.WARNING, level))
    if previous is not None:
        previous.sink.close()


def reopen_log_file() -> None:
    """Reopen the log file, after logrotate moved it; the supervisor calls it on SIGHUP.

    Does nothing when logs go to a stream. If the file cannot be reopened, logging continues to the
    old file and a ``logging.reopen_failed`` warning says why: a daemon must not stop over this.
    """
    with _install_lock:
        installed = _installed
    if installed is None or installed.sink.path is None:
        return
    try:
        installed.sink.reopen()
    except OSError as exc:
        get_logger(__name__).warning("logging.reopen_failed", path=installed.sink.path, error=str(exc))


def reset_logging() -> None:
    """Undo :func:`configure_logging`: structlog's defaults, our root handler removed, file closed.

    For tests and for embedding applications that own logging themselves.
    """
    global _installed
    with _install_lock:
        previous, _installed = _installed, None
        if previous is not None:
            logging.getLogger().removeHandler(previous.handler)
    structlog.reset_defaults()
    if previous is not None:
        previous.sink.close()


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger whose events carry ``logger=name``.

    Args:
        name: Usually the calling module's ``__name__``.

    Returns:
        A bound logger filtering by the configured level; bind context with ``.bind(queue=...)``.
    """
    return cast(FilteringBoundLogger, structlog.get_logger(name))
