"""The file sink: receipts appended as JSON Lines to local files, fsynced before they count as accepted.

Each receipt is one line: :meth:`Receipt.to_json_dict` as compact UTF-8 JSON (``ensure_ascii=False``).
The ``dedupe_key`` comes first in every line.

Paths. ``path`` is a template with these placeholders:

* ``{message_type}``: the receipt's MessageType (``SmsReport``, ``SmsUp``, ...). Characters other than
  letters, digits, ``_``, ``-`` and ``.`` become ``_``, and so does a leading ``.``, so a MessageType
  can never climb out of the folder or hide a file.
* ``{date}``: the UTC date of the write, as ``%Y-%m-%d``.
* ``{date:FORMAT}``: the UTC date of the write with any ``strftime`` format, e.g. ``{date:%Y/%m}``.

The date is the UTC wall clock when the batch is written, not the receipt's own time. Late or
backfilled receipts therefore never reopen a closed day's file, and the name does not depend on the
host's time zone. ``{{`` and ``}}`` stand for literal braces. Any other placeholder, a conversion
(``!r``) or a malformed brace fails validation.

Rotation.

* Daily: a date placeholder starts a new file when the rendered date changes. ``rotate_daily: true``
  does the same for a path without one, by appending ``.{date}``:
  ``/var/lib/mns-consumer/receipts.jsonl`` is written as ``/var/lib/mns-consumer/receipts.jsonl.2026-11-22``.
* By size: with ``rotate_bytes``, a line that would make the current file larger than that renames the
  file to ``<path>.1``, then ``<path>.2``, and so on. Each rotation takes the next free number, so a
  higher number is newer, a rotated file never changes again, and the live file is always at the
  rendered path (``tail -F`` follows it). Lines are never split across files. A file exceeds
  ``rotate_bytes`` only when a single line is larger than the limit; that line then gets a file of its own.
* External logrotate (``create`` or ``copytruncate``) needs no signal. Before each write the sink
  compares the path's inode with its open handle's (``os.stat`` against ``os.fstat``). If the file was
  renamed or removed, the sink opens a new one at the path. SIGHUP (:meth:`FileSink.reopen`) also works.

Durability. Each file gets ``write`` then ``os.fsync`` before ``write`` returns. A created file or
folder also gets an fsync of its parent folder, so its name survives a power loss too. New folders
are made with mode 0700 and new files with ``file_mode`` (0600 by default), whatever the umask. Existing
files and folders keep their modes. Any ``OSError`` (ENOSPC, EROFS, EACCES, a regular file where a
folder should be) raises :class:`~mns_consumer.errors.SinkUnavailable`: nothing of that batch counts
as accepted, every handle is closed, and the next write opens afresh. The file sink never rejects. At
start (:meth:`FileSink.open`), a folder that cannot be created until someone changes the file system
(a regular file in the way, no permission, a read-only mount) is a
:class:`~mns_consumer.errors.ConfigError` naming the path instead, so the daemon stops with exit 2
rather than retrying for ever.

Dedupe. The sink remembers the keys it stored most recently, up to ``dedupe_window`` of them
(:class:`~mns_consumer.sinks.recent_keys.RecentKeys`). It skips receipts whose key it remembers and still
reports them accepted. It remembers a key only once the key's file is fsynced. :meth:`FileSink.open`
fills the window from the end of the files for today's and yesterday's (UTC) rendered paths and their
rotated ``.N`` siblings, newest first. Lines that are not valid JSON are skipped (a write torn by a crash,
or an ENOSPC). Under a ``{message_type}`` placeholder, so are lines whose MessageType does not
belong to their file name. ``dedupe_window: 0`` turns the window and the preload off, though
duplicates inside one batch are still written once. A duplicate older than the window is written
again; readers dedupe on ``dedupe_key``.

Torn lines. If a file does not end with a newline when the sink opens it (a crash mid-write), the next
append begins with one, so the fragment stays on a line of its own and later lines stay intact.

One sink in one process writes a given path. Size rotation and the size count assume that.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import stat
import string
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, ClassVar, Final, Literal, TypeAlias

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
from mns_consumer.sinks.base import SinkConfig, SinkResult
from mns_consumer.sinks.recent_keys import RecentKeys

DEFAULT_DATE_FORMAT = "%Y-%m-%d"
"""The format of a bare ``{date}`` placeholder and of the ``rotate_daily`` suffix."""

_STRFTIME_DIRECTIVES = frozenset("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
_SAFE_COMPONENT = re.compile(r"[^A-Za-z0-9_.-]")
_READ_BLOCK_BYTES = 1 << 20

Clock: TypeAlias = Callable[[], datetime]
"""Returns the current time; timezone-aware (a naive value is read as local time)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


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


