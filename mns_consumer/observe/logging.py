"""Structured logging: one structlog pipeline for the process, with secrets and phone numbers masked.

Our events and the records of libraries (httpx, botocore, psycopg) meet in one root handler that adds
level, logger and UTC ``ts``, redacts, and renders JSON lines (or the console format on a terminal).
Library records below WARNING are dropped: per-request noise that can carry signed URLs. Lines go to
stderr (stdout stays for command output) or to ``logging.file``, reopened on SIGHUP for logrotate.
Redaction is the last line of defence, not the first: code must not log secrets at all.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
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
from mns_consumer.observe.redaction import mask_phone_numbers, redact_secrets

__all__ = ["LoggingConfig", "configure_logging", "get_logger", "reopen_log_file", "reset_logging"]


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


def _leading_keys_first(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # JSON objects keep insertion order: put what a reader scans for at the start of every line.
    ordered: EventDict = {key: event_dict.pop(key) for key in ("ts", "level", "logger", "event") if key in event_dict}
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
    """Open the log file for appending, created 0600 like every file the daemon creates.

    Raises:
        OSError: If it cannot be opened or created (its folder is never created).
    """
    # open_private adds O_CREAT itself, with the private mode; a plain O_CREAT would apply the umask.
    return open(path, "a", encoding="utf-8", opener=lambda name, flags: open_private(name, flags & ~os.O_CREAT))


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
            with contextlib.suppress(OSError, ValueError):  # stderr may be what failed
                sys.__stderr__.write(f"mns-consumer: cannot write logs ({sys.exc_info()[1]}); dropping them\n")

    def detach(self) -> None:
        logging.getLogger().removeHandler(self)
        if self.path is not None:
            self.stream.close()
            self.path = None


_installed: _Handler | None = None


def configure_logging(config: LoggingConfig, *, stream: TextIO | None = None) -> None:
    """Send structlog events and the standard library's records through one root handler.

    Call it at start-up, before anything logs (structlog caches each logger on first use); calling it
    again replaces the previous configuration and closes its log file. ``stream`` is where to write
    without ``config.file``; default ``sys.stderr`` as it is at each write.

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
    stdlib_loggers = structlog.stdlib.LoggerFactory(ignore_frame_names=[__name__])

    def our_logger(*args: Any) -> logging.Logger:
        # structlog has filtered our events by level already: their stdlib logger must pass them all on.
        logger = stdlib_loggers(*args)
        logger.setLevel(logging.DEBUG)
        return logger

    structlog.configure(
        processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=our_logger,
        cache_logger_on_first_use=True,
    )
    previous, _installed = _installed, handler
    if previous is not None:
        previous.detach()
    root = logging.getLogger()
    root.addHandler(handler)
    # Library records below WARNING are then never even made: httpx logs one INFO line per request.
    root.setLevel(max(logging.WARNING, level))


def reopen_log_file() -> None:
    """Reopen the log file after logrotate moved it (on SIGHUP); nothing when logs go to a stream.

    If it cannot be reopened, lines keep going to the old one and ``logging.reopen_failed`` says why.
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
    """Undo :func:`configure_logging`: for tests and for applications that own logging themselves."""
    global _installed
    previous, _installed = _installed, None
    if previous is not None:
        previous.detach()
    structlog.reset_defaults()


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger whose events carry ``logger=name`` (usually the module's ``__name__``)."""
    return cast(FilteringBoundLogger, structlog.get_logger(name))
