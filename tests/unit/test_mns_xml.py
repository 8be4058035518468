"""BatchReceiveMessage answers parse into messages, and damaged ones fail without quoting the answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mns.mns_xml_handler import ReceiptHandlesEncoder

from mns_consumer.alicom.mns_xml import parse_batch_receive, receipt_handles_xml
from mns_consumer.errors import DamagedAnswerError

NS = "http://mns.aliyuncs.com/doc/v1/"
FIELDS = (
    "<MessageId>M{n}</MessageId><ReceiptHandle>H{n}</ReceiptHandle><MessageBodyMD5>MD5</MessageBodyMD5>"
    "<MessageBody>{body}</MessageBody><EnqueueTime>1700000000000</EnqueueTime>"
    "<NextVisibleTime>1700000030000</NextVisibleTime><FirstDequeueTime>1700000000100</FirstDequeueTime>"
    "<DequeueCount>{n}</DequeueCount><Priority>8</Priority>"
)


def answer(*messages: str, root: str = "Messages") -> str:
    inner = "".join(f"<Message>{m}</Message>" for m in messages)
    return f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{NS}">{inner}</{root}>'


def test_every_field_of_every_message_is_read_in_document_order() -> None:
    parsed = parse_batch_receive(answer(*(FIELDS.format(n=n, body=f"Ym9keS0{n}") for n in (1, 2))))
    assert [(m.message_id, m.receipt_handle, m.body, m.dequeue_count) for m in parsed] == [
        ("M1", "H1", "Ym9keS01", 1),
        ("M2", "H2", "Ym9keS02", 2),
    ]
    first = parsed[0]
    assert (first.enqueue_time_ms, first.next_visible_time_ms, first.first_dequeue_time_ms) == (
        1700000000000,
        1700000030000,
        1700000000100,
    )
    assert (first.priority, first.body_md5) == (8, "MD5")


def test_escaped_text_and_unknown_elements_are_handled_like_the_sdk() -> None:
    """Entities are unescaped, an empty body is the empty string, and extra elements are ignored."""
    body = FIELDS.format(n=1, body="{&quot;a&quot;:&lt;1&gt;}") + "<UserProperties><X>1</X></UserProperties>"
    empty = FIELDS.format(n=2, body="")
    parsed = parse_batch_receive(answer(body, empty).encode("utf-8"))
    assert [m.body for m in parsed] == ['{"a":<1>}', ""]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<Messages", "not well-formed XML"),
        (answer(FIELDS.format(n=1, body="x"), root="Errors"), "root element is 'Errors'"),
        (answer(), "no Message element"),
        (answer(FIELDS.format(n=1, body="13900001111").replace("<Priority>8</Priority>", "")), "has no Priority"),
        (answer(FIELDS.format(n=1, body="13900001111").replace(">8<", ">eight<")), "Priority that is not an integer"),
    ],
)
def test_a_damaged_answer_is_refused_without_quoting_it(text: str, reason: str) -> None:
    with pytest.raises(DamagedAnswerError) as raised:
        parse_batch_receive(text)
    assert reason in str(raised.value)
    assert "13900001111" not in str(raised.value)


XML_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)


@given(st.lists(XML_TEXT, min_size=1, max_size=16))
def test_batch_delete_body_is_byte_for_byte_the_sdks(handles: list[str]) -> None:
    """The BatchDeleteMessage body equals ReceiptHandlesEncoder's, escaping included."""
    assert receipt_handles_xml(handles) == ReceiptHandlesEncoder.encode(handles)


def test_batch_delete_body_of_real_handles() -> None:
    """Handles shaped like MNS's ("1-" + base64) and the characters XML must escape."""
    handles = ["1-ODU4OTkzNDU5Mi0xNDM1MTk3NjAwLTEtNQ==", "a&b<c>\"d'e"]
    assert receipt_handles_xml(handles) == ReceiptHandlesEncoder.encode(handles)
