"""Masking secrets and phone numbers in log events and in free text that leaves the process.

The log pipeline runs :func:`redact_secrets` and :func:`mask_phone_numbers` on every event; error
texts, dead-letter reasons and webhook answers go through :func:`redact_text`. This is the last line
of defence, not the first: code must not log secrets at all.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from structlog.typing import EventDict, WrappedLogger

__all__ = [
    "MASK",
    "NOT_SECRET_KEYS",
    "PHONE_KEYS",
    "is_secret_key",
    "mask_phone_number",
    "mask_phone_numbers",
    "redact_secrets",
    "redact_text",
    "scrub_text",
]

MASK: Final = "**********"
"""What a secret is replaced with (the same mask ``Config.masked()`` shows)."""

_SECRET_WORDS: Final = (
    *("secret", "token", "password", "passwd", "signature", "authorization", "credential"),
    *("accesskeysecret", "securitytoken", "apikey", "cookie", "privatekey"),
)

NOT_SECRET_KEYS: Final = frozenset(
    {
        *("token_expires_at", "token_expire_time", "token_seconds_to_expiry", "token_ttl_seconds"),
        *("token_refresh_margin_seconds", "signature_method", "signature_version", "signature_nonce"),
        *("credential_source", "credentials_source", "credentials_provider"),
    }
)
"""Key names that contain a secret word but hold no secret; compared as :func:`is_secret_key` does."""

PHONE_KEYS: Final = frozenset(
    {"phone_number", "phone_numbers", "phone", "mobile", "to", "PhoneNumber", "PhoneNumbers", "PhoneNum"}
)
"""Key names whose values :func:`mask_phone_numbers` masks, at any nesting level."""

_AUTH_HEADERS: Final = frozenset({"authorization", "proxyauthorization", "cookie", "setcookie"})
_MAX_DEPTH: Final = 16
_MIN_DIGITS_SHOWN_IN_PART: Final = 11


def _normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_NOT_SECRET_NORMALIZED: Final = frozenset(_normalize(name) for name in NOT_SECRET_KEYS)
_PHONE_NORMALIZED: Final = frozenset(_normalize(name) for name in PHONE_KEYS)


@functools.lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether a key (of an event, a mapping, a header or a parameter) names a secret value.

    Compared without case or separators (``security_token``, ``x-acs-security-token``): a name holding
    a word of ``_SECRET_WORDS`` is secret unless it is in :data:`NOT_SECRET_KEYS`.
    """
    return _normalize(name) not in _NOT_SECRET_NORMALIZED and _holds_secret_word(name)


def _holds_secret_word(text: str) -> bool:
    normalized = _normalize(text)
    return any(word in normalized for word in _SECRET_WORDS)


# "Authorization: MNS id:sig", "Cookie: a=b; c=d": everything after the scheme to the end of the line.
_AUTH_PATTERN: Final = re.compile(
    r"(?i)\b((?:proxy-)?authorization|(?:set-)?cookie)(['\"]?[ \t]*[:=][ \t]*['\"]?)"
    r"(?:([a-z][a-z0-9-]*)[ \t]+(?=[^\s'\"]))?[^\r\n'\"]+"
)
_URL_PASSWORD_PATTERN: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:?#]*:)[^\s/@?#]+(@)")
# "'security_token': 'abc'" and '"AccessKeySecret": "abc"' (dict reprs, JSON bodies in messages).
_QUOTED_PAIR_PATTERN: Final = re.compile(r"""(["'])([\w.-]+)\1([ \t]*:[ \t]*)(["'])((?:\\.|(?!\4).)*)\4""")
# Only hyphenated names count as headers, so prose such as "secret: required key is missing" stays.
_HEADER_PATTERN: Final = re.compile(r"(?i)\b([a-z0-9]+(?:-[a-z0-9]+)+)([ \t]*:[ \t]*)([^\s'\",;]+)")
_ASSIGNMENT_PATTERN: Final = re.compile(r"""(?<![\w.-])([\w.-]+)=(['"]?)([^\s'"&,;<>]+)""")


def _auth_replacement(match: re.Match[str]) -> str:
    scheme = match.group(3)
    return f"{match.group(1)}{match.group(2)}{scheme + ' ' if scheme else ''}{MASK}"


def _quoted_pair_replacement(match: re.Match[str]) -> str:
    if not match.group(5) or match.group(5).endswith(MASK) or not is_secret_key(match.group(2)):
        return match.group(0)
    quote, name, separator, value_quote = match.group(1, 2, 3, 4)
    return f"{quote}{name}{quote}{separator}{value_quote}{MASK}{value_quote}"


def _header_replacement(match: re.Match[str]) -> str:
    name = match.group(1)
    if _normalize(name) in _AUTH_HEADERS or not is_secret_key(name):
        return match.group(0)
    return f"{name}{match.group(2)}{MASK}"


def _assignment_replacement(match: re.Match[str]) -> str:
    if not is_secret_key(match.group(1)):
        return match.group(0)
    return f"{match.group(1)}={match.group(2)}{MASK}"


