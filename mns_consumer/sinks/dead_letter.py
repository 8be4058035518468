"""The file dead-letter sink: undecodable and rejected messages as JSON Lines, fsynced before they count.

A letter is one compact JSON line (fields as :func:`dead_letter_to_json_dict` writes them) holding the
body exactly as received (``raw``, or ``raw_base64`` when not UTF-8), so that it can be replayed. Its
``reason`` is redacted (:func:`~mns_consumer.observe.redaction.redact_text`): a sink's rejection may quote
what its server answered, and reasons are printed by replay. A line without its newline is left from
a write that never returned; under an exclusive ``flock`` each append first truncates it, so several
processes may share the file and it stays valid JSON Lines (the message is still in MNS). No
rotation: logrotate works without a signal (the inode is checked before each write), SIGHUP too.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.files import check_can_create_in, describe_os_error, needs_operator
from mns_consumer.observe.redaction import redact_text
from mns_consumer.sinks.base import DeadLetter
from mns_consumer.sinks.file import FileMode, encode_json_line, open_for_append, still_at_path, write_all

_READ_BLOCK_BYTES = 1 << 16
_PLAIN_FIELDS = ("message_type", "source", "queue", "message_id", "dequeue_count", "sink", "dedupe_key")


class DeadLetterSinkConfig(BaseModel):
    """Configuration of the dead-letter sink (the ``dead_letter`` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["file"] = Field(default="file", description="Dead-letter sink type; always `file`. Default: file.")
    path: str = Field(
        min_length=1,
        description="File to append dead letters to, as JSON Lines; no placeholders. Required; no default.",
    )
    fsync: bool = Field(
        default=True,
        description=(
            "fsync the file (and the folder, when the file is created) before a write returns. Default: true."
        ),
    )
    file_mode: FileMode = Field(
        default=0o600,
        description="Permission bits of a created file (octal, owner read and write required). Default: 0o600.",
    )

    @field_validator("path")
    @classmethod
    def _path_has_no_placeholders(cls, path: str) -> str:
        if "{" in path or "}" in path:
            raise ValueError(f"dead-letter path {path!r} takes no placeholders; rotate it with logrotate")
        if "\0" in path:
            raise ValueError(f"dead-letter path {path!r} contains a NUL character")
        if path.endswith(os.sep):
            raise ValueError(f"dead-letter path {path!r} must name a file, not a folder")
        return path

    def build(self, name: str = "dead_letter") -> FileDeadLetterSink:
        """Create the sink (not opened yet)."""
        return FileDeadLetterSink(name, self)


class FileDeadLetterSink:
    """Appends dead letters to one JSON Lines file; thread-safe (every method holds one lock)."""

    def __init__(self, name: str, config: DeadLetterSinkConfig) -> None:
        self.name = name
        self.config = config
        self._fd: int | None = None
        self._identity = (0, 0)
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open (creating if needed) the file and its folders.

        Raises:
            ConfigError: If it can never be created as things stand (see :func:`needs_operator`).
            SinkUnavailable: If it cannot be opened for a reason that may pass.
        """
        with self._lock:
            try:
                self._file()
            except OSError as exc:
                self._close()
                if needs_operator(exc):
                    raise ConfigError(
                        f"sink {self.name!r}",
                        # Built from the configuration's dead_letter section, or by replay for --remaining.
                        "dead_letter.path" if self.name == "dead_letter" else "path",
                        f"cannot create or open {describe_os_error(exc, self.config.path)}",
                        "make its folder one the daemon may write to, or choose another path",
                    ) from exc
                raise self._unavailable(exc) from exc

    def probe(self) -> str:
        """Check, changing nothing, that the file can be appended to or created; SinkUnavailable if not."""
        path = self.config.path
        try:
            if os.path.exists(path):
                # Opened for appending and closed at once: proves write access without writing.
                os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC))
                return f"{path} exists and is writable"
            return check_can_create_in(os.path.dirname(path))
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Append the dead letters and fsync; SinkUnavailable if not all were stored (none then counts)."""
        if not letters:
            return
        data = b"".join(encode_json_line(dead_letter_to_json_dict(letter)) for letter in letters)
        with self._lock:
            try:
                fd = self._file()
                # Another process appending to the same file holds this lock, so its unfinished line
                # is never mistaken for a torn one.
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    _drop_torn_tail(fd)
                    write_all(fd, data)
                    if self.config.fsync:
                        os.fsync(fd)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError as exc:
                self._close()
                raise self._unavailable(exc) from exc

    def close(self) -> None:
        """Close the file (every record was fsynced when written); the next write opens it again at its path."""
        with self._lock:
            self._close()

    reopen = close
    """SIGHUP after logrotate: close the file, so the next write opens the new one."""

    def _file(self) -> int:
        if self._fd is not None and still_at_path(self.config.path, self._identity):
            return self._fd
        self._close()
        self._fd = open_for_append(self.config.path, file_mode=self.config.file_mode, fsync=self.config.fsync)
        status = os.fstat(self._fd)
        self._identity = (status.st_dev, status.st_ino)
        return self._fd

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Every record was fsynced when written, so a failing close loses nothing.
            with contextlib.suppress(OSError):
                os.close(fd)

    def _unavailable(self, exc: OSError) -> SinkUnavailable:
        return SinkUnavailable(self.name, describe_os_error(exc, self.config.path))


def _drop_torn_tail(fd: int) -> None:
    """Truncate a trailing fragment without a newline (a write that never returned)."""
    end = os.fstat(fd).st_size
    if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
        return
    position = end
    while position > 0:
        start = max(0, position - _READ_BLOCK_BYTES)
        newline = os.pread(fd, position - start, start).rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        position = start
    os.ftruncate(fd, 0)


def dead_letter_to_json_dict(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON-ready data, in the file's field order."""
    failed_at = letter.failed_at if letter.failed_at.tzinfo else letter.failed_at.replace(tzinfo=UTC)
    data: dict[str, Any] = {
        "failed_at": failed_at.isoformat(),
        **{key: getattr(letter, key) for key in _PLAIN_FIELDS},
        "reason": redact_text(letter.reason),
    }
    try:
        data["raw"] = letter.raw.decode("utf-8")
    except UnicodeDecodeError:
        data["raw_base64"] = base64.b64encode(letter.raw).decode("ascii")
    return data


def read_dead_letters(path: str | os.PathLike[str]) -> Iterator[DeadLetter]:
    """The dead letters of a file in order, skipping blank lines and a torn last one (``dead-letters replay``).

    Raises:
        OSError: If the file cannot be read.
        ValueError: If a complete line is not a dead letter, naming the file and the line number.
    """
    with Path(path).open("rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.endswith(b"\n"):
                return
            if line.strip():
                try:
                    yield _dead_letter_from_line(line)
                except ValueError as exc:
                    raise ValueError(f"{os.fspath(path)}: line {number}: {exc}") from None


def _dead_letter_from_line(line: bytes) -> DeadLetter:
    try:
        data: Any = json.loads(line)
    except RecursionError:
        # A line nested thousands deep is no dead letter this sink wrote; refused like any other bad line.
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if isinstance(data.get("raw"), str):
        raw = data["raw"].encode("utf-8")
    elif isinstance(data.get("raw_base64"), str):
        try:
            raw = base64.b64decode(data["raw_base64"], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"raw_base64 is not base64: {exc}") from None
    else:
        raise ValueError("neither raw nor raw_base64 is a string")
    failed_at = datetime.fromisoformat(_text(data, "failed_at"))
    if failed_at.tzinfo is None:
        raise ValueError("failed_at has no UTC offset")
    dequeue_count = data.get("dequeue_count")
    if dequeue_count is not None and (isinstance(dequeue_count, bool) or not isinstance(dequeue_count, int)):
        raise ValueError("dequeue_count is not an integer")
    texts = {key: _text(data, key) for key in ("message_type", "source", "reason")}
    optional = {key: _text(data, key, optional=True) for key in ("queue", "message_id", "sink", "dedupe_key")}
    return DeadLetter(raw=raw, failed_at=failed_at, dequeue_count=dequeue_count, **texts, **optional)


def _text(data: dict[str, Any], key: str, *, optional: bool = False) -> Any:
    value = data.get(key)
    if optional and value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string" if optional else f"{key} is missing or not a string")
    return value
