"""The push section: routes with secret paths, sink references, dead letters, and errors that say what to fix."""

from __future__ import annotations

from typing import Any

import pytest

from mns_consumer.config import Config, parse_config
from mns_consumer.errors import ConfigError

SECRET = "Zq8-route-secret-Vx41"
SINKS = {"archive": {"type": "file", "path": "/var/lib/mns-consumer/receipts.jsonl"}}
DEAD_LETTER = {"type": "file", "path": "/var/lib/mns-consumer/dead-letter.jsonl"}


def _route(**overrides: Any) -> dict[str, Any]:
    return {
        "path": "/alicom/SmsReport",
        "secret": SECRET,
        "message_type": "SmsReport",
        "sinks": ["archive"],
        **overrides,
    }


def _config(push: dict[str, Any], **top: Any) -> Config:
    return parse_config({"sinks": SINKS, "dead_letter": DEAD_LETTER, "push": push, **top}, "config.yaml")


def _error(push: dict[str, Any], **top: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        _config(push, **top)
    return str(caught.value)


def test_a_push_only_configuration_is_valid_and_routes_by_the_secret_path() -> None:
    """No queues are needed; the route matches its path plus secret and is named push:<type>."""
    config = _config({"listen": "127.0.0.1:0", "routes": [_route()]})
    assert config.push is not None
    route = config.push.routes[0]
    assert route.url_path() == f"/alicom/SmsReport/{SECRET}"
    assert route.label == "push:SmsReport"
    assert config.sinks_for("SmsReport", "push:SmsReport") == ["archive"]


def test_the_secret_is_masked_when_the_configuration_is_shown() -> None:
    """check-config prints the secret as stars."""
    masked = _config({"routes": [_route()]}).masked()
    assert SECRET not in repr(masked)
    assert masked["push"]["routes"][0]["secret"] == "**********"


def test_push_needs_a_dead_letter_sink() -> None:
    """Undecodable pushed receipts must go somewhere."""
    with pytest.raises(ConfigError, match="dead_letter is required when push is configured"):
        parse_config({"sinks": SINKS, "push": {"routes": [_route()]}}, "config.yaml")


def test_a_route_naming_an_undefined_sink_is_an_error_naming_the_key() -> None:
    """The error names the file, the route's key path and the sinks that exist."""
    message = _error({"routes": [_route(sinks=["db"])]})
    assert message.startswith("config.yaml: ")
    assert "push.routes[0].sinks names undefined sink(s) db (defined: archive)" in message


def test_a_short_secret_is_refused_without_echoing_it() -> None:
    """A guessable secret is an error, and the error does not repeat it."""
    message = _error({"routes": [_route(secret="short-one")]})
    assert "push.routes[0].secret" in message
    assert "short-one" not in message


def test_an_unknown_message_type_is_refused() -> None:
    """A route's type decides its decoder, so a typo must not dead-letter every receipt."""
    assert "push.routes[0].message_type: unknown MessageType 'SmsReprot'" in _error(
        {"routes": [_route(message_type="SmsReprot")]}
    )


def test_two_routes_of_one_type_need_distinct_names() -> None:
    """Rotating a secret means two routes of one type; each needs its own name."""
    message = _error({"routes": [_route(), _route(secret=SECRET + "-new")]})
    assert "push.routes[1] is named push:SmsReport" in message
    config = _config({"routes": [_route(), _route(secret=SECRET + "-new", name="SmsReport-new")]})
    assert config.push is not None
    assert [route.label for route in config.push.routes] == ["push:SmsReport", "push:SmsReport-new"]


def test_tls_needs_both_the_certificate_and_the_key() -> None:
    """A certificate without its key (or the reverse) is an error."""
    assert "tls_cert_file and tls_key_file go together" in _error(
        {"routes": [_route()], "tls_cert_file": "/etc/ssl/cert.pem"}
    )


def test_push_needs_at_least_one_route() -> None:
    """An empty routes list serves nothing and is refused."""
    assert "push.routes" in _error({"routes": []})
