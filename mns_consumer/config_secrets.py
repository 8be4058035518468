"""Refusing secrets that are not secret: placeholders, and values too short to resist guessing.

``config.example.yaml`` once fell back to a published push secret that ``check-config`` masked, so
loading stops at the first ``SecretStr`` field (identifiers, ``*_id``, aside) that is a placeholder
(:func:`placeholder_reason`) or shorter than its minimum (:data:`MINIMUM_LENGTHS`). A secret URL's
password and query parameters, and a secret mapping entry's credential, get the placeholder rules only
(their length is someone else's policy). Errors name the rule, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, SecretStr

from mns_consumer.config_yaml import join_key
from mns_consumer.errors import ConfigError
from mns_consumer.observe.redaction import is_secret_key

__all__ = [
    "DEFAULT_MINIMUM_LENGTH",
    "MINIMUM_LENGTHS",
    "PLACEHOLDER_PARTS",
    "PLACEHOLDER_WORDS",
    "check_secrets",
    "placeholder_reason",
]

PLACEHOLDER_WORDS: Final = frozenset(
    {
        # Words that stand in for a value in examples and templates.
        *("changeme", "changeit", "changethis", "replaceme", "placeholder", "example", "sample", "demo"),
        *("test", "testing", "default", "dummy", "fake", "todo", "fixme", "tbd", "none", "null", "nil"),
        *("undefined", "empty", "redacted", "masked", "hidden", "insecure", "unsafe", "notsecret"),
        # The name of the thing instead of the thing.
        *("secret", "secrets", "password", "passwd", "pass", "passphrase", "pwd", "token", "apikey", "key"),
        *("secretkey", "accesskey", "accesskeysecret", "secretaccesskey", "mysecret", "yoursecret"),
        *("supersecret", "topsecret", "sharedsecret", "webhooksecret", "pushsecret", "hooksecret"),
        # Published defaults and the most common passwords.
        *("admin", "root", "guest", "letmein", "qwerty", "abc123", "hunter2", "foobar", "foo", "bar", "baz"),
        *("123456", "12345678", "123456789", "1234567890", "minioadmin", "postgres", "mysql", "mariadb"),
    }
)
"""Whole values that are placeholders, compared in lower case with everything but letters and digits
removed (so ``Change-Me``, ``CHANGE_ME`` and ``change me`` all match ``changeme``)."""

PLACEHOLDER_PARTS: Final = (
    *("changeme", "changeit", "changethis", "replaceme", "placeholder", "example"),
    *("insertyour", "enteryour", "putyour", "fillin"),
)
"""Words that make a value a placeholder wherever they appear in it, compared as above
(``change-me-to-a-long-random-secret``, ``my-example-token``)."""

MINIMUM_LENGTHS: Final[Mapping[str, int]] = {
    # The last segment of the push URL and the webhook HMAC key: random values we ask users to generate.
    "secret": 16,
    # Alibaba issues 30-character AccessKey secrets; a shorter one is cut off or made up.
    "access_key_secret": 16,
    # MinIO's own minimum; AWS issues 40 characters, OSS 30.
    "secret_access_key": 8,
}
"""Minimum length of a secret, characters, by field name."""

DEFAULT_MINIMUM_LENGTH: Final = 8
"""Minimum length of any other secret field (a third-party sink's, say), characters."""

_GENERATE: Final = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
_TEMPLATE: Final = re.compile(r"<[^<>]*>|\{\{.*\}\}|\[\s*(your|insert|enter)\b.*\]")
_YOUR: Final = re.compile(r"your[^a-z0-9]|your(secret|key|password|pass|token|access|api|webhook|push)")


def placeholder_reason(value: str) -> str | None:
    """Why ``value`` is a placeholder rather than a secret, or None; each rule's reason says what it
    catches. A random secret matches none of them except by a chance far below one in a million."""
    lowered = value.strip().lower()
    normalized = re.sub(r"[^a-z0-9]", "", lowered)
    if not normalized:
        return "it has no letters or digits (a masked or blank value?)"
    if len(set(normalized)) == 1:
        return "it is one character repeated"
    if normalized in PLACEHOLDER_WORDS:
        return "it is a placeholder word such as change-me, secret or example"
    part = next((part for part in PLACEHOLDER_PARTS if part in normalized), None)
    if part is not None:
        return f"it contains the placeholder word {part!r}"
    if _YOUR.match(lowered):
        return "it starts with 'your', like a value copied from an example"
    if _TEMPLATE.search(lowered) or "${" in value:
        return "it is a template left unfilled (<...>, {{...}} or ${...})"
    if "xxxxx" in lowered:
        return "it holds a run of x's, like a value copied from an example"
    return None


@dataclass(frozen=True, slots=True)
class _Secret:
    """One secret value found in the configuration and the rule set it is held to."""

    path: str
    value: str
    minimum: int
    part: str = ""


def check_secrets(config: BaseModel, source: str) -> None:
    """Refuse the first secret of a validated configuration (any model) that is a placeholder or too short.

    Raises:
        ConfigError: Naming the key, the rule it broke (never the value) and how to make a real one.
    """
    for secret in _secrets(config, ""):
        reason = placeholder_reason(secret.value) if secret.value else None
        if reason is not None:
            raise ConfigError(
                source,
                secret.path,
                f"{secret.part or 'the value'} is a placeholder, not a secret: {reason}",
                f"set a real value, e.g. from an environment variable written ${{NAME}}; {_GENERATE} makes one",
            )
        if len(secret.value) < secret.minimum:
            raise ConfigError(
                source,
                secret.path,
                f"is shorter than {secret.minimum} characters, too short to be a secret",
                f"use a longer random value; {_GENERATE} makes one",
            )


def _secrets(value: object, path: str, name: str = "") -> Iterator[_Secret]:
    if isinstance(value, BaseModel):
        for field_name in type(value).model_fields:
            yield from _secrets(getattr(value, field_name), join_key(path, field_name), field_name)
    elif isinstance(value, SecretStr) and not name.endswith("_id"):
        text = value.get_secret_value()
        if "://" in text:
            yield from _url_secrets(text, path)
        else:
            yield _Secret(path, text, MINIMUM_LENGTHS.get(name, DEFAULT_MINIMUM_LENGTH))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, SecretStr) and is_secret_key(str(key)):
                # "Bearer <token>", "Basic <base64>": the credential is the last word.
                words = item.get_secret_value().split()
                credential = words[-1] if words else item.get_secret_value()
                yield _Secret(join_key(path, str(key)), credential, 0, "the credential in the value")
            elif not isinstance(item, SecretStr):
                yield from _secrets(item, join_key(path, str(key)), str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _secrets(item, f"{path}[{index}]", name)


def _url_secrets(text: str, path: str) -> Iterator[_Secret]:
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return  # The section's own validator reports a URL that does not parse.
    if password:
        yield _Secret(path, unquote(password), 0, "the URL's password")
    for key, item in parse_qsl(parts.query):
        if is_secret_key(key) or "pass" in key.lower():
            yield _Secret(path, item, 0, f"the URL's {key} parameter")