@dataclass(frozen=True)
class _Segment:
    kind: Literal["text", "message_type", "date"]
    value: str = ""


class PathTemplate:
    """A parsed ``path`` with ``{message_type}`` and ``{date[:FORMAT]}`` placeholders.

    Attributes:
        source: The template as configured.
    """

    def __init__(self, source: str, *, daily_suffix: bool = False) -> None:
        """Parse and validate a template.

        Args:
            source: The configured path.
            daily_suffix: Append ``.{date}`` (the ``rotate_daily`` behaviour).

        Raises:
            ValueError: If a placeholder is unknown or malformed, or the path names no file.
        """
        self.source = source
        self._segments = _parse_template(source)
        if daily_suffix:
            self._segments += (_Segment("text", "."), _Segment("date", DEFAULT_DATE_FORMAT))

    @property
    def has_date(self) -> bool:
        """Whether the rendered path changes with the date."""
        return any(s.kind == "date" for s in self._segments)

    @property
    def has_message_type(self) -> bool:
        """Whether the rendered path depends on the MessageType."""
        return any(s.kind == "message_type" for s in self._segments)

    def render(self, message_type: str, when: datetime) -> str:
        """The path for receipts of ``message_type`` written at ``when`` (converted to UTC)."""
        day = when.astimezone(UTC)
        return "".join(_render_segment(s, safe_component(message_type), day) for s in self._segments)

    def fixed_directory(self) -> str:
        """The deepest folder that does not depend on a placeholder ("" for the current folder)."""
        prefix = ""
        for segment in self._segments:
            if segment.kind != "text":
                break
            prefix += segment.value
        return os.path.dirname(prefix)

    def existing_paths(self, when: datetime) -> dict[str, str | None]:
        """Files on disk that ``render`` gives for some MessageType on ``when``'s UTC date.

        Returns:
            Path -> the (path-safe) MessageType it belongs to, or None without a ``{message_type}``.
        """
        day = when.astimezone(UTC)
        if not self.has_message_type:
            path = self.render("", day)
            return {path: None} if os.path.isfile(path) else {}
        pattern = "".join(
            "*" if s.kind == "message_type" else glob.escape(_render_segment(s, "", day)) for s in self._segments
        )
        matcher = re.compile("".join(_regex_segment(s, day, seen) for seen, s in _first_flags(self._segments)))
        found: dict[str, str | None] = {}
        for candidate in glob.glob(pattern):
            match = matcher.fullmatch(candidate)
            if match and os.path.isfile(candidate):
                found[candidate] = match.group("message_type")
        return found


def _first_flags(segments: Sequence[_Segment]) -> Iterable[tuple[bool, _Segment]]:
    seen = False
    for segment in segments:
        yield seen, segment
        seen = seen or segment.kind == "message_type"


def _regex_segment(segment: _Segment, day: datetime, seen_message_type: bool) -> str:
    if segment.kind != "message_type":
        return re.escape(_render_segment(segment, "", day))
    return "(?P=message_type)" if seen_message_type else "(?P<message_type>[A-Za-z0-9_-][A-Za-z0-9_.-]*)"


def _render_segment(segment: _Segment, message_type: str, day: datetime) -> str:
    if segment.kind == "message_type":
        return message_type
    if segment.kind == "date":
        return day.strftime(segment.value)
    return segment.value


