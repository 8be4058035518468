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
    "delivered": False,
    "invalid_number": False,
    "powered_off": True,
    "blocked": False,
    "content_rejected": False,
    "carrier_failure": True,
    "expired": True,
    "unknown": False,
}
"""Whether sending the same message to the same number again later may succeed. ``content_rejected`` is
not retryable as it stands (change the content or signature first); ``unknown`` is not, so that an
unexplained failure is looked at before it is repeated."""

_INVALID: Final = "invalid_number"
_OFF: Final = "powered_off"
_BLOCKED: Final = "blocked"
_CONTENT: Final = "content_rejected"
_CARRIER: Final = "carrier_failure"

EXACT_CODES: Final[Mapping[str, OutcomeClass]] = {
    # Success spellings: mainland err_code, CMPP stat, international ErrorCode.
    "DELIVERED": "delivered",
    "DELIVRD": "delivered",
    "SUCCESS": "delivered",
    # The CMPP/SMPP final states.
    "UNDELIV": _INVALID,
    "UNDELIVRD": _INVALID,
    "EXPIRED": "expired",
    "REJECTD": _CONTENT,
    "REJECT": _CONTENT,
    "UNKNOWN": "unknown",
    "UNKNOW": "unknown",
    "SP_UNKNOW_ERROR": "unknown",
    # China Mobile MK: (SMSC final results).
    "MK:0000": _INVALID,
    "MK:0001": _INVALID,
    "MK:0004": _OFF,
    "MK:0005": _INVALID,
    "MK:0008": _OFF,
    "MK:0010": _OFF,
    "MK:0011": _OFF,
    "MK:0012": _INVALID,
    "MK:0013": _INVALID,
    "MK:0014": _CONTENT,
    "MK:0015": _OFF,
    "MK:0017": _OFF,
    "MK:0020": _CARRIER,
    "MK:0022": _CARRIER,
    "MK:0023": _OFF,
    "MK:0024": _OFF,
    "MK:0029": _OFF,
    "MK:0075": _INVALID,
    "MK:0115": _CONTENT,
    "MK00001": _INVALID,
    # China Mobile MN: (SMSC results).
    "MN:0001": _INVALID,
    "MN:0012": _INVALID,
    "MN:0020": _CARRIER,
    "MN:0022": _INVALID,
    "MN:0029": _INVALID,
    "MN:0050": _INVALID,
    "MN:0052": _CARRIER,
    "MN:0053": _CARRIER,
    "MN:0054": _INVALID,
    "MN:0055": _CARRIER,
    "MN:0059": _OFF,
    "MN:0075": _CARRIER,
    "MN00001": _CARRIER,
    # China Mobile MI: (SMSC results).
    "MI:0000": _INVALID,
    "MI:0004": _INVALID,
    "MI:0005": _INVALID,
    "MI:0008": _CARRIER,
    "MI:0011": _INVALID,
    "MI:0012": _INVALID,
    "MI:0013": _OFF,
    "MI:0017": _INVALID,
    "MI:0020": _INVALID,
    "MI:0022": _CARRIER,
    "MI:0024": _OFF,
    "MI:0029": _OFF,
    "MI:0036": _CARRIER,
    "MI:0041": _CARRIER,
    "MI:0045": _CARRIER,
    "MI:0054": _INVALID,
    "MI:0055": _INVALID,
    "MI:0059": _INVALID,
    "MI:0081": _CARRIER,
    "MI:0084": _INVALID,
    "MI00000": "expired",
    # China Mobile MC:/MB:/MA: (SMSC).
    "MC:0001": "unknown",
    "MC:0055": _OFF,
    "MC:0151": _INVALID,
    "MB:1042": _OFF,
    "MB:1077": _BLOCKED,
    "MB:1078": _CARRIER,
    "MA:0051": _CARRIER,
    "MA:0054": _CARRIER,
    # China Mobile gateway (ISMG) codes.
    "IA:0051": _CARRIER,
    "IA:0054": _CARRIER,
    "IA:0073": _CARRIER,
    "IB:0008": _CARRIER,
    "IC:0001": _OFF,
    "IC:0015": _CARRIER,
    "IC:0055": _CARRIER,
    "IC:0151": _INVALID,
    "IC:0154": _CARRIER,
    "ID:0013": _CARRIER,
    "ID:0070": _CARRIER,
    "ID:0076": _CONTENT,
    # China Mobile DSMP codes.
    "DB:0101": _INVALID,
    "DB:0102": _INVALID,
    "DB:0107": _INVALID,
    "DB:0108": _CARRIER,
    "DB:0141": _BLOCKED,
    "DB:0142": _BLOCKED,
    "DB:0144": _BLOCKED,
    "DB:0164": _BLOCKED,
    "DB:0505": _CARRIER,
    "DB00141": _CONTENT,
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
    "MBBLACK": _BLOCKED,
    "DBBLACK": _BLOCKED,
    "BLACK": _BLOCKED,
    "TSBLACK": _BLOCKED,
    "TDBLACK": _BLOCKED,
    "W-BLACK": _BLOCKED,
    "BWLIST": _BLOCKED,
    "HD:19": _BLOCKED,
    "KEYWORD": _CONTENT,
    "NOROUTE": _CARRIER,
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
