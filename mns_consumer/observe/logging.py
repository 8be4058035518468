"""Structured logging: one structlog pipeline for the process, with secrets and phone numbers masked.

The CLI calls :func:`configure_logging` once; modules log with ``structlog.get_logger(__name__)``,
constant dotted event names and data in keys. Through structlog's stdlib integration our events and
the records of libraries (httpx, botocore, psycopg, SQLAlchemy) meet in one root handler whose
``ProcessorFormatter`` adds level, logger and ISO UTC ``ts``, renders exceptions, redacts and renders
JSON lines (or the console format on a terminal). A library's record becomes event ``library.log``
with its text in ``message``; library records below WARNING are dropped (per-request noise that can
carry signed URLs).

Lines go to stderr by default (stdout stays for command output), or appended to ``logging.file``,
created 0600 and reopened on SIGHUP by :func:`reopen_log_file` after logrotate moved it.
:func:`redact_secrets` is the last line of defence, not the first: code must not log secrets at all.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
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
    *("secret", "token", "password", "passwd", "signature", "authorization", "credential"),
    *("accesskeysecret", "securitytoken", "apikey", "cookie", "privatekey"),
)

NOT_SECRET_KEYS: Final = frozenset(
    {
        *("token_expires_at", "token_expire_time", "token_seconds_to_expiry", "token_ttl_seconds"),
        *("token_refresh_margin_seconds", "signature_method", "signature_version", "signature_nonce"),
        *("credential_source", "credentials_source", "credentials_provider"),
    }
)
"""Key names that contain a secret word but hold no secret; compared as :func:`is_secret_key` does."""

PHONE_KEYS: Final = frozenset(
    {"phone_number", "phone_numbers", "phone", "mobile", "to", "PhoneNumber", "PhoneNumbers", "PhoneNum"}
)
"""Key names whose values :func:`mask_phone_numbers` masks, at any nesting level."""

_AUTH_HEADERS: Final = frozenset({"authorization", "proxyauthorization", "cookie", "setcookie"})
_MAX_DEPTH: Final = 16
_MIN_DIGITS_SHOWN_IN_PART: Final = 11


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
    """Whether a key (of an event, a mapping, a header or a parameter) names a secret value.

    Compared without case or separators (``security_token``, ``x-acs-security-token``): a name holding
    a word of ``_SECRET_WORDS`` is secret unless it is in :data:`NOT_SECRET_KEYS`.
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
    """Mask secret-looking values inside free text (messages, exception text, URLs) with :data:`MASK`.

    Masked: ``Authorization:``/``Cookie:`` values (an auth scheme such as ``MNS`` is kept), hyphenated
    secret headers (``x-acs-security-token``), ``name=value`` and quoted ``"name": "value"`` pairs with
    secret names (``Signature=``), and URL passwords (``user:password@``).
    """
    if (":" not in text and "=" not in text) or not _may_hold_secret(text):
        return text
    text = _AUTH_PATTERN.sub(_auth_replacement, text)
    text = _URL_PASSWORD_PATTERN.sub(rf"\1{MASK}\2", text)
    text = _QUOTED_PAIR_PATTERN.sub(_quoted_pair_replacement, text)
    text = _HEADER_PATTERN.sub(_header_replacement, text)
    return _ASSIGNMENT_PATTERN.sub(_assignment_replacement, text)


def _may_hold_secret(text: str) -> bool:
    """Whether any pattern of :func:`scrub_text` could match: most values (times, names) skip all five.

    Every pattern but the URL password needs a secret name, whose normalized form is in the normalized text.
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

    Text we did not write (a webhook receiver's error body) holds secrets and numbers under no key, so
    beyond :func:`scrub_text` each of ``secrets`` (known values, e.g. a sink's HMAC key) is masked in any
    letter case (receivers echo headers re-cased), and phone numbers are masked as ``139****5678``.
    """
    for secret in secrets:
        if secret:
            text = re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    text = scrub_text(text)
    return _PHONE_IN_TEXT.sub(lambda match: mask_phone_number(match.group()), text)


def _walk(value: Any, on_key: Callable[[str, Any], Any | None], on_text: Callable[[str], str], depth: int) -> Any:
    """Rebuild ``value`` with ``on_key`` applied to mapping items and ``on_text`` to strings (copies:
    the containers may belong to the caller)."""
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
    """Processor: mask the values of secret keys (:func:`is_secret_key`) at any nesting level, and
    :func:`scrub_text` every other string. None, booleans and "" are kept: they hold no secret."""
    redacted: EventDict = _walk(event_dict, _secret_value, scrub_text, 0)
    return redacted


