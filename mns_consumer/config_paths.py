"""Refusing file paths that can never be opened, before the daemon starts and crashes on them.

A missing folder is no error (the daemon creates its folders; another machine may have them), nor are
permissions (``check-config`` often runs as another user). What no run can fix is refused: a path
below a file, below ``/proc`` or ``/sys``, or naming a folder; and a log file whose folder is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import PurePath
from typing import TYPE_CHECKING, Final

from mns_consumer.errors import ConfigError

if TYPE_CHECKING:
    from mns_consumer.config import Config
    from mns_consumer.sinks.database import DatabaseSinkConfig

__all__ = ["check_paths", "never_openable"]

_VIRTUAL_ROOTS: Final = ("/proc", "/sys")


def check_paths(config: Config, source: str) -> None:
    """Refuse the first path of the configuration that can never be opened.

    Raises:
        ConfigError: Naming the key, why the path cannot work, and what to write instead.
    """
    for key_path, path, is_folder in _paths(config):
        problem = never_openable(path, is_folder=is_folder)
        if problem is not None:
            raise ConfigError(source, key_path, f"{path!r} {problem}", "choose a file in a folder the daemon can write")
    log_file = config.logging.file
    if log_file is not None:
        folder = os.path.dirname(os.path.abspath(log_file))
        if not os.path.isdir(folder):
            raise ConfigError(
                source,
                "logging.file",
                f"the folder {folder!r} does not exist, and the log file is not created in a new folder",
                "create the folder (systemd: LogsDirectory=) or choose a file in an existing one",
            )


def _paths(config: Config) -> Iterator[tuple[str, str, bool]]:
    """(key path, path, whether it is a folder that files go below) of each file the daemon opens."""
    if config.logging.file is not None:
        yield "logging.file", config.logging.file, False
    if config.dead_letter is not None:
        yield "dead_letter.path", config.dead_letter.path, False
    if config.push is not None:
        yield "push.spool_path", config.push.spool_path, False
    for name, sink in config.sinks.items():
        # Compared by type name first, so SQLAlchemy is imported only when a database sink is configured.
        if sink.type == "file":
            from mns_consumer.sinks.file import FileSinkConfig  # noqa: PLC0415  (see the comment above)

            if isinstance(sink, FileSinkConfig):
                template = sink.template()
                varies = template.has_date or template.has_message_type
                yield f"sinks.{name}.path", (template.fixed_directory() or ".") if varies else sink.path, varies
        elif sink.type == "database":
            from mns_consumer.sinks.database import DatabaseSinkConfig  # noqa: PLC0415  (see the comment above)

            database = _sqlite_file(sink) if isinstance(sink, DatabaseSinkConfig) else None
            if database is not None:
                yield f"sinks.{name}.url", database, False


def _sqlite_file(sink: DatabaseSinkConfig) -> str | None:
    from sqlalchemy.engine import make_url  # noqa: PLC0415  (only with a database sink)

    url = make_url(sink.url.get_secret_value())
    if url.get_backend_name() != "sqlite" or not url.database or url.database.startswith("file:"):
        return None
    return url.database


def never_openable(path: str, *, is_folder: bool) -> str | None:
    """Why ``path`` can never be opened as a file (or used as a folder), or None."""
    absolute = PurePath(os.path.abspath(path))
    # Literal parts, not resolved ones: /dev/stderr resolves into /proc and is a fine log file.
    if any(absolute == PurePath(root) or absolute.is_relative_to(root) for root in _VIRTUAL_ROOTS):
        return "is under /proc or /sys, kernel file systems where no file can be created"
    for ancestor in reversed(absolute.parents):
        if not os.path.lexists(ancestor):
            return None  # The rest is created when first needed.
        if not os.path.isdir(ancestor):
            return f"is under {str(ancestor)!r}, which is a file, not a folder"
    if os.path.lexists(absolute) and os.path.isdir(absolute) != is_folder:
        return "is a folder, not a file" if not is_folder else "is a file, not a folder"
    return None
