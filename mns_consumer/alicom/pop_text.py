"""What the POP API callers share without loading Alibaba's Tea SDK: the Beijing zone and log-safe text.

Kept apart from :mod:`mns_consumer.alicom.tea` so that the daemon, which fetches its queue tokens in a
child process (:mod:`mns_consumer.alicom.token_process`), can read times and word errors without
importing the SDK.
"""

from __future__ import annotations

import re
from datetime import timedelta, timezone
from typing import Final

BEIJING: Final = timezone(timedelta(hours=8), "Asia/Shanghai")
"""The zone of the POP APIs' times without an offset (ExpireTime, SendDate) and of their calendar days."""

_MAX_MESSAGE_CHARS = 300
_QUERY_STRING = re.compile(r"\?[^\s'\")]*")
_STRING_TO_SIGN = re.compile(r"string[ -]?to[ -]?sign", re.IGNORECASE)


def safe_text(value: object) -> str:
    """Text from an SDK or server message that is fit for an exception: short, no query, no string-to-sign."""
    text = str(value)
    match = _STRING_TO_SIGN.search(text)
    if match:
        text = text[: match.start()].rstrip() + " [string-to-sign removed]"
    text = _QUERY_STRING.sub("?...", text)
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."
