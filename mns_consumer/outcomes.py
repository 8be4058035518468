"""What a delivery report's status code means: its outcome class and whether sending again may help.

Carrier codes pass through Alibaba (``err_code``, ``ErrorCode``, ``error_code``); there are hundreds
and carriers add more, so the table is data: :data:`EXACT_CODES`, then the families of
:data:`PREFIX_RULES`, else ``unknown`` (counted and stored, never an error). The normalized status
wins where it is decisive: delivered is ``delivered``, expired ``expired``, a failure whose code
claims success ``unknown``, pending has no class. docs/delivery-status.md lists every code with its
source (Alibaba's receipt error code table; the carriers' CMPP tables for pass-through codes), and a
test keeps that table and this module equal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Final, Literal, TypeAlias, get_args

OutcomeClass: TypeAlias = Literal[
    "delivered", "invalid_number", "powered_off", "blocked", "content_rejected", "carrier_failure", "expired", "unknown"
]
"""Why a delivery report ended as it did (see the module docstring)."""

OUTCOME_CLASSES: Final[tuple[OutcomeClass, ...]] = get_args(OutcomeClass)
"""Every outcome class, in documentation order."""

RETRYABLE: Final[Mapping[OutcomeClass, bool]] = {
    **dict.fromkeys(OUTCOME_CLASSES, False),
    **dict.fromkeys(("powered_off", "carrier_failure", "expired"), True),
}
"""Whether sending the same message to the same number again later may succeed. ``content_rejected`` is
not retryable as it stands (change the content or signature first); ``unknown`` is not, so that an
unexplained failure is looked at before it is repeated."""

_INVALID: Final = "invalid_number"
_OFF: Final = "powered_off"
_BLOCKED: Final = "blocked"
_CONTENT: Final = "content_rejected"
_CARRIER: Final = "carrier_failure"


def _codes(outcome: OutcomeClass, *codes: str) -> dict[str, OutcomeClass]:
    return dict.fromkeys(codes, outcome)


EXACT_CODES: Final[Mapping[str, OutcomeClass]] = {
    # Success spellings: mainland err_code, CMPP stat, international ErrorCode.
    **_codes("delivered", "DELIVERED", "DELIVRD", "SUCCESS"),
    # The CMPP/SMPP final states.
    **_codes(_INVALID, "UNDELIV", "UNDELIVRD"),
    **_codes("expired", "EXPIRED"),
    **_codes(_CONTENT, "REJECTD", "REJECT"),
    **_codes("unknown", "UNKNOWN", "UNKNOW", "SP_UNKNOW_ERROR"),
    # China Mobile SMSC (MK:, MN:, MI:, MC:, MB:, MA:), gateway (ISMG: IA: to ID:) and DSMP (DB:) codes.
    **_codes(_INVALID, "MK:0000", "MK:0001", "MK:0005", "MK:0012", "MK:0013", "MK:0075", "MK00001", "MN:0001"),
    **_codes(_INVALID, "MN:0012", "MN:0022", "MN:0029", "MN:0050", "MN:0054", "MI:0000", "MI:0004", "MI:0005"),
    **_codes(_INVALID, "MI:0011", "MI:0012", "MI:0017", "MI:0020", "MI:0054", "MI:0055", "MI:0059", "MI:0084"),
    **_codes(_INVALID, "MC:0151", "IC:0151", "DB:0101", "DB:0102", "DB:0107"),
    **_codes(_OFF, "MK:0004", "MK:0008", "MK:0010", "MK:0011", "MK:0015", "MK:0017", "MK:0023", "MK:0024", "MK:0029"),
    **_codes(_OFF, "MN:0059", "MI:0013", "MI:0024", "MI:0029", "MC:0055", "MB:1042", "IC:0001"),
    **_codes(_BLOCKED, "MB:1077", "DB:0141", "DB:0142", "DB:0144", "DB:0164"),
    **_codes(_CONTENT, "MK:0014", "MK:0115", "ID:0076", "DB00141"),
    **_codes(_CARRIER, "MK:0020", "MK:0022", "MN:0020", "MN:0052", "MN:0053", "MN:0055", "MN:0075", "MN00001"),
    **_codes(_CARRIER, "MI:0008", "MI:0022", "MI:0036", "MI:0041", "MI:0045", "MI:0081", "MB:1078", "MA:0051"),
    **_codes(_CARRIER, "MA:0054", "IA:0051", "IA:0054", "IA:0073", "IB:0008", "IC:0015", "IC:0055", "IC:0154"),
    **_codes(_CARRIER, "ID:0013", "ID:0070", "DB:0108", "DB:0505"),
    **_codes("expired", "MI00000"),
    **_codes("unknown", "MC:0001"),
    # Alibaba's own receipt codes (mainland "短信发送状态回执错误码"), classed by Alibaba's explanation.
    "MOBILE_NOT_ON_SERVICE": _INVALID,  # suspended, empty, out of service, off or out of coverage: check the number
    "MOBILE_ACCOUNT_ABNORMAL": _INVALID,  # account abnormal, ported, in arrears: send again once the number is fixed
    "INVALID_NUMBER": _INVALID,  # number state abnormal or malformed
    "SP_NOT_BY_INTER_SMS": _INVALID,  # the recipient cannot receive international SMS until the carrier enables it
    "MOBLLE_TERMINAL_ERROR": _OFF,  # (sic) handset: memory or SIM full, illegal device; retry after the handset
    "MOBILE_IN_BLACK": _BLOCKED,  # carrier blacklist, usually the user unsubscribed from this signature
    "USER_REJECT": _BLOCKED,  # the user unsubscribed or never enabled the service: drop them from the list
    "MOBILE_SEND_LIMIT": _BLOCKED,  # per-number daily or monthly limit: sending again is what it refuses
    "CONTENT_KEYWORD": _CONTENT,  # carrier keyword interception
    "CONTENT_ERROR": _CONTENT,  # a marketing message without the unsubscribe text
    "SIGNATURE_BLACKLIST": _CONTENT,  # the signature is blacklisted, not the number
    "PARAMS_ILLEGAL": _CONTENT,  # signature, text or number passed wrongly: fix the request
    "ISV.UNSUPPORTED_CONTENT": _CONTENT,  # traditional characters, emoji, unusual symbols
    "ISV.SMS_CONTENT_MISMATCH_TEMPLATE_TYPE": _CONTENT,  # marketing text through a notification template
    "PORT_NOT_REGISTERED": _CONTENT,  # the sender's port lacks real-name registration with the carrier
    "NO_ROUTE": _CONTENT,  # no channel carries this content (a scenario not supported for now)
    "IS_CLOSE": _CARRIER,  # the channel was shut; Alibaba drops it and advises retrying later
    "SP_UNKNOWN_ERROR": "unknown",  # the carrier reported an unknown error
    "REQUEST_SUCCESS": "unknown",  # accepted, but no carrier report came back (Alibaba: likely the recipient)
    # Blacklists and keyword filters named in words.
    **_codes(_BLOCKED, "MBBLACK", "DBBLACK", "BLACK", "TSBLACK", "TDBLACK", "W-BLACK", "BWLIST", "HD:19"),
    **_codes(_CONTENT, "KEYWORD"),
    **_codes(_CARRIER, "NOROUTE"),
}
"""Codes with a published meaning (upper case)."""

PREFIX_RULES: Final[tuple[tuple[re.Pattern[str], OutcomeClass, str], ...]] = (
    (re.compile(r"BLACK"), _BLOCKED, "any code naming a blacklist (W-BLACK, MBBLACK, ...)"),
    (re.compile(r"KEYWORD"), _CONTENT, "keyword filters"),
    (re.compile(r"^M[KNI]:?\d"), _INVALID, "China Mobile SMSC number results: empty, suspended or unreachable number"),
    (re.compile(r"^LT:?\d"), _INVALID, "China Unicom number results"),
    (re.compile(r"^(?:CA|CB|DA|DB|IA|IB|IC|ID|MA|MB|MC):?\d"), _CARRIER, "China Mobile gateway internal errors"),
)
"""(pattern searched in the upper-cased code, class, what the family is), tried in order after :data:`EXACT_CODES`."""


# Receipts of a burst share a few codes; a hit skips the strip, upper-casing and rule scan.
@lru_cache(maxsize=1024)
def classify_code(code: str | None) -> OutcomeClass:
    """The class of one carrier or platform code alone (exact table, then prefix rules, then unknown).

    Never raises: any text, however odd, has a class.
    """
    if code is None:
        return "unknown"
    key = code.strip().upper()
    exact = EXACT_CODES.get(key)
    if exact is not None:
        return exact
    for pattern, outcome, _ in PREFIX_RULES:
        if pattern.search(key):
            return outcome
    return "unknown"


def classify(status: str | None, code: str | None) -> tuple[OutcomeClass, bool] | None:
    """The outcome class and retryable flag of a delivery report, or None when it has no outcome yet.

    Args:
        status: The normalized status (``delivered``, ``failed``, ``expired``, ``pending``).
        code: The carrier or platform code as received (``err_code``, ``ErrorCode``, ``error_code``).

    Returns:
        ``(class, retryable)``; None for ``pending`` (and any status that is not a final outcome).
    """
    outcome: OutcomeClass
    if status == "delivered":
        outcome = "delivered"
    elif status == "expired":
        outcome = "expired"
    elif status == "failed":
        outcome = classify_code(code)
        if outcome == "delivered":
            # A failure whose code says success: the report contradicts itself.
            outcome = "unknown"
    else:
        return None
    return outcome, RETRYABLE[outcome]
