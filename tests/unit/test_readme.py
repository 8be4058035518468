"""The README's configuration reference is the one generated from the models, so it cannot drift."""

from __future__ import annotations

from pathlib import Path

from mns_consumer.config_reference import END_MARKER, START_MARKER, readme_block

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_reference_matches_the_models() -> None:
    """Regenerate with `python -m mns_consumer.config_reference` and paste it between the markers."""
    text = README.read_text(encoding="utf-8")
    start = text.index(START_MARKER)
    end = text.index(END_MARKER) + len(END_MARKER)
    assert text[start:end] == readme_block()


def test_every_sink_type_and_section_is_documented() -> None:
    """Each built-in sink type and each section has its own table in the reference."""
    block = readme_block()
    for title in ("`credentials`", "`endpoints`", "`queues[]`", "`dead_letter`"):
        assert f"#### {title}" in block
    for sink_type in ("database", "file", "s3", "webhook"):
        assert f"with `type: {sink_type}`" in block
