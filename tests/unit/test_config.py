"""Loading configuration: interpolation, strictness, and errors that name the file, key and fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mns_consumer.config import load_config
from mns_consumer.errors import ConfigError

AK_SECRET = "Wd8sQ2-ak-4f1e9c0b7a5d3e2f"

VALID = """
credentials:
  access_key_id: LTAI-example
  access_key_secret: ${TEST_AK_SECRET}
region: cn-hangzhou
endpoints:
  dybaseapi: ${EMULATOR:-127.0.0.1:9100}
  protocol: http
queues:
  - message_type: SmsReport
    queue_name: Alicom-Queue-i1-SmsReport
    sinks: [archive]
sinks:
  archive:
    type: file
    path: /var/lib/mns-consumer/{message_type}.jsonl
dead_letter:
  type: file
  path: /var/lib/mns-consumer/dead-letter.jsonl
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


def test_a_valid_file_loads_with_variables_interpolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """${VAR} takes the environment's value and ${VAR:-default} its fallback."""
    monkeypatch.setenv("TEST_AK_SECRET", AK_SECRET)
    monkeypatch.delenv("EMULATOR", raising=False)
    config = load_config(write(tmp_path, VALID))
    assert config.credentials is not None
    assert config.credentials.access_key_secret.get_secret_value() == AK_SECRET
    assert config.endpoints.dybaseapi == "127.0.0.1:9100"
    assert config.sinks_for("SmsReport") == ["archive"]
    assert config.queues[0].wait_seconds == 30


def test_masked_dump_never_shows_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The effective configuration prints secrets as asterisks, and shows each sink's own keys."""
    monkeypatch.setenv("TEST_AK_SECRET", AK_SECRET)
    masked = load_config(write(tmp_path, VALID)).masked()
    assert AK_SECRET not in repr(masked)
    assert masked["credentials"]["access_key_secret"] == "**********"
    assert masked["sinks"]["archive"]["path"] == "/var/lib/mns-consumer/{message_type}.jsonl"


def test_an_unset_variable_names_the_key_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ${VAR} without fallback that is not set is an error at its key path."""
    monkeypatch.delenv("TEST_AK_SECRET", raising=False)
    error = error_of(write(tmp_path, VALID))
    assert error.key_path == "credentials.access_key_secret"
    assert "TEST_AK_SECRET" in str(error)
    assert "export TEST_AK_SECRET" in error.hint


def test_an_unknown_key_is_refused_with_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo is an error, never silently ignored."""
    monkeypatch.setenv("TEST_AK_SECRET", AK_SECRET)
    error = error_of(write(tmp_path, VALID.replace("    sinks: [archive]", "    sinks: [archive]\n    wait_secs: 5")))
    assert error.key_path == "queues[0].wait_secs"
    assert error.problem == "unknown key"
    assert str(tmp_path / "config.yaml") in str(error)


def test_a_value_out_of_range_says_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """wait_seconds above the MNS limit of 30 is refused at queues[0].wait_seconds."""
    monkeypatch.setenv("TEST_AK_SECRET", AK_SECRET)
    error = error_of(
        write(tmp_path, VALID.replace("    sinks: [archive]", "    sinks: [archive]\n    wait_seconds: 45"))
    )
    assert error.key_path == "queues[0].wait_seconds"
    assert "30" in error.problem


def test_a_queue_naming_an_undefined_sink_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sink a queue names must be defined under sinks."""
    monkeypatch.setenv("TEST_AK_SECRET", AK_SECRET)
    error = error_of(write(tmp_path, VALID.replace("sinks: [archive]", "sinks: [archive, db]")))
    assert "db" in error.problem
    assert "archive" in error.problem


def test_an_unknown_sink_type_lists_the_known_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown sink type names the sink and lists every known type."""
    monkeypatch.setenv("TEST_AK_SECRET", AK_SECRET)
    error = error_of(write(tmp_path, VALID.replace("type: file\n    path", "type: kafka\n    path")))
    assert error.key_path == "sinks.archive"
    assert "database" in str(error)
    assert "webhook" in str(error)


def test_a_bad_sink_field_is_reported_under_the_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sink's own field error carries the path sinks.<name>.<field>."""
    monkeypatch.setenv("TEST_AK_SECRET", AK_SECRET)
    text = VALID.replace("    path: /var/lib/mns-consumer/{message_type}.jsonl", "    paht: /tmp/x.jsonl")
    error = error_of(write(tmp_path, text))
    assert error.key_path.startswith("sinks.archive.")


def test_broken_yaml_reports_the_line(tmp_path: Path) -> None:
    """YAML syntax errors name the line and column."""
    error = error_of(write(tmp_path, "queues: [\n  - a: b\n  c"))
    assert "line" in error.problem


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """An unreadable file is a ConfigError naming it, not a traceback."""
    error = error_of(tmp_path / "nope.yaml")
    assert "cannot read" in error.problem


def test_dollar_dollar_escapes_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$${NAME} is the literal text ${NAME}."""
    monkeypatch.setenv("TEST_AK_SECRET", AK_SECRET)
    config = load_config(write(tmp_path, VALID.replace("LTAI-example", "LTAI-$${literal}")))
    assert config.credentials is not None
    assert config.credentials.access_key_id == "LTAI-${literal}"
