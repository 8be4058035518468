"""The one normalized receipt every path produces (MNS, HTTP push, backfill) and every sink consumes.

Decoders live in :mod:`mns_consumer.receipts`; this module holds only the value type and its JSON
form, so sinks depend on nothing but the shape.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Any, Final, Literal, TypeAlias

from mns_consumer.outcomes import OutcomeClass

Source: TypeAlias = Literal["mns", "push", "query"]
"""Where a receipt came from: an MNS queue, an HTTP batch push, or a QuerySendDetails backfill."""

Kind: TypeAlias = Literal[
    "delivery_report", "reply", "sign_review", "template_review", "card_render", "card_template_review"
]
"""What a receipt is about, independent of its MessageType's wire format."""

Status: TypeAlias = Literal[
    "delivered", "failed", "expired", "pending", "approving", "approved", "rejected", "received", "rendered"
]
"""The normalized outcome: delivered/failed/expired (reports; pending while QuerySendDetails waits),
approving/approved/rejected (reviews), received (replies), rendered (card render results)."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A decoded, normalized receipt.

    Attributes:
        message_type: The Alibaba MessageType it was received as (``SmsReport``, ``SmsUp``, ...).
        queue: The MNS queue (or push route) it came from; None for backfill.
        dedupe_key: Stable identity: equal for duplicates of the same receipt, different otherwise.
        phone_number: The recipient (reports) or sender (replies), as Alibaba wrote it.
        error_code: Carrier or platform code (``DELIVERED`` on success for mainland reports).
        sent_at: When the message was handed to the carrier (or the reply was sent), timezone-aware.
        reported_at: When the carrier reported (or the review completed), timezone-aware.
        content: Reply text (SmsUp) or template content.
        reason: Review reason or rejection text.
        extra: Every field of the body not mapped above, as received.
        raw: The body exactly as received.
        outcome_class: Why a delivery report ended as it did (:mod:`mns_consumer.outcomes`); None for
            other kinds and for ``pending`` records.
        retryable: Whether sending again later may succeed; None where ``outcome_class`` is.
        opt_out: For replies (SmsUp), whether the content is an unsubscribe keyword
            (:mod:`mns_consumer.opt_out`); None for other kinds.
    """

    kind: Kind
    message_type: str
    source: Source
    dedupe_key: str
    raw: bytes
    queue: str | None = None
    phone_number: str | None = None
    biz_id: str | None = None
    out_id: str | None = None
    status: Status | None = None
    error_code: str | None = None
    error_message: str | None = None
    sent_at: datetime | None = None
    reported_at: datetime | None = None
    sms_parts: int | None = None
    content: str | None = None
    sign_name: str | None = None
    template_code: str | None = None
    reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    outcome_class: OutcomeClass | None = None
    retryable: bool | None = None
    opt_out: bool | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The receipt as JSON-ready data: ISO 8601 times with offsets, raw as text when it is UTF-8.

        A raw body that is not valid UTF-8 is given as ``raw_base64`` instead of ``raw``.
        """
        data = dict(zip(_JSON_KEYS, _json_values(self), strict=True))
        data.update(sent_at=_isoformat(self.sent_at), reported_at=_isoformat(self.reported_at), extra=dict(self.extra))
        try:
            data["raw"] = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            data["raw_base64"] = base64.b64encode(self.raw).decode("ascii")
        return data

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Receipt:
        """Rebuild a receipt from :meth:`to_json_dict` output (file sinks, replays, tests).

        Raises:
            KeyError: If a required key is missing.
            ValueError: If a time is not ISO 8601.
        """
        raw = data["raw"].encode("utf-8") if "raw" in data else base64.b64decode(data["raw_base64"])
        values: dict[str, Any] = {name: data.get(name) for name in _OPTIONAL_FIELDS}
        values["sent_at"], values["reported_at"] = _parse_iso(values["sent_at"]), _parse_iso(values["reported_at"])
        values["extra"] = dict(values["extra"] or {})
        return cls(data["kind"], data["message_type"], data["source"], data["dedupe_key"], raw, **values)


_JSON_KEYS: Final = (
    "dedupe_key",
    *(item.name for item in fields(Receipt) if item.name not in {"dedupe_key", "raw", "extra"}),
    "extra",
)
"""The keys of :meth:`Receipt.to_json_dict`, in its order (``raw`` or ``raw_base64`` follows)."""
_json_values: Final = attrgetter(*_JSON_KEYS)
_OPTIONAL_FIELDS: Final = tuple(
    item.name for item in fields(Receipt) if item.default is not MISSING or item.default_factory is not MISSING
)


def _isoformat(value: datetime | None) -> str | None:
    return _remembered_isoformat(value, value.utcoffset()) if value else None


# Keyed by the instant and its offset, which together fix the text (equal datetimes may differ in
# offset): a burst of receipts shares a few seconds, and a hit is cheaper than formatting.
@lru_cache(maxsize=256)
def _remembered_isoformat(value: datetime, offset: timedelta | None) -> str:
    return value.isoformat()


def _parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
