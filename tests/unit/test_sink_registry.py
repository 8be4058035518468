"""The sink registry: built-in types, third-party types through entry points, clear unknown-type errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from mns_consumer.sinks.base import Sink, known_sink_types, parse_sink_config, sink_config_class
from tests.support.receipts import make_receipt
from tests.typing.example_sink import MemorySinkConfig


def test_builtin_types_are_known() -> None:
    """file, database, webhook and s3 are always registered."""
    assert {"file", "database", "webhook", "s3"} <= set(known_sink_types())


def test_an_unknown_type_lists_the_known_ones() -> None:
    """Asking for an unknown type is a LookupError naming every known type."""
    with pytest.raises(LookupError, match=r"known types: .*database.*file"):
        sink_config_class("kafka")


def test_a_plugin_registers_through_the_entry_point_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution declaring mns_consumer.sinks = memory -> ... is found and built like a built-in."""
    dist = tmp_path / "example_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: example-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""
        [mns_consumer.sinks]
        memory = tests.typing.example_sink:MemorySinkConfig
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "memory" in known_sink_types()
    config = parse_sink_config({"type": "memory", "blocked_numbers": ["13900000001"]})
    assert isinstance(config, MemorySinkConfig)
    sink = config.build("mem")
    assert isinstance(sink, Sink)
    result = sink.write([make_receipt(0), make_receipt(1)])
    assert set(result.rejected) == {make_receipt(1).dedupe_key}
    assert "tests.typing.example_sink" in sys.modules


def test_a_plugin_pointing_at_something_else_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point that is not a SinkConfig subclass fails loudly instead of half-working."""
    dist = tmp_path / "bad_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mns_consumer.sinks]\nbad = tests.support.receipts:make_receipt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="not a SinkConfig subclass"):
        sink_config_class("bad")
