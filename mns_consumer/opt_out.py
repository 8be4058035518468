"""Recognise an SmsUp reply that asks to stop receiving messages (退订, TD, STOP, ...).

A reply is an opt-out when, after NFKC (full-width to half-width), case folding and trimming whitespace
and punctuation, it *is* one of the keywords or matches the configured pattern in full: a whole-message
match keeps short keywords like ``T`` and ``N`` from flagging ``TD please call me``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_KEYWORDS: Final[tuple[str, ...]] = ("TD", "T", "N", "R", "退订", "取消", "STOP", "UNSUBSCRIBE")
"""The unsubscribe keywords used when the configuration names none."""


def normalize_reply(text: str) -> str:
    """A reply as compared: NFKC, case-folded, without whitespace or punctuation at either end."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    start, end = 0, len(folded)
    while start < end and _is_trimmed(folded[start]):
        start += 1
    while end > start and _is_trimmed(folded[end - 1]):
        end -= 1
    return folded[start:end]


def _is_trimmed(char: str) -> bool:
    # Unicode categories Z* (separators), P* (punctuation), C* (controls, e.g. newlines).
    return char.isspace() or unicodedata.category(char)[0] in "ZPC"


class OptOutMatcher:
    """Tells whether a reply's content is an opt-out; immutable and thread-safe.

    Args:
        keywords: Whole-message keywords, compared after :func:`normalize_reply` of both sides.
        pattern: A regular expression the normalized reply must match in full (``re.fullmatch``), or None.
    """

    def __init__(self, keywords: Iterable[str] = DEFAULT_KEYWORDS, pattern: str | None = None) -> None:
        self.keywords = frozenset(normalized for keyword in keywords if (normalized := normalize_reply(keyword)))
        self.pattern = re.compile(pattern) if pattern else None

    def __call__(self, content: str | None) -> bool:
        """True when ``content`` is an opt-out reply; False for None or anything else."""
        reply = normalize_reply(content) if content else ""
        if reply in self.keywords:  # never empty
            return True
        return bool(reply) and self.pattern is not None and self.pattern.fullmatch(reply) is not None


DEFAULT_MATCHER: Final = OptOutMatcher()
"""The matcher with :data:`DEFAULT_KEYWORDS`, used where no configuration is at hand (decoding)."""


class OptOutConfig(BaseModel):
    """The ``opt_out`` section: which SmsUp replies are flagged ``opt_out: true``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keywords: list[str] = Field(
        default_factory=lambda: list(DEFAULT_KEYWORDS),
        description="Whole-reply unsubscribe keywords, compared after NFKC, case folding and trimming whitespace "
        "and punctuation; default TD, T, N, R, 退订, 取消, STOP, UNSUBSCRIBE. An empty list leaves only `pattern`.",
    )
    pattern: str | None = Field(
        None,
        description="Regular expression (Python syntax) a normalized reply must match in full to be an opt-out, "
        "besides the keywords; default none.",
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"is not a valid regular expression: {exc}") from None
        return value

    def matcher(self) -> OptOutMatcher:
        """The matcher these settings describe."""
        return OptOutMatcher(self.keywords, self.pattern)
