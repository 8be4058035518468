"""Look for secret values in captured output, in every shape a leak could take.

A secret rarely leaks verbatim only: an ``Authorization`` header carries it base64-encoded, a URL
percent-encodes it, and an HTTP peer echoes it lower- or upper-cased. :func:`secret_forms` lists
those shapes; :func:`find_leaks` reports which shape of which secret appears in which output.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

MIN_FRAGMENT_CHARS = 12
"""Shortest base64 fragment looked for (shorter ones could match by chance)."""


@dataclass(frozen=True)
class Leak:
    """One secret found in one output."""

    output: str
    secret: str
    form: str
    context: str

    def __str__(self) -> str:
        return f"{self.secret} ({self.form}) in {self.output}: ...{self.context}..."


def _base64_fragments(value: bytes) -> dict[str, str]:
    """The characters of ``value``'s base64 that do not depend on what surrounds it.

    Embedded in a longer string, the value's encoding depends on its offset modulo 3 and on the
    bytes around it, so for each offset only the characters made of the value's own bits are kept.
    """
    fragments: dict[str, str] = {}
    for offset in range(3):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            encoded = encode(b"\0" * offset + value).decode("ascii")
            first = -(-offset * 8 // 6)  # characters holding bits of the prefix
            whole_groups = (offset + len(value)) // 3 * 4  # characters not touched by the padding
            fragment = encoded[first:whole_groups]
            if len(fragment) >= MIN_FRAGMENT_CHARS:
                fragments[f"{name}@{offset}"] = fragment
    return fragments


def secret_forms(secret: str) -> dict[str, str]:
    """Every shape of ``secret`` to look for: plain, case-changed, URL-encoded and base64."""
    forms = {
        "plain": secret,
        "lower-case": secret.lower(),
        "upper-case": secret.upper(),
        "url-encoded": quote(secret, safe=""),
        "form-encoded": quote_plus(secret, safe=""),
    }
    forms.update(_base64_fragments(secret.encode("utf-8")))
    return forms


def find_leaks(outputs: Mapping[str, str], secrets: Mapping[str, str]) -> list[Leak]:
    """Every (output, secret, form) where the form appears in the output.

    Args:
        outputs: Output name -> captured text.
        secrets: Secret name -> value.
    """
    leaks: list[Leak] = []
    for output, text in outputs.items():
        for secret_name, value in secrets.items():
            for form, needle in secret_forms(value).items():
                at = text.find(needle)
                if at >= 0:
                    context = text[max(0, at - 80) : at + len(needle) + 40].replace("\n", "\\n")
                    leaks.append(Leak(output, secret_name, form, context))
                    break
    return leaks