def mask_phone_number(value: str) -> str:
    """Mask all digits of a phone number but the first 3 and the last 4: ``139****1111``.

    Numbers under 11 digits (which would hide fewer than 4) are masked entirely; comma-separated lists
    (SendSms ``PhoneNumbers``) number by number; a value without digits is returned unchanged.
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
    """Processor: :func:`mask_phone_number` the values of :data:`PHONE_KEYS` at any nesting level.

    Numbers inside free text (an SMS reply's content) are not searched for.
    """
    masked: EventDict = _walk(event_dict, _phone_value, _identity, 0)
    return masked


_LEADING_KEYS: Final = ("ts", "level", "logger", "event")


def _leading_keys_first(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # JSON objects keep insertion order: put what a reader scans for at the start of every line.
    ordered: EventDict = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


LIBRARY_EVENT: Final = "library.log"
"""The event name of every line a library logs through :mod:`logging`; its text is in ``message``."""


def _library_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # A library's text ("error ignored in terminating <...>") is no constant event name to search for.
    event_dict["message"] = event_dict.get("event")
    event_dict["event"] = LIBRARY_EVENT
    return event_dict


def _ours_or_warning(record: logging.LogRecord) -> bool:
    # structlog filters our events by level; library INFO lines are per-request noise that can carry
    # signed URLs, even from a library logger set to DEBUG (SQLAlchemy's echo).
    return record.levelno >= logging.WARNING or hasattr(record, "_logger")


class _CurrentStderr:
    """``sys.stderr`` as it is at each write: tests and click's runner replace it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _open_log_file(path: str) -> IO[str]:
    """Open the log file for appending; a new one is created 0600 whatever the umask, like every file
    the daemon creates (:mod:`mns_consumer.files`), since lines name queues and sinks.

    Raises:
        OSError: If it cannot be opened or created (its folder is never created).
    """
    fd = open_private(path, os.O_WRONLY | os.O_APPEND)
    try:
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler every line goes through, ours and the libraries'; ``path`` when it is a file."""

    def __init__(self, stream: Any, path: str | None) -> None:
        super().__init__(_open_log_file(path) if path else stream or _CurrentStderr())
        self.path = path
        self.failed = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802  (logging's name)
        # A full disk or a closed stream must not take the daemon down, nor print a traceback per line.
        if not self.failed and sys.__stderr__ is not None:
            self.failed = True
            sys.__stderr__.write(f"mns-consumer: cannot write logs ({sys.exc_info()[1]}); dropping them\n")

    def detach(self) -> None:
        logging.getLogger().removeHandler(self)
        if self.path is not None:
            self.stream.close()
            self.path = None


_installed: _Handler | None = None


def configure_logging(config: LoggingConfig, *, stream: TextIO | None = None) -> None:
    """Send structlog events and the standard library's records through one root handler.

    Call it once at start-up, before anything logs (structlog caches each logger on first use);
    calling it again replaces the previous configuration and closes its log file.

    Args:
        config: The ``logging`` section.
        stream: Where to write when ``config.file`` is unset; default ``sys.stderr`` at each write.

    Raises:
        OSError: If ``config.file`` cannot be opened for appending.
    """
    global _installed
    handler = _Handler(stream, config.file)
    is_tty = getattr(handler.stream, "isatty", lambda: False)()
    json_lines = config.format == "json" or (config.format == "auto" and not is_tty)
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.StackInfoRenderer(),
        # Formatted before redaction, so secrets in exception messages are masked as well.
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        if json_lines
        else structlog.processors.format_exc_info,
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        redact_secrets,
    ]
    if config.mask_phone_numbers:
        processors.append(mask_phone_numbers)
    if json_lines:
        processors += [
            _leading_keys_first,
            structlog.processors.JSONRenderer(serializer=functools.partial(json.dumps, ensure_ascii=False)),
        ]
    else:
        colors = is_tty and not os.environ.get("NO_COLOR")
        processors.append(structlog.dev.ConsoleRenderer(colors=colors, timestamp_key="ts"))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), _library_event], processors=processors
        )
    )
    handler.addFilter(_ours_or_warning)
    level = logging.getLevelNamesMapping()[config.level.upper()]
    structlog.configure(
        processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    previous, _installed = _installed, handler
    if previous is not None:
        previous.detach()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


def reopen_log_file() -> None:
    """Reopen the log file after logrotate moved it; the supervisor calls it on SIGHUP.

    Does nothing when logs go to a stream. If the file cannot be reopened, lines keep going to the old
    one and a ``logging.reopen_failed`` warning says why: a daemon must not stop over this.
    """
    handler = _installed
    if handler is None or handler.path is None:
        return
    try:
        replacement = _open_log_file(handler.path)
    except OSError as exc:
        get_logger(__name__).warning("logging.reopen_failed", path=handler.path, error=str(exc))
        return
    previous = handler.setStream(replacement)  # under the handler's lock: no line is cut in two
    if previous is not None:
        previous.close()


def reset_logging() -> None:
    """Undo :func:`configure_logging` (structlog's defaults, our root handler removed, file closed).

    For tests and for embedding applications that own logging themselves.
    """
    global _installed
    previous, _installed = _installed, None
    if previous is not None:
        previous.detach()
    structlog.reset_defaults()


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger whose events carry ``logger=name`` (usually the module's ``__name__``)."""
    return cast(FilteringBoundLogger, structlog.get_logger(name))
