"""The configuration reference in Markdown, generated from the pydantic models themselves.

The reference tables of ``docs/configuration.md`` are this module's output, between two markers:
``python -m mns_consumer.config_reference --write docs/configuration.md`` rewrites them, and a test
fails when they drift apart, so the documentation cannot describe keys that do not exist.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from mns_consumer.config import Config
from mns_consumer.sinks.base import BUILTIN_SINK_TYPES, sink_config_class


def sections(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """(title, model) of the top level and of every section below it, in the order of the file's keys."""
    if not prefix:
        yield "top level", model
    for name, info in model.model_fields.items():
        for arg in (info.annotation, *typing.get_args(info.annotation)):
            if isinstance(arg, type) and typing.get_origin(arg) is None and issubclass(arg, BaseModel):
                title = prefix + name + ("[]" if typing.get_origin(info.annotation) is list else "")
                yield title, arg
                yield from sections(arg, f"{title}.")


START_MARKER = (
    "<!-- config-reference:start (generated: python -m mns_consumer.config_reference --write docs/configuration.md) -->"
)
END_MARKER = "<!-- config-reference:end -->"


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{arg}`" for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args if arg is not type(None)) + " or null"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type_name(args[1])}" if len(args) == 2 else "mapping"
    name = getattr(annotation, "__name__", str(annotation))
    return {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "SecretStr": "secret"}.get(
        name, name
    )


def _default(name: str, info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return "see below" if info.default_factory not in (list, dict) else "empty"
    if info.default is None:
        return "unset"
    value = info.default
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if name.endswith("_mode") and isinstance(value, int):
        return f"`{value:#o}`"
    return f"`{value}`"


def model_table(model: type[BaseModel]) -> str:
    """A Markdown table of a model's keys: name, type, default and description."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        description = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_type_name(info.annotation)} | {_default(name, info)} | {description} |")
    return "\n".join(rows)


def reference() -> str:
    """The whole configuration reference, sections first, then one table per built-in sink type."""
    parts: list[str] = []
    for title, model in sections():
        parts += [f"### `{title}`", "", model_table(model), ""]
    for type_name in sorted(BUILTIN_SINK_TYPES):
        parts += [f"### `sinks.<name>` with `type: {type_name}`", "", model_table(sink_config_class(type_name)), ""]
    return "\n".join(parts).rstrip() + "\n"


def marked_block() -> str:
    """The reference wrapped in its markers, as the documentation page holds it."""
    return f"{START_MARKER}\n\n{reference()}\n{END_MARKER}"


def replace_block(page: str) -> str:
    """``page`` with the text between (and including) the markers replaced by :func:`marked_block`.

    Raises:
        ValueError: If the page lacks either marker.
    """
    start = page.index(START_MARKER)
    end = page.index(END_MARKER, start) + len(END_MARKER)
    return page[:start] + marked_block() + page[end:]


def main(argv: list[str]) -> int:
    """Print the marked reference, or with ``--write PAGE`` rewrite it inside PAGE in place."""
    if len(argv) == 2 and argv[0] == "--write":
        page = Path(argv[1])
        page.write_text(replace_block(page.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    if argv:
        print("usage: python -m mns_consumer.config_reference [--write docs/configuration.md]", file=sys.stderr)
        return 2
    print(marked_block())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
