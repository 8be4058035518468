"""Opt-out replies: whole-message unsubscribe keywords, width- and case-insensitive, or a pattern."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mns_consumer.config import load_config
from mns_consumer.errors import ConfigError
from mns_consumer.opt_out import DEFAULT_KEYWORDS, OptOutConfig, OptOutMatcher, normalize_reply
from mns_consumer.receipts import decode_object

FULLWIDTH_TD = "\uff34\uff24"
"""TD in full-width letters, as a phone's Chinese keyboard types it."""


@pytest.mark.parametrize(
    "reply",
    [FULLWIDTH_TD, "td", "Td", " 退订 ", "退订。", "STOP.", "stop!", "Unsubscribe", "\tT\n", "n", "R", "取消", "[TD]"],
)
def test_unsubscribe_keywords_are_opt_outs(reply: str) -> None:
    """Full-width, any case, with whitespace or punctuation around it: still the keyword."""
    assert OptOutMatcher()(reply)


@pytest.mark.parametrize(
    "reply", ["TD please call me", "退订了吗", "STOPPED", "hello", "", "   ", "...", None, "T D", "TDTD"]
)
def test_other_replies_are_not_opt_outs(reply: str | None) -> None:
    """Only the whole reply counts: a keyword inside a sentence is not an opt-out."""
    assert not OptOutMatcher()(reply)


def test_normalization_folds_width_and_case_and_trims_punctuation() -> None:
    """NFKC turns full-width letters into ASCII; casefold and trimming do the rest."""
    assert normalize_reply(" \uff33\uff34\uff2f\uff30\uff01 ") == "stop"
    assert normalize_reply("«退订»") == "退订"


def test_configured_keywords_replace_the_defaults_and_a_pattern_adds_to_them() -> None:
    """Keywords are the configured ones; the pattern must match the whole normalized reply."""
    matcher = OptOutConfig(keywords=["quit"], pattern=r"(?:退订|td)\s*\d*").matcher()
    assert matcher("QUIT")
    assert matcher("退订 123")
    assert matcher("TD1")
    assert not matcher("STOP")
    assert not matcher("please 退订")


def test_defaults_are_the_documented_keywords() -> None:
    """An empty section means the documented defaults."""
    assert OptOutConfig().keywords == list(DEFAULT_KEYWORDS)
    assert set(DEFAULT_KEYWORDS) == {"TD", "T", "N", "R", "退订", "取消", "STOP", "UNSUBSCRIBE"}


def test_an_invalid_pattern_is_a_config_error() -> None:
    """A pattern that does not compile is refused when the configuration is read."""
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        OptOutConfig(pattern="(unclosed")


def test_decoded_smsup_carries_the_flag_in_its_json_form() -> None:
    """The decoder flags a reply with the default keywords, and the JSON form has ``opt_out``."""
    receipt = decode_object(
        "SmsUp",
        {"phone_number": "13900001111", "content": FULLWIDTH_TD, "send_time": "2024-05-01 10:05:00", "dest_code": "1",
         "sequence_id": 1},
        raw=b"{}",
        source="mns",
        queue="q",
    )  # fmt: skip
    assert receipt.opt_out is True
    assert receipt.to_json_dict()["opt_out"] is True


def test_a_bad_pattern_or_label_in_the_file_names_its_key(tmp_path: Path) -> None:
    """Loading a file with a broken opt_out pattern or an unknown delivery label fails at that key."""
    path = tmp_path / "config.yaml"
    path.write_text("opt_out:\n  pattern: '(unclosed'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.key_path == "opt_out.pattern"
    assert "regular expression" in str(raised.value)
    path.write_text("metrics:\n  delivery_labels: [phone_number]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.key_path.startswith("metrics.delivery_labels")
