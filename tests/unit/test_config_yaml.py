"""Reading configuration YAML: UTF-8 only, one value per key, bounded aliases, depth and numbers."""

from __future__ import annotations

import codecs
import textwrap
from pathlib import Path

import pytest

from mns_consumer.config_yaml import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, read_yaml
from mns_consumer.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    return caught.value


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    """A repeated key is an error at its path, never "the last one wins"."""
    path = write(
        tmp_path,
        """
        sinks:
          hook:
            type: webhook
            secret: ${HOOK_SECRET}
            url: https://example.com/hook
            secret: ${OTHER_SECRET}
        """,
    )
    error = error_of(path)
    assert error.source == str(path)
    assert error.key_path == "sinks.hook.secret"
    assert "given twice (first on line 5)" in error.problem
    assert "(line 7)" in error.problem


def test_the_same_key_in_two_mappings_is_not_a_duplicate(tmp_path: Path) -> None:
    """Keys are compared within one mapping only, and merge keys may be overridden."""
    data = read_yaml(
        write(
            tmp_path,
            """
            base: &base {type: file, fsync: true}
            sinks:
              a: {<<: *base, path: /srv/a.jsonl}
              b: {<<: *base, path: /srv/b.jsonl, fsync: false}
            """,
        )
    )
    assert data["sinks"]["b"] == {"type": "file", "path": "/srv/b.jsonl", "fsync": False}


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    """Ten levels of ten aliases (10^10 values) stop at the value limit, with the path where it happened."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 10)]
    error = error_of(write(tmp_path, "\n".join(lines)))
    assert f"grows past {MAX_VALUES:,} keys and values" in error.problem
    assert error.key_path.startswith("a")


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    """An anchor used inside itself would build a structure that never ends."""
    error = error_of(write(tmp_path, "endpoints: &loop\n  again: *loop\n"))
    assert error.key_path == "endpoints.again"
    assert "recursive alias" in error.problem


def test_deep_nesting_is_refused_without_a_recursion_error(tmp_path: Path) -> None:
    """5,000 nested lists (a RecursionError in PyYAML's composer) stop at the depth limit."""
    error = error_of(write(tmp_path, "region: " + "[" * 5000 + "]" * 5000 + "\n"))
    assert f"nested more than {MAX_DEPTH} levels" in error.problem
    assert error.key_path.startswith("region[0]")


def test_an_integer_of_thousands_of_digits_is_refused(tmp_path: Path) -> None:
    """Python refuses to convert 5,000 digits (ValueError); the loader names the key instead."""
    error = error_of(write(tmp_path, "tokens:\n  refresh_margin_seconds: " + "9" * 5000 + "\n"))
    assert error.key_path == "tokens.refresh_margin_seconds"
    assert "integer of 5,000 digits" in error.problem


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_a_utf16_or_utf32_file_is_refused_with_the_fix(tmp_path: Path, encoding: str) -> None:
    """A UTF-16/32 file (with or without a byte-order mark) is named as such, with how to fix it."""
    path = tmp_path / "config.yaml"
    path.write_bytes("region: cn-hangzhou\n".encode(encoding))
    error = error_of(path)
    assert "UTF-8" in error.problem
    assert "save it as UTF-8" in error.hint


def test_a_latin1_file_is_refused_at_the_byte(tmp_path: Path) -> None:
    """A byte that is not UTF-8 is reported with its line and column."""
    path = tmp_path / "config.yaml"
    path.write_bytes(b"region: cn-hangzhou\nqueues: []\nname: caf\xe9\n")
    error = error_of(path)
    assert "not UTF-8: byte 0xe9 at line 3, column 10" in error.problem


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Some Windows editors write a UTF-8 BOM; it is not part of the first key."""
    path = tmp_path / "config.yaml"
    path.write_bytes(codecs.BOM_UTF8 + b"region: cn-hangzhou\n")
    assert read_yaml(path) == {"region": "cn-hangzhou"}


def test_a_file_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    """A huge file (a log named by mistake) is refused without being parsed."""
    path = tmp_path / "config.yaml"
    path.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    assert "larger than 1024 KiB" in error_of(path).problem


def test_a_folder_is_refused_as_a_file(tmp_path: Path) -> None:
    """Naming a folder is a ConfigError, not a traceback."""
    assert "cannot read the file" in error_of(tmp_path).problem


def test_a_realistic_document_with_anchors_loads(tmp_path: Path) -> None:
    """Anchors and aliases within the limits work as in any YAML file."""
    data = read_yaml(
        write(
            tmp_path,
            """
            queues:
              - {message_type: SmsReport, queue_name: q1, sinks: &both [db, archive]}
              - {message_type: SmsUp, queue_name: q2, sinks: *both}
            drain_timeout_seconds: 30
            """,
        )
    )
    assert data["queues"][1]["sinks"] == ["db", "archive"]
    assert data["drain_timeout_seconds"] == 30


def test_a_control_character_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    """PyYAML's reader refuses control characters as the loader is made; that too names the file (fuzz find)."""
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\x01queues: [\n")
    error = error_of(path)
    assert error.source == str(path)
    assert "not valid YAML" in error.problem