def scrub_text(text: str) -> str:
    """Mask secret-looking values inside free text (messages, exception text, URLs) with :data:`MASK`.

    Masked: ``Authorization:``/``Cookie:`` values (an auth scheme such as ``MNS`` is kept), hyphenated
    secret headers (``x-acs-security-token``), ``name=value`` and quoted ``"name": "value"`` pairs with
    secret names (``Signature=``), and URL passwords (``user:password@``).
    """
    # A cheap test first: every pattern needs ":" or "=", and all but the URL password a secret name.
    url_password = "@" in text and "://" in text
    if (":" not in text and "=" not in text) or not (url_password or _holds_secret_word(text)):
        return text
    text = _AUTH_PATTERN.sub(_auth_replacement, text)
    text = _URL_PASSWORD_PATTERN.sub(rf"\1{MASK}\2", text)
    text = _QUOTED_PAIR_PATTERN.sub(_quoted_pair_replacement, text)
    text = _HEADER_PATTERN.sub(_header_replacement, text)
    return _ASSIGNMENT_PATTERN.sub(_assignment_replacement, text)


# A phone number inside free text: a run of 7 or more digits (an optional + before it), or the spaced
# or hyphenated forms 139 1234 5678 and +86 139-1234-5678. Groups of two digits (dates, times) never match.
_PHONE_IN_TEXT: Final = re.compile(r"(?<![\w+])(?:\+?\d{7,}|(?:\+\d{1,3}[ -])?\d{3,4}[ -]\d{3,4}[ -]\d{4})(?!\w)")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask secrets and phone numbers in free text that leaves the process: error texts, dead-letter reasons.

    Text we did not write (a webhook receiver's error body) holds secrets and numbers under no key, so
    beyond :func:`scrub_text` each of ``secrets`` (known values, e.g. a sink's HMAC key) is masked in any
    letter case (receivers echo headers re-cased), and phone numbers are masked as ``139****5678``.
    """
    for secret in secrets:
        if secret:
            text = re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    text = scrub_text(text)
    return _PHONE_IN_TEXT.sub(lambda match: mask_phone_number(match.group()), text)


def _walk(value: Any, on_key: Callable[[str, Any], Any | None], on_text: Callable[[str], str], depth: int) -> Any:
    """Rebuild ``value`` with ``on_key`` applied to mapping items and ``on_text`` to strings (copies:
    the containers may belong to the caller)."""
    if isinstance(value, str):
        return on_text(value)
    if depth > _MAX_DEPTH and isinstance(value, Mapping | list | tuple | set | frozenset):
        return "<nested too deep to redact>"
    if isinstance(value, Mapping):
        rebuilt: dict[Any, Any] = {}
        for key, item in value.items():
            replaced = on_key(str(key), item)
            rebuilt[key] = _walk(item, on_key, on_text, depth + 1) if replaced is None else replaced
        return rebuilt
    if isinstance(value, tuple):
        return tuple(_walk(item, on_key, on_text, depth + 1) for item in value)
    if isinstance(value, list | set | frozenset):
        return [_walk(item, on_key, on_text, depth + 1) for item in value]
    return value


def _secret_value(key: str, value: Any) -> Any | None:
    # None, booleans and "" cannot carry a secret, and masking them would claim one is set.
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value) or not is_secret_key(key):
        return None
    return MASK


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: mask the values of secret keys (:func:`is_secret_key`) at any nesting level, and
    :func:`scrub_text` every other string. None, booleans and "" are kept: they hold no secret."""
    redacted: EventDict = _walk(event_dict, _secret_value, scrub_text, 0)
    return redacted


def mask_phone_number(value: str) -> str:
    """Mask all digits of a phone number but the first 3 and the last 4: ``139****1111``.

    Numbers under 11 digits (which would hide fewer than 4) are masked entirely; comma-separated lists
    (SendSms ``PhoneNumbers``) number by number; a value without digits is returned unchanged.
    """
    if "," in value:
        return ",".join(mask_phone_number(part) for part in value.split(","))
    digits = sum(character.isdigit() for character in value)
    if digits == 0:
        return value
    partial = digits >= _MIN_DIGITS_SHOWN_IN_PART
    masked: list[str] = []
    index = 0
    for character in value:
        if character.isdigit():
            shown = partial and (index < 3 or index >= digits - 4)
            masked.append(character if shown else "*")
            index += 1
        else:
            masked.append(character if partial else "*")
    return "".join(masked)


def _masked_phone(value: Any) -> Any | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return mask_phone_number(str(value))
    return None


def _phone_value(key: str, value: Any) -> Any | None:
    if _normalize(key) not in _PHONE_NORMALIZED:
        return None
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked_phone(item) or item for item in value]
    return _masked_phone(value)


def mask_phone_numbers(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: :func:`mask_phone_number` the values of :data:`PHONE_KEYS` at any nesting level.

    Numbers inside free text (an SMS reply's content) are not searched for.
    """
    masked: EventDict = _walk(event_dict, _phone_value, str, 0)
    return masked
