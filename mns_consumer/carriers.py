"""Which mainland carrier a number's segment was allocated to: China Mobile, Unicom, Telecom, Broadnet.

The table is MIIT's allocation of mobile number segments as of 2023-03-31 ("我国公众移动通信网网号及H0分配
情况"). Virtual network segments count for the carrier they resell; satellite and other holders, and
anything but an 11-digit mainland mobile number, are ``other``. A ported number (携号转网) keeps its
segment, so this is the allocating carrier; new segments read ``other`` until the table learns them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, TypeAlias

Carrier: TypeAlias = Literal["china_mobile", "china_unicom", "china_telecom", "china_broadnet", "other"]

_MOBILE: Final = "china_mobile"
_UNICOM: Final = "china_unicom"
_TELECOM: Final = "china_telecom"
_BROADNET: Final = "china_broadnet"


def _segments(carrier: Carrier, *prefixes: str) -> dict[str, Carrier]:
    return dict.fromkeys(prefixes, carrier)


SEGMENTS: Final[Mapping[str, Carrier]] = {
    **_segments(_MOBILE, *(f"134{d}" for d in "012345678"), "135", "136", "137", "138", "139", "147", "148"),
    **_segments(_MOBILE, "150", "151", "152", "157", "158", "159", "165", "1703", "1705", "1706", "172", "178"),
    **_segments(_MOBILE, "182", "183", "184", "187", "188", "195", "197", "198"),
    **_segments(_UNICOM, "130", "131", "132", "145", "146", "155", "156", "166", "167", "1704", "1707", "1708"),
    **_segments(_UNICOM, "1709", "171", "175", "176", "185", "186", "196"),
    **_segments(_TELECOM, "133", "149", "153", "162", "1700", "1701", "1702", "173", "177", "180", "181", "189"),
    **_segments(_TELECOM, "190", "191", "193", "199"),
    **_segments(_BROADNET, "192"),
}
"""Number prefix (3 or 4 digits) -> carrier; the 4-digit entries split a 3-digit segment."""


def carrier_of(phone_number: str | None) -> Carrier:
    """The carrier a mainland mobile number's segment belongs to, or ``other``."""
    if not phone_number:
        return "other"
    digits = phone_number.strip().replace(" ", "").replace("-", "")
    for country in ("+86", "0086", "86"):
        if digits.startswith(country) and len(digits) == len(country) + 11:
            digits = digits[len(country) :]
            break
    if len(digits) != 11 or not digits.isascii() or not digits.isdigit() or digits[0] != "1":
        return "other"
    return SEGMENTS.get(digits[:4]) or SEGMENTS.get(digits[:3]) or "other"
