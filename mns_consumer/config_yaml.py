"""Reading a configuration file into plain data: UTF-8, bounded, no key given twice.

``yaml.safe_load`` lets a second ``secret:`` silently win, expands alias bombs, builds recursive
structures, and turns deep nesting or a 5,000-digit integer into tracebacks. :class:`ConfigLoader`
refuses each from the parser's events, with key path and line, before anything is built; the limits
(``MAX_*``) are far above a real configuration (``config.example.yaml``: 15 KB, 6 levels, 300 values).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn, cast

import yaml

from mns_consumer.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_INTEGER_DIGITS", "MAX_VALUES", "ConfigLoader", "join_key", "read_yaml"]

MAX_FILE_BYTES: Final = 1024 * 1024
"""Largest configuration file read, bytes (1 MiB)."""
MAX_DEPTH: Final = 32
"""Deepest nesting of mappings and lists, levels."""
MAX_VALUES: Final = 100_000
"""Most keys and values in the document once every alias is expanded."""
MAX_INTEGER_DIGITS: Final = 64
"""Longest integer, digits: every numeric key has a range far below this."""

_MERGE_KEY: Final = "<<"
_FIX_NESTING: Final = "write the section as config.example.yaml does"


@dataclass(slots=True)
class _Collection:
    """A mapping or list the parser has opened and not yet closed."""

    path: str
    is_mapping: bool
    anchor: str | None
    values_before: int
    expecting_key: bool = True
    key: str = ""
    index: int = -1
    key_lines: dict[str, int] = field(default_factory=dict)


class ConfigLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that refuses what the module docstring lists with :class:`ConfigError` (file, key
    path, line), checking each event as the composer takes it."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self._open: list[_Collection] = []
        self._anchor_values: dict[str, int] = {}
        self._values = 0

    def get_event(self) -> yaml.Event:
        """The parser's next event, once it has passed the checks."""
        # PyYAML's parser and resolver are untyped (types-PyYAML leaves them so): their results are cast.
        event = cast(yaml.Event, super().get_event())  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.ScalarEvent):
            path = self._enter_node(event)
            if path is not None:
                self._check_integer(event, path)
            self._count(1, event, path if path is not None else self._open[-1].path)
            if event.anchor is not None:
                self._anchor_values[event.anchor] = 1
            self._leave_node()
        elif isinstance(event, yaml.AliasEvent):
            path = self._enter_node(event)
            self._count(self._alias_values(event, path or ""), event, path or "")
            self._leave_node()
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            path = self._enter_node(event)
            if path is None:
                self._fail(self._open[-1].path, "a key must be plain text, not a mapping or list", event, _FIX_NESTING)
            if len(self._open) >= MAX_DEPTH:
                self._fail(path, f"is nested more than {MAX_DEPTH} levels deep", event, _FIX_NESTING)
            is_mapping = isinstance(event, yaml.MappingStartEvent)
            self._open.append(_Collection(path, is_mapping, event.anchor, self._values))
            self._count(1, event, path)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            closed = self._open.pop()
            if closed.anchor is not None:
                self._anchor_values[closed.anchor] = self._values - closed.values_before
            self._leave_node()
        return event

    def _enter_node(self, event: yaml.NodeEvent) -> str | None:
        """The key path of the node this event starts, or None when the node is a mapping's key."""
        if not self._open:
            return ""
        parent = self._open[-1]
        if not parent.is_mapping:
            parent.index += 1
            return f"{parent.path}[{parent.index}]"
        if not parent.expecting_key:
            return join_key(parent.path, parent.key)
        if not isinstance(event, yaml.ScalarEvent):
            return None
        key = event.value
        first_line = parent.key_lines.get(key)
        if first_line is not None and key != _MERGE_KEY:
            self._fail(
                join_key(parent.path, key),
                f"is given twice (first on line {first_line})",
                event,
                "keep one of them: YAML would silently use the last",
            )
        parent.key_lines[key] = _line(event)
        parent.key = key
        return None

    def _leave_node(self) -> None:
        """After a whole node: a mapping's key is followed by its value, a value by the next key."""
        if self._open and self._open[-1].is_mapping:
            self._open[-1].expecting_key = not self._open[-1].expecting_key

    def _alias_values(self, event: yaml.AliasEvent, path: str) -> int:
        anchor = event.anchor or ""
        if any(collection.anchor == anchor for collection in self._open):
            self._fail(
                path,
                f"uses the alias *{anchor} inside &{anchor} itself (a recursive alias)",
                event,
                "an alias may only refer to a section that ends before it",
            )
        # An undefined alias is left to the composer, which reports it with its line.
        return self._anchor_values.get(anchor, 1)

    def _count(self, values: int, event: yaml.Event, path: str) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            self._fail(
                path,
                f"the document grows past {MAX_VALUES:,} keys and values once its aliases are expanded",
                event,
                "use fewer aliases; a configuration needs a few hundred values",
            )

    def _check_integer(self, event: yaml.ScalarEvent, path: str) -> None:
        tag = event.tag
        if tag in (None, "!"):
            tag = cast(str, self.resolve(yaml.ScalarNode, event.value, event.implicit))  # type: ignore[no-untyped-call]
        digits = sum(character.isdigit() for character in event.value)
        if tag == "tag:yaml.org,2002:int" and digits > MAX_INTEGER_DIGITS:
            self._fail(
                path,
                f"is an integer of {digits:,} digits, far beyond any key's range",
                event,
                "use a value within the key's range; see config.example.yaml",
            )

    def _fail(self, path: str, problem: str, event: yaml.Event, hint: str) -> NoReturn:
        raise ConfigError(self.source, path or "(top level)", f"{problem} (line {_line(event)})", hint)


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 0


def join_key(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the top level: how every configuration error names a key."""
    return f"{path}.{key}" if path else key


def read_yaml(path: str | Path) -> Any:
    """The one YAML document in a configuration file, as plain data.

    Raises:
        ConfigError: If the file cannot be read, is larger than :data:`MAX_FILE_BYTES`, is not UTF-8, is
            not YAML, or breaks a rule of :class:`ConfigLoader`.
    """
    source = str(path)
    text = _read_text(Path(path), source)
    loader: ConfigLoader | None = None
    try:
        # The reader checks the text as the loader is made: a control character fails here already.
        loader = ConfigLoader(text, source)
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(source, "", f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_text(path: Path, source: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            source, "", f"is larger than {MAX_FILE_BYTES // 1024} KiB: not a configuration file", "check the path"
        )
    save_as_utf8 = "save it as UTF-8 (e.g. iconv -t UTF-8 or your editor's encoding menu)"
    # UTF-32 first: its little-endian mark starts with UTF-16's.
    for name, marks in (
        ("UTF-32", (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)),
        ("UTF-16", (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)),
    ):
        if data.startswith(marks):
            problem = f"is {name} (it starts with a {name} byte-order mark), not UTF-8"
            raise ConfigError(source, "", problem, save_as_utf8)
    if b"\0" in data:
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise ConfigError(
            source,
            "",
            f"is not UTF-8 text: it holds a NUL byte (line {line}), as UTF-16 and binary files do",
            save_as_utf8,
        )
    try:
        # utf-8-sig: a UTF-8 byte-order mark, as some Windows editors write, is dropped.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            source, "", f"is not UTF-8: byte 0x{data[exc.start]:02x} at line {line}, column {column}", save_as_utf8
        ) from None
