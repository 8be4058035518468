"""docs/configuration.md's reference is the one generated from the models, so it cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from mns_consumer.config_reference import END_MARKER, START_MARKER, main, marked_block, replace_block

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_docs_configuration_reference_matches_the_models() -> None:
    """Regenerate with `python -m mns_consumer.config_reference --write docs/configuration.md`."""
    text = PAGE.read_text(encoding="utf-8")
    start = text.index(START_MARKER)
    end = text.index(END_MARKER) + len(END_MARKER)
    assert text[start:end] == marked_block()


def test_every_sink_type_and_section_is_documented() -> None:
    """Each built-in sink type and each section has its own table in the reference."""
    block = marked_block()
    for title in ("`credentials`", "`endpoints`", "`queues[]`", "`dead_letter`"):
        assert f"### {title}" in block
    for sink_type in ("database", "file", "s3", "webhook"):
        assert f"with `type: {sink_type}`" in block


def test_write_replaces_only_the_text_between_the_markers(tmp_path: Path) -> None:
    """`--write PAGE` regenerates a stale reference and keeps the prose around it."""
    page = tmp_path / "configuration.md"
    page.write_text(f"# Before\n\n{START_MARKER}\nstale table\n{END_MARKER}\n\nAfter.\n", encoding="utf-8")
    assert main(["--write", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == f"# Before\n\n{marked_block()}\n\nAfter.\n"


def test_a_page_without_the_markers_is_an_error() -> None:
    """A page that lost its markers is not silently left stale."""
    with pytest.raises(ValueError, match="substring not found"):
        replace_block("# Configuration\n")