def _parse_template(source: str) -> tuple[_Segment, ...]:
    known = "{message_type}, {date} or {date:<strftime format>}"
    try:
        parsed = list(string.Formatter().parse(source))
    except ValueError as exc:
        raise ValueError(f"path {source!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    segments: list[_Segment] = []
    for text, field_name, format_spec, conversion in parsed:
        if text:
            segments.append(_Segment("text", text))
        if field_name is None:
            continue
        shown = f"{{{field_name}{'!' + conversion if conversion else ''}{':' + format_spec if format_spec else ''}}}"
        if field_name not in ("message_type", "date"):
            raise ValueError(f"path {source!r}: unknown placeholder {shown}; use {known}")
        if conversion:
            raise ValueError(f"path {source!r}: placeholder {shown} takes no conversion")
        if field_name == "message_type":
            if format_spec:
                raise ValueError(f"path {source!r}: placeholder {shown} takes no format")
            segments.append(_Segment("message_type"))
        else:
            segments.append(_Segment("date", _check_date_format(source, format_spec or DEFAULT_DATE_FORMAT)))
    rendered = "".join(s.value if s.kind == "text" else "x" for s in segments)
    if "\0" in rendered:
        raise ValueError(f"path {source!r} contains a NUL character")
    if not rendered or rendered.endswith(os.sep):
        raise ValueError(f"path {source!r} must name a file, not a folder")
    return tuple(segments)


def _check_date_format(source: str, date_format: str) -> str:
    if "{" in date_format or "}" in date_format:
        raise ValueError(f"path {source!r}: the date format {date_format!r} cannot contain placeholders")
    directives = re.findall(r"%(.?)", date_format)
    unknown = sorted({d for d in directives if d not in _STRFTIME_DIRECTIVES})
    if unknown:
        shown = ", ".join("%" + d if d else "a lone %" for d in unknown)
        raise ValueError(f"path {source!r}: the date format {date_format!r} has unknown strftime directives: {shown}")
    if not [d for d in directives if d != "%"]:
        raise ValueError(f"path {source!r}: the date format {date_format!r} has no strftime directive such as %Y")
    return date_format


def safe_component(message_type: str) -> str:
    """A MessageType made safe as (part of) a file name: no separators, no leading dot, never empty."""
    cleaned = _SAFE_COMPONENT.sub("_", message_type)
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return cleaned or "_"


class FileSinkConfig(SinkConfig):
    """Configuration of a :class:`FileSink` (``type: file``); see the module docstring for semantics."""

    sink_type: ClassVar[str] = "file"

    type: Literal["file"] = Field(default="file", description="Sink type; always `file`. Default: file.")
    path: str = Field(
        min_length=1,
        description=(
            "File to append JSON Lines to. Placeholders: {message_type}, {date} (UTC write date, %Y-%m-%d), "
            "{date:<strftime format>}. Required; no default."
        ),
    )
    rotate_bytes: int | None = Field(
        default=None,
        gt=0,
        description=(
            "Rotate when the next line would make the file larger than this many bytes; rotated files are "
            "renamed <path>.1, <path>.2, ... (higher is newer). Default: null (no size rotation)."
        ),
    )
    rotate_daily: bool = Field(
        default=False,
        description=(
            "For a path without a date placeholder: write to <path>.<UTC date, %Y-%m-%d>, so each day gets "
            "its own file. Default: false."
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

    @field_validator("path")
    @classmethod
    def _path_is_a_valid_template(cls, path: str) -> str:
        PathTemplate(path)
        return path

    @model_validator(mode="after")
    def _daily_rotation_is_said_once(self) -> FileSinkConfig:
        if self.rotate_daily and PathTemplate(self.path).has_date:
            raise ValueError("rotate_daily is implied by the {date} placeholder in path; remove one of them")
        return self

    def template(self) -> PathTemplate:
        """The parsed path, including the ``rotate_daily`` suffix."""
        return PathTemplate(self.path, daily_suffix=self.rotate_daily)

    def build(self, name: str) -> FileSink:
        """Create the sink (not opened yet)."""
        return FileSink(name, self)


_JSON_LINE: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""Built once: json.dumps with options builds an encoder per call."""


def encode_json_line(data: dict[str, Any]) -> bytes:
    """One compact UTF-8 JSON line ending in a newline.

    Text with lone surrogates cannot be UTF-8, so such a value is written with ``\\u`` escapes instead.
    """
    try:
        return (_JSON_LINE.encode(data) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(data, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def open_for_append(path: str, *, file_mode: int, fsync: bool) -> int:
    """Open a file for appending (and reading back), creating it and its folders as needed.

    A new file gets exactly ``file_mode`` and new folders 0700, whatever the umask (see
    :mod:`mns_consumer.files`); with ``fsync``, the folders holding new names are synced. An existing
    file keeps the mode its owner gave it.

    Returns:
        A file descriptor opened ``O_RDWR | O_APPEND``: read access lets the sink check the last byte
        for a torn line.

    Raises:
        OSError: If the file or a folder cannot be opened or created.
    """
    return open_private(path, os.O_RDWR | os.O_APPEND, mode=file_mode, make_dirs=True, fsync=fsync)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (``os.write`` may write fewer than asked).

    Raises:
        OSError: If a write fails; an unknown prefix of ``data`` may have been written.
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def still_at_path(fd: int, path: str, identity: tuple[int, int] | None = None) -> os.stat_result | None:
    """The path's status if it still names the file open at ``fd``, else None (renamed, removed, replaced).

    ``identity`` is the open file's ``(st_dev, st_ino)`` when the caller kept it, which saves an fstat:
    every system call releases the GIL, and getting it back costs a busy daemon more than the call.
    """
    try:
        at_path = os.stat(path)
    except OSError:
        return None
    if identity is None:
        opened = os.fstat(fd)
        identity = (opened.st_dev, opened.st_ino)
    if (at_path.st_dev, at_path.st_ino) != identity:
        return None
    return at_path


@dataclass
class _OpenFile:
    path: str
    fd: int
    identity: tuple[int, int]
    size_bytes: int
    needs_newline: bool


class FileSink:
    """Appends receipts as JSON Lines to local files; see the module docstring for the semantics.

    Thread-safe: ``open``, ``write``, ``reopen`` and ``close`` hold one lock.

    Attributes:
        name: The sink's name in the configuration.
        config: Its configuration.
    """

    def __init__(self, name: str, config: FileSinkConfig, *, now: Clock = _utc_now) -> None:
        """Create a sink; nothing is opened until :meth:`open`.

        Args:
            name: The sink's name in the configuration (used in errors).
            config: Its configuration.
            now: The clock that dates writes (tests move time with it).
        """
        self.name = name
        self.config = config
        self._template = config.template()
        self._now = now
        self._recent = RecentKeys(config.dedupe_window) if config.dedupe_window else None
        self._files: dict[str, _OpenFile] = {}
        self._day: date | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Create the fixed part of the folder and preload the dedupe window from today's files.

        Raises:
            ConfigError: If the folder can never be created as things stand (a regular file in the way,
                no permission, a read-only mount): the daemon stops at start, naming the path.
            SinkUnavailable: If the folder cannot be created or the files cannot be read for a reason
                that may pass (a full disk, an I/O error).
        """
        with self._lock:
            path = self._template.fixed_directory()
            try:
                ensure_private_dir(path, fsync=self.config.fsync)
                if self._recent is not None:
                    now = self._now()
                    self._recent.add_all(self._stored_keys_to_preload([now - timedelta(days=1), now]))
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
        """Check, creating nothing, that the sink's folder exists or can be created, and is writable.

        Returns:
            What was found (see :func:`mns_consumer.files.check_can_create_in`).

        Raises:
            SinkUnavailable: If files cannot be created there, naming the path and the reason.
        """
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
            self._close_files_of_other_days(now)
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

    def reopen(self) -> None:
        """Close every file; the next write opens them again at their paths (logrotate, SIGHUP)."""
        with self._lock:
            self._close_all()

    def close(self) -> None:
        """Close every file (each was fsynced when written); the sink may be opened again."""
        with self._lock:
            self._close_all()

    def _group_new_receipts(self, batch: Sequence[Receipt], now: datetime) -> dict[str, list[Receipt]]:
        keys = [r.dedupe_key for r in batch]
        fresh = set(self._recent.unseen(keys) if self._recent is not None else keys)
        groups: dict[str, list[Receipt]] = {}
        # A batch is nearly always one MessageType: render its path once, not once per receipt.
        paths: dict[str, str] = {}
        for receipt in batch:
            if receipt.dedupe_key in fresh:
                fresh.discard(receipt.dedupe_key)
                path = paths.get(receipt.message_type)
                if path is None:
                    path = paths[receipt.message_type] = self._template.render(receipt.message_type, now)
                groups.setdefault(path, []).append(receipt)
        return groups

    def _close_files_of_other_days(self, now: datetime) -> None:
        # Yesterday's files are never written again; without this, each day would leak handles.
        day = now.astimezone(UTC).date()
        if day != self._day:
            self._close_all()
            self._day = day

    def _append(self, path: str, lines: list[bytes]) -> None:
        current = self._file_at(path)
        chunk = bytearray(b"\n" if current.needs_newline else b"")
        limit = self.config.rotate_bytes
        for line in lines:
            pending = current.size_bytes + len(chunk)
            # An empty file takes any line, however long; rotating it would only make another empty file.
            if limit is not None and pending > 0 and pending + len(line) > limit:
                self._write_chunk(current, chunk)
                current = self._rotate(current)
                chunk = bytearray()
            chunk += line
        self._write_chunk(current, chunk)
        if self.config.fsync:
            os.fsync(current.fd)

    def _write_chunk(self, target: _OpenFile, chunk: bytearray) -> None:
        if chunk:
            write_all(target.fd, bytes(chunk))
            target.size_bytes += len(chunk)
            target.needs_newline = False

    def _file_at(self, path: str) -> _OpenFile:
        current = self._files.get(path)
        if current is not None:
            at_path = still_at_path(current.fd, path, current.identity)
            if at_path is not None:
                # copytruncate (or an operator) may have shrunk the file under the open handle.
                current.size_bytes = at_path.st_size
                return current
            os.close(self._files.pop(path).fd)
        fd = open_for_append(path, file_mode=self.config.file_mode, fsync=self.config.fsync)
        try:
            status = os.fstat(fd)
            size = status.st_size
            needs_newline = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        except OSError:
            os.close(fd)
            raise
        opened = _OpenFile(path, fd, (status.st_dev, status.st_ino), size, needs_newline)
        self._files[path] = opened
        return opened

    def _rotate(self, full: _OpenFile) -> _OpenFile:
        if self.config.fsync:
            os.fsync(full.fd)
        os.close(self._files.pop(full.path).fd)
        numbers = [n for _, n in _rotated_siblings(full.path)]
        os.rename(full.path, f"{full.path}.{max(numbers, default=0) + 1}")
        # Creating the new file fsyncs the folder, which also makes the rename durable.
        return self._file_at(full.path)

    def _close_all(self) -> None:
        files, self._files = self._files, {}
        for opened in files.values():
            # The data was fsynced when written, so a failing close loses nothing.
            with contextlib.suppress(OSError):
                os.close(opened.fd)

    def _unavailable(self, exc: OSError, path: str) -> SinkUnavailable:
        return SinkUnavailable(self.name, f"{exc.filename or path}: {exc.strerror or exc}")

    def _stored_keys_to_preload(self, days: Sequence[datetime]) -> list[str]:
        candidates: dict[str, str | None] = {}
        for day in days:
            for path, message_type in self._template.existing_paths(day).items():
                candidates[path] = message_type
                for sibling, _ in _rotated_siblings(path):
                    candidates[sibling] = message_type
        # rename keeps mtime, so it orders live and rotated files by the age of their last line.
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


def _rotated_siblings(path: str) -> list[tuple[str, int]]:
    directory, base = os.path.split(path)
    siblings: list[tuple[str, int]] = []
    for entry in os.listdir(directory or os.curdir):
        suffix = entry.removeprefix(base + ".")
        if suffix != entry and suffix.isascii() and suffix.isdigit():
            sibling = os.path.join(directory, entry)
            if stat.S_ISREG(os.stat(sibling).st_mode):
                siblings.append((sibling, int(suffix)))
    return siblings


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
    if not line.strip():
        return None
    try:
        data: Any = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    key, line_type = data.get("dedupe_key"), data.get("message_type")
    if not isinstance(key, str):
        return None
    # Another file that merely fits the {message_type} pattern (a dead-letter file, say) must not
    # make the sink believe it stored those receipts.
    if message_type is not None and not (isinstance(line_type, str) and safe_component(line_type) == message_type):
        return None
    return key
