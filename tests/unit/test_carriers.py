"""The mainland carrier of a number's segment (MIIT allocation as of March 2023)."""

from __future__ import annotations

import pytest

from mns_consumer.carriers import SEGMENTS, carrier_of


@pytest.mark.parametrize(
    ("number", "carrier"),
    [
        ("13412345678", "china_mobile"),
        ("13912345678", "china_mobile"),
        ("14712345678", "china_mobile"),
        ("15012345678", "china_mobile"),
        ("17812345678", "china_mobile"),
        ("18212345678", "china_mobile"),
        ("19512345678", "china_mobile"),
        ("19712345678", "china_mobile"),
        ("19812345678", "china_mobile"),
        ("17031234567", "china_mobile"),
        ("13012345678", "china_unicom"),
        ("16612345678", "china_unicom"),
        ("17041234567", "china_unicom"),
        ("18612345678", "china_unicom"),
        ("19612345678", "china_unicom"),
        ("13312345678", "china_telecom"),
        ("17001234567", "china_telecom"),
        ("18912345678", "china_telecom"),
        ("19912345678", "china_telecom"),
        ("19212345678", "china_broadnet"),
        ("+8619212345678", "china_broadnet"),
        ("008613912345678", "china_mobile"),
        ("8613012345678", "china_unicom"),
        ("139 1234 5678", "china_mobile"),
    ],
)
def test_a_mainland_number_maps_to_the_carrier_of_its_segment(number: str, carrier: str) -> None:
    """Three-digit segments, and four digits where a segment is split (134, 170)."""
    assert carrier_of(number) == carrier


@pytest.mark.parametrize(
    "number",
    ["13491234567", "17401234567", "16191234567", "6591234567", "1391234567", "23912345678", "", None, "1391234567x"],
)
def test_satellite_foreign_and_malformed_numbers_are_other(number: str | None) -> None:
    """Satellite segments (1349, 174x), other holders, foreign and malformed numbers read ``other``."""
    assert carrier_of(number) == "other"


def test_every_segment_in_the_table_maps_to_its_carrier() -> None:
    """No table entry is shadowed: a number in each segment maps to that segment's carrier."""
    for prefix, carrier in SEGMENTS.items():
        assert carrier_of(prefix + "0" * (11 - len(prefix))) == carrier, prefix
