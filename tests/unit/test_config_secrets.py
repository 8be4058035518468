"""Secrets have no public default: placeholders and too-short values stop loading, naming the key."""

from __future__ import annotations

import random
import string
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from mns_consumer.config import load_config
from mns_consumer.config_secrets import placeholder_reason
from mns_consumer.errors import ConfigError

GOOD = "Qm7-Vx2Lp9Kd4Rt8Wz3"
"""A secret long enough for every key and matching no placeholder rule."""


def base(tmp_path: Path) -> dict[str, Any]:
    return {
        "credentials": {"access_key_id": "LTAI-id", "access_key_secret": GOOD},
        "queues": [{"message_type": "SmsReport", "queue_name": "q1", "sinks": ["hook"]}],
        "sinks": {"hook": {"type": "webhook", "url": "https://example.com/hook", "secret": GOOD}},
        "dead_letter": {"type": "file", "path": str(tmp_path / "dead.jsonl")},
        "push": {
            "listen": "127.0.0.1:0",
            "spool_path": str(tmp_path / "spool.db"),
            "routes": [{"path": "/alicom/SmsReport", "secret": GOOD, "message_type": "SmsReport", "sinks": ["hook"]}],
        },
    }


def error_of(tmp_path: Path, data: dict[str, Any]) -> ConfigError:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


@pytest.mark.parametrize(
    "value",
    [
        "change-me",
        "change-me-to-a-long-random-secret",
        "CHANGE_ME_PLEASE_0123",
        "changeme",
        "secret",
        "Password",
        "example-push-secret-42",
        "your-access-key-secret",
        "YourSecretHere1234567",
        "<push-secret>",
        "{{ push_secret }}",
        "${PUSH_SECRET}",
        "xxxxxxxxxxxxxxxxxxxx",
        "sk-live-xxxxxxxxxxxx",
        "**********",
        "0000000000000000",
        "minioadmin",
        "12345678",
    ],
)
def test_placeholders_are_recognised(value: str) -> None:
    """Each documented placeholder form is refused."""
    assert placeholder_reason(value) is not None


def test_random_secrets_are_never_placeholders() -> None:
    """Generated secrets of every length users would make pass (a fixed seed keeps this deterministic)."""
    alphabet = string.ascii_letters + string.digits + "-_"
    chooser = random.Random(20261207)
    generated = ["".join(chooser.choice(alphabet) for _ in range(length)) for length in (16, 24, 32, 43) * 2500]
    assert [value for value in generated if placeholder_reason(value) is not None] == []


@pytest.mark.parametrize(
    ("edit", "key_path", "value"),
    [
        (
            lambda d: d["push"]["routes"][0].update(secret="change-me-to-a-long-random-secret"),
            "push.routes[0].secret",
            "change-me-to-a-long-random-secret",
        ),
        (lambda d: d["sinks"]["hook"].update(secret="change-me-7f"), "sinks.hook.secret", "change-me-7f"),
        (
            lambda d: d["sinks"]["hook"].update(headers={"Authorization": "Bearer <token-7f>"}),
            "sinks.hook.headers.Authorization",
            "<token-7f>",
        ),
        (
            lambda d: d["credentials"].update(access_key_secret="your-access-key-secret"),
            "credentials.access_key_secret",
            "your-access-key-secret",
        ),
        (
            lambda d: d["sinks"].update(db={"type": "database", "url": "postgresql+psycopg://mns:change-me-7f@db/r"}),
            "sinks.db.url",
            "change-me-7f",
        ),
        (
            lambda d: d["sinks"].update(db={"type": "database", "url": "postgresql://mns@db/r?sslpassword=example-7f"}),
            "sinks.db.url",
            "example-7f",
        ),
    ],
    ids=["push-route", "webhook", "webhook-header", "access-key", "database-password", "database-sslpassword"],
)
def test_a_placeholder_in_any_secret_key_stops_loading(tmp_path: Path, edit: Any, key_path: str, value: str) -> None:
    """Every secret-bearing key is held to the placeholder rules, and the error never shows the value."""
    data = base(tmp_path)
    edit(data)
    error = error_of(tmp_path, data)
    assert error.key_path == key_path
    assert "is a placeholder, not a secret" in error.problem
    assert value not in str(error)


@pytest.mark.parametrize(
    ("edit", "key_path", "minimum"),
    [
        (lambda d: d["sinks"]["hook"].update(secret="Qm7Vx2Lp9"), "sinks.hook.secret", 16),
        (lambda d: d["credentials"].update(access_key_secret="Qm7Vx2Lp9"), "credentials.access_key_secret", 16),
        (
            lambda d: d["sinks"].update(
                lake={"type": "s3", "bucket": "b-1", "access_key_id": "AK", "secret_access_key": "Qm7Vx2"}
            ),
            "sinks.lake.secret_access_key",
            8,
        ),
    ],
    ids=["webhook", "access-key", "s3"],
)
def test_a_secret_shorter_than_its_minimum_stops_loading(
    tmp_path: Path, edit: Any, key_path: str, minimum: int
) -> None:
    """Each secret has a documented minimum length."""
    data = base(tmp_path)
    edit(data)
    error = error_of(tmp_path, data)
    assert error.key_path == key_path
    assert f"shorter than {minimum} characters" in error.problem


def test_real_secrets_and_passwordless_urls_load(tmp_path: Path) -> None:
    """Real-looking values pass, an identifier is not a secret, and a URL without a password is fine."""
    data = base(tmp_path)
    data["sinks"]["db"] = {"type": "database", "url": f"sqlite:///{tmp_path}/r.db"}
    data["sinks"]["pg"] = {"type": "database", "url": "postgresql+psycopg://mns@127.0.0.1/test"}
    data["sinks"]["hook"]["headers"] = {"Authorization": f"Bearer {GOOD}", "X-Source": "example"}
    data["credentials"]["access_key_id"] = "LTAI-example"
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(yaml.safe_dump(data)), encoding="utf-8")
    assert load_config(path).sinks["db"].type == "database"
