"""The file sink: receipts appended as JSON Lines to local files, fsynced before they count as accepted.

Each receipt is one line, :meth:`Receipt.to_json_dict` as compact UTF-8 JSON, ``dedupe_key`` first. ``path``
is a ``strftime`` pattern of the UTC write time (never the receipt's, so a late receipt does not reopen a
closed day's file) plus ``{message_type}``; ``%%`` and ``{{ }}`` are literal. One handle per MessageType
stays open: moving to a new path closes the one it left. Rotation is logrotate's: a renamed or removed file
is noticed before each write (SIGHUP works too). New folders get 0700 and new files ``file_mode`` whatever
the umask; files (and the folder of a created name) are fsynced before ``write`` returns. An ``OSError`` is
:class:`~mns_consumer.errors.SinkUnavailable`, or at ``open`` a :class:`~mns_consumer.errors.ConfigError`
when only an operator can fix it. The last ``dedupe_window`` keys stored are skipped; ``open`` refills them
from the end of the live files, skipping torn lines and lines of another type.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import string
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.files import (
    check_can_create_in,
    describe_os_error,
    ensure_private_dir,
    needs_operator,
    open_private,
)
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import SinkConfig, SinkResult, compact_json, first_unseen
from mns_consumer.sinks.recent_keys import RecentKeys

_STRFTIME_DIRECTIVES = frozenset("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
_UNSAFE_IN_COMPONENT = re.compile(r"[^A-Za-z0-9_.-]|^\.")
_READ_BLOCK_BYTES = 1 << 20
_MESSAGE_TYPE: Final = None
"""The segment that stands for ``{message_type}``; every other segment is strftime text."""

Clock: TypeAlias = Callable[[], datetime]
"""Returns the current time; timezone-aware (a naive value is read as local time)."""
_utc_now: Clock = partial(datetime.now, UTC)


def _parse_file_mode(value: object) -> object:
    # YAML 1.1 reads 0640 as octal but 0o640 as a string, so accept octal text in either spelling.
    if isinstance(value, str):
        try:
            return int(value.removeprefix("0o").removeprefix("0O"), 8)
        except ValueError:
            raise ValueError(f"file mode {value!r} is not an octal number such as 0o600") from None
    return value


def _check_file_mode(mode: int) -> int:
    if not 0 <= mode <= 0o777:
        raise ValueError(f"file mode {mode:#o} must be between 0o000 and 0o777")
    if mode & 0o600 != 0o600:
        raise ValueError(f"file mode {mode:#o} must include 0o600: the sink reads its own files back")
    return mode


FileMode: TypeAlias = Annotated[int, BeforeValidator(_parse_file_mode), AfterValidator(_check_file_mode)]
"""A permission mode for created files: an int (``0o600``) or octal text (``"0640"``, ``"0o640"``);
it must include owner read and write."""


class PathTemplate:
    """A parsed ``path`` (``source``, as configured): strftime text and ``{message_type}`` segments."""

    def __init__(self, source: str) -> None:
        """Parse ``source``; ValueError if a placeholder or strftime directive is unknown, or it names no file."""
        self.source = source
        self._segments = _parse_template(source)

    @property
    def has_date(self) -> bool:
        """Whether the rendered path changes with the time of the write."""
        return any(s is not _MESSAGE_TYPE and re.search(r"%[^%]", s.replace("%%", "")) for s in self._segments)

    @property
    def has_message_type(self) -> bool:
        """Whether the rendered path depends on the MessageType."""
        return _MESSAGE_TYPE in self._segments

    def render(self, message_type: str, when: datetime) -> str:
        """The path for receipts of ``message_type`` written at ``when`` (converted to UTC)."""
        utc = when.astimezone(UTC)
        safe = safe_component(message_type)
        return "".join(safe if s is _MESSAGE_TYPE else utc.strftime(s) for s in self._segments)

    def fixed_directory(self) -> str:
        """The deepest folder that depends on neither the time nor the MessageType ("" for the current one)."""
        # What comes before the first {message_type} (a NUL here, which no valid path holds) or strftime directive.
        template = "".join("\0" if s is _MESSAGE_TYPE else s for s in self._segments)
        return os.path.dirname(re.split("[%\0]", template, maxsplit=1)[0])

    def live_paths(self, when: datetime) -> dict[str, str | None]:
        """Files on disk that ``render`` gives at ``when``: path -> its (path-safe) MessageType, or None without one."""
        utc = when.astimezone(UTC)
        if not self.has_message_type:
            path = self.render("", utc)
            return {path: None} if os.path.isfile(path) else {}
        pattern = "".join("*" if s is _MESSAGE_TYPE else glob.escape(utc.strftime(s)) for s in self._segments)
        # Every {message_type} must match the same text: the first one is the group, the others repeat it.
        again = "(?P=message_type)"
        regex = "".join(again if s is _MESSAGE_TYPE else re.escape(utc.strftime(s)) for s in self._segments)
        matcher = re.compile(regex.replace(again, "(?P<message_type>[A-Za-z0-9_-][A-Za-z0-9_.-]*)", 1))
        matches = ((path, matcher.fullmatch(path)) for path in glob.glob(pattern))
        return {path: match.group("message_type") for path, match in matches if match and os.path.isfile(path)}


def _parse_template(source: str) -> tuple[str | None, ...]:
    try:
        parsed = list(string.Formatter().parse(source))
    except ValueError as exc:
        raise ValueError(f"path {source!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    segments: list[str | None] = []
    for text, field_name, format_spec, conversion in parsed:
        if text:
            segments.append(_check_strftime(source, text))
        if field_name is None:
            continue
        if field_name != "message_type" or format_spec or conversion:
            shown = (
                f"{{{field_name}{'!' + conversion if conversion else ''}{':' + format_spec if format_spec else ''}}}"
            )
            hint = "; write the date as strftime directives in the path, e.g. %Y-%m-%d" if "date" in field_name else ""
            raise ValueError(f"path {source!r}: unknown placeholder {shown}; the only one is {{message_type}}{hint}")
        segments.append(_MESSAGE_TYPE)
    rendered = "".join("x" if s is _MESSAGE_TYPE else s for s in segments)
    if "\0" in rendered:
        raise ValueError(f"path {source!r} contains a NUL character")
    if not rendered or rendered.endswith(os.sep):
        raise ValueError(f"path {source!r} must name a file, not a folder")
    return tuple(segments)


def _check_strftime(source: str, text: str) -> str:
    unknown = sorted({d for d in re.findall(r"%(.?)", text.replace("%%", "")) if d not in _STRFTIME_DIRECTIVES})
    if unknown:
        shown = ", ".join("%" + d if d else "a lone %" for d in unknown)
        raise ValueError(f"path {source!r} has unknown strftime directives: {shown} (write %% for a literal %)")
    return text


def safe_component(message_type: str) -> str:
    """A MessageType made safe as (part of) a file name: no separators, no leading dot, never empty."""
    return _UNSAFE_IN_COMPONENT.sub("_", message_type) or "_"


_RETIRED_KEYS: Final = {
    "rotate_bytes": (
        "size rotation is left to logrotate: remove rotate_bytes and rotate the file with logrotate "
        "(example in docs/sinks.md); the sink reopens on SIGHUP and notices a renamed file by itself"
    ),
    "rotate_daily": "remove rotate_daily and put the date in path as strftime directives, e.g. receipts.jsonl.%Y-%m-%d",
}


class FileSinkConfig(SinkConfig):
    """Configuration of a :class:`FileSink` (``type: file``); see the module docstring for semantics."""

    type: Literal["file"] = Field(default="file", description="Sink type; always `file`. Default: file.")
    path: str = Field(
        min_length=1,
        description=(
            "File to append JSON Lines to: a strftime pattern of the UTC write time (%Y-%m-%d, ...) plus the "
            "placeholder {message_type}. Required; no default."
        ),
    )
    fsync: bool = Field(
        default=True,
        description=(
            "fsync each file (and the folder, when a file is created) before a write returns. False survives a "
            "process crash but not a power loss. Default: true."
        ),
    )
    file_mode: FileMode = Field(
        default=0o600,
        description="Permission bits of created files (octal, owner read and write required). Default: 0o600.",
    )
    dedupe_window: int = Field(
        default=100_000,
        ge=0,
        description=(
            "How many recently stored dedupe keys (a count of receipts) to remember and skip; 0 turns the "
            "window and its preload off. Default: 100000."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _no_retired_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key, advice in _RETIRED_KEYS.items():
                if key in data:
                    raise ValueError(f"{key} is no longer supported: {advice}")
        return data

    @field_validator("path")
    @classmethod
    def _path_is_a_valid_template(cls, path: str) -> str:
        PathTemplate(path)
        return path

    def template(self) -> PathTemplate:
        """The parsed path."""
        return PathTemplate(self.path)

    def build(self, name: str) -> FileSink:
        """Create the sink (not opened yet)."""
        return FileSink(name, self)


def encode_json_line(data: dict[str, Any]) -> bytes:
    """One compact UTF-8 JSON line ending in a newline (``\\u`` escapes for lone surrogates, which UTF-8 lacks)."""
    try:
        return (compact_json(data) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(data, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def open_for_append(path: str, *, file_mode: int, fsync: bool) -> int:
    """A descriptor appending to ``path``, created with its folders as :func:`mns_consumer.files.open_private` does.

    ``O_RDWR``, not write only: the sink reads the last byte back to find a torn line.
    """
    return open_private(path, os.O_RDWR | os.O_APPEND, mode=file_mode, make_dirs=True, fsync=fsync)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (``os.write`` may write fewer); OSError if a write fails, after an unknown prefix."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def still_at_path(path: str, identity: tuple[int, int]) -> bool:
    """Whether ``path`` still names the open file whose ``(st_dev, st_ino)`` is ``identity`` (not renamed or removed).

    Callers keep the identity rather than fstat the file each time: every system call releases the GIL,
    and getting it back costs a busy daemon more than the call.
    """
    try:
        at_path = os.stat(path)
    except OSError:
        return False
    return (at_path.st_dev, at_path.st_ino) == identity


@dataclass
class _OpenFile:
    fd: int
    identity: tuple[int, int]
    needs_newline: bool


class FileSink:
    """Appends receipts as JSON Lines to local files (see the module docstring); every method holds one lock."""

    def __init__(self, name: str, config: FileSinkConfig, *, now: Clock = _utc_now) -> None:
        """Create a sink, opening nothing; ``now`` dates the writes (tests move time with it)."""
        self.name = name
        self.config = config
        self._template = config.template()
        self._now = now
        self._recent = RecentKeys(config.dedupe_window) if config.dedupe_window else None
        self._files: dict[str, _OpenFile] = {}
        self._path_of_type: dict[str, str] = {}
        self._lock = threading.Lock()

    def open(self) -> None:
        """Create the fixed part of the folder and preload the dedupe window from the live files.

        Raises:
            ConfigError: If the folder can never be created as things stand (a file in the way, no
                permission, a read-only mount): the daemon stops at start, naming the path.
            SinkUnavailable: If it fails for a reason that may pass (a full disk, an I/O error).
        """
        with self._lock:
            path = self._template.fixed_directory()
            try:
                ensure_private_dir(path, fsync=self.config.fsync)
                if self._recent is not None:
                    self._recent.add_all(self._stored_keys_to_preload())
            except OSError as exc:
                if needs_operator(exc):
                    raise ConfigError(
                        f"sink {self.name!r}",
                        f"sinks.{self.name}.path",
                        f"cannot create the folder {describe_os_error(exc, path)}",
                        "make that path a folder the daemon may write to, or choose another path",
                    ) from exc
                raise self._unavailable(exc, path) from exc

    def probe(self) -> str:
        """Check, creating nothing, that the folder exists or can be created and is writable; else SinkUnavailable."""
        path = self._template.fixed_directory()
        try:
            return check_can_create_in(path)
        except OSError as exc:
            raise self._unavailable(exc, path) from exc

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
        """Append the receipts not stored recently, fsync, and report the whole batch accepted.

        Raises:
            SinkUnavailable: If any file cannot be opened, written or synced; keys of files already
                synced in this call are remembered, so a retry does not write them again.
        """
        with self._lock:
            # One reading of the clock per batch, so a batch never straddles two days' files.
            now = self._now()
            for path, receipts in self._group_new_receipts(batch, now).items():
                try:
                    self._append(path, [encode_json_line(r.to_json_dict()) for r in receipts])
                except OSError as exc:
                    self._close_all()
                    raise self._unavailable(exc, path) from exc
                # Remembered per file as soon as it is synced: a retry after a later file fails then
                # skips these instead of writing them twice.
                if self._recent is not None:
                    self._recent.add_all(r.dedupe_key for r in receipts)
            return SinkResult.accept_all(batch)

    def close(self) -> None:
        """Close every file (each was fsynced when written); the next write opens them again at their paths."""
        with self._lock:
            self._close_all()

    reopen = close
    """SIGHUP after logrotate: close every file, so the next write opens the new ones."""

    def _group_new_receipts(self, batch: Sequence[Receipt], now: datetime) -> dict[str, list[Receipt]]:
        groups: dict[str, list[Receipt]] = {}
        # A batch is nearly always one MessageType: render its path once, not once per receipt.
        paths: dict[str, str] = {}
        for receipt in first_unseen(batch, self._recent)[1]:
            path = paths.get(receipt.message_type)
            if path is None:
                path = paths[receipt.message_type] = self._template.render(receipt.message_type, now)
                self._move(receipt.message_type, path)
            groups.setdefault(path, []).append(receipt)
        return groups

    def _move(self, message_type: str, path: str) -> None:
        # A path left behind (the last hour's, yesterday's) is never written again: close its handle.
        left = self._path_of_type.get(message_type)
        self._path_of_type[message_type] = path
        if left in self._files and left not in self._path_of_type.values():
            with contextlib.suppress(OSError):
                os.close(self._files.pop(left).fd)

    def _append(self, path: str, lines: list[bytes]) -> None:
        current = self._file_at(path)
        write_all(current.fd, (b"\n" if current.needs_newline else b"") + b"".join(lines))
        current.needs_newline = False
        if self.config.fsync:
            os.fsync(current.fd)

    def _file_at(self, path: str) -> _OpenFile:
        current = self._files.get(path)
        if current is not None:
            if still_at_path(path, current.identity):
                return current
            os.close(self._files.pop(path).fd)
        # Kept at once, so that the caller's _close_all closes it should a check below fail.
        fd = open_for_append(path, file_mode=self.config.file_mode, fsync=self.config.fsync)
        opened = self._files[path] = _OpenFile(fd, identity=(0, 0), needs_newline=False)
        status = os.fstat(fd)
        opened.identity = (status.st_dev, status.st_ino)
        opened.needs_newline = status.st_size > 0 and os.pread(fd, 1, status.st_size - 1) != b"\n"
        return opened

    def _close_all(self) -> None:
        files, self._files = self._files, {}
        for opened in files.values():
            # The data was fsynced when written, so a failing close loses nothing.
            with contextlib.suppress(OSError):
                os.close(opened.fd)

    def _unavailable(self, exc: OSError, path: str) -> SinkUnavailable:
        return SinkUnavailable(self.name, describe_os_error(exc, path))

    def _stored_keys_to_preload(self) -> list[str]:
        candidates = self._template.live_paths(self._now())
        # Several live files (one per MessageType): the newest lines win the window.
        newest_first = sorted(candidates, key=lambda p: (os.stat(p).st_mtime_ns, p), reverse=True)
        budget = self.config.dedupe_window
        per_file: list[list[str]] = []
        for path in newest_first:
            if budget <= 0:
                break
            keys = _last_keys(path, budget, candidates[path])
            per_file.append(keys)
            budget -= len(keys)
        return [key for keys in reversed(per_file) for key in keys]


def _last_keys(path: str, limit: int, message_type: str | None) -> list[str]:
    """Up to ``limit`` dedupe keys from the end of a JSON Lines file, in file order."""
    keys: list[str] = []
    with open(path, "rb") as file:
        position = file.seek(0, os.SEEK_END)
        head = b""
        while position > 0 and len(keys) < limit:
            step = min(_READ_BLOCK_BYTES, position)
            position -= step
            file.seek(position)
            lines = (file.read(step) + head).split(b"\n")
            # The first piece may continue in the block before this one.
            head = lines.pop(0) if position > 0 else b""
            for line in reversed(lines):
                key = _key_of(line, message_type)
                if key is not None and len(keys) < limit:
                    keys.append(key)
    keys.reverse()
    return keys


def _key_of(line: bytes, message_type: str | None) -> str | None:
    try:
        data: Any = json.loads(line)  # a blank line is a ValueError too
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(key := data.get("dedupe_key"), str):
        return None
    line_type = data.get("message_type")
    # Another file that merely fits the {message_type} pattern (a dead-letter file, say) must not
    # make the sink believe it stored those receipts.
    if message_type is not None and not (isinstance(line_type, str) and safe_component(line_type) == message_type):
        return None
    return key
