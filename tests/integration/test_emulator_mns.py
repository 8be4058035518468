"""The emulator's MNS queues, driven by the real ``aliyun-mns-sdk`` over loopback HTTP.

Every expectation here is a fact of reference section 3 (or a documented emulator choice where the
reference marks the fact unconfirmed).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from mns.mns_exception import MNSClientNetworkException, MNSServerException
from mns.queue import Message, Queue, QueueMeta

from mns_consumer.emulator import Emulator
from tests.integration.mns_helpers import Accounts, accounts_for, last_status, raw_request, request_with_date

QUEUE = "Alicom-Queue-i1-SmsReport"


@pytest.fixture
def accounts(emulator: Emulator) -> Iterator[Accounts]:
    with accounts_for(emulator) as opened:
        yield opened


@pytest.fixture
def queue(accounts: Accounts) -> Queue:
    """The SmsReport queue, reached with the master AccessKey."""
    return accounts.master().get_queue(QUEUE)


def send_json(queue: Queue, payload: dict[str, object], **kwargs: int) -> str:
    """Send a receipt the way Alibaba enqueues it: base64 of UTF-8 JSON (the SDK encodes)."""
    return str(queue.send_message(Message(json.dumps(payload, ensure_ascii=False), **kwargs)).message_id)


def error_of(call: Callable[[], object]) -> MNSServerException:
    """The MNS error a call raises, with the HTTP status it came with as ``.status``."""
    with pytest.raises(MNSServerException) as caught:
        call()
    caught.value.status = last_status()
    return caught.value


# -- queues ---------------------------------------------------------------------------------------


def test_create_queue_answers_201_then_204_for_identical_attributes_and_409_for_different(accounts: Accounts) -> None:
    """CreateQueue is idempotent for identical attributes and refuses different ones (reference 3.4)."""
    queue = accounts.master().get_queue("Orders-1")
    assert queue.create(QueueMeta(vis_timeout=60)).endswith("/queues/Orders-1")
    assert queue.create(QueueMeta(vis_timeout=60)).endswith("/queues/Orders-1")
    error = error_of(lambda: queue.create(QueueMeta(vis_timeout=61)))
    assert (error.type, error.status) == ("QueueAlreadyExist", 409)


def test_get_queue_attributes_reports_all_twelve_fields_and_message_counts(queue: Queue) -> None:
    """GetQueueAttributes parses (all twelve fields present) and counts active and inactive messages."""
    send_json(queue, {"n": 1})
    send_json(queue, {"n": 2})
    queue.receive_message(0)
    meta = queue.get_attributes()
    assert meta.queue_name == QUEUE
    assert meta.visibility_timeout == 30
    assert meta.maximum_message_size == 65536
    assert meta.polling_wait_seconds == 0
    assert (meta._active_messages, meta._inactive_messages, meta._delay_messages) == (1, 1, 0)


def test_unknown_queue_is_queue_not_exist(accounts: Accounts) -> None:
    """Any operation on a missing queue answers 404 QueueNotExist."""
    error = error_of(lambda: accounts.master().get_queue("Nope-1").receive_message(0))
    assert (error.type, error.status) == ("QueueNotExist", 404)


def test_set_queue_attributes_changes_the_visibility_timeout(queue: Queue) -> None:
    """SetQueueAttributes (metaoverride) changes attributes that later receives use."""
    queue.set_attributes(QueueMeta(vis_timeout=120))
    assert queue.get_attributes().visibility_timeout == 120


# -- send, receive, delete ------------------------------------------------------------------------


def test_receive_returns_the_body_byte_exact_with_its_md5_and_times(queue: Queue, emulator: Emulator) -> None:
    """A received message carries the stored body, its MD5 and consistent times (reference 3.5)."""
    payload = {"phone_number": "13900001111", "err_msg": "用户接收成功 ✅"}
    message_id = send_json(queue, payload)
    before_ms = emulator.clock.now_ms()
    message = queue.receive_message(0)
    assert message.message_id == message_id
    assert json.loads(message.message_body) == payload
    stored = base64.b64encode(json.dumps(payload, ensure_ascii=False).encode()).decode()
    assert message.message_body_md5 == hashlib.md5(stored.encode()).hexdigest().upper()  # noqa: S324
    assert message.dequeue_count == 1
    assert message.enqueue_time <= message.first_dequeue_time
    assert message.next_visible_time - message.first_dequeue_time == 30_000
    assert message.first_dequeue_time >= before_ms - 1000


def test_empty_queue_answers_message_not_exist(queue: Queue) -> None:
    """An empty receive is 404 MessageNotExist, the idle path of every poll (pitfall 2)."""
    error = error_of(lambda: queue.receive_message(0))
    assert (error.type, error.status) == ("MessageNotExist", 404)
    # All four <Error> children were present, or the SDK would have raised RespDataDamaged.
    assert error.req_id
    assert error.host_id


def test_delete_removes_the_message_and_a_used_handle_is_refused(queue: Queue) -> None:
    """DeleteMessage removes the message; the same handle then gets ReceiptHandleError."""
    send_json(queue, {"n": 1})
    handle = queue.receive_message(0).receipt_handle
    queue.delete_message(handle)
    error = error_of(lambda: queue.delete_message(handle))
    assert (error.type, error.status) == ("ReceiptHandleError", 400)
    assert error_of(lambda: queue.receive_message(0)).type == "MessageNotExist"


def test_peek_changes_nothing(queue: Queue) -> None:
    """PeekMessage shows a message without a handle and without counting a dequeue."""
    send_json(queue, {"n": 1})
    peeked = queue.peek_message()
    assert peeked.dequeue_count == 0
    assert len(queue.batch_peek_message(16)) == 1
    assert queue.receive_message(0).dequeue_count == 1


def test_higher_priority_is_received_first(queue: Queue) -> None:
    """Priority 1 is received before the default 8 and the lowest 16 (reference 3.5)."""
    low = send_json(queue, {"p": 16}, priority=16)
    default = send_json(queue, {"p": 8})
    high = send_json(queue, {"p": 1}, priority=1)
    received = [m.message_id for m in queue.batch_receive_message(16, 0)]
    assert received == [high, default, low]


def test_delayed_message_becomes_receivable_after_its_delay(queue: Queue, emulator: Emulator) -> None:
    """A DelaySeconds message stays delayed until the clock passes its delay."""
    send_json(queue, {"n": 1}, delay_seconds=60)
    assert error_of(lambda: queue.receive_message(0)).type == "MessageNotExist"
    assert queue.get_attributes()._delay_messages == 1
    emulator.clock.advance(61)
    assert json.loads(queue.receive_message(0).message_body) == {"n": 1}


def test_messages_past_their_retention_are_gone(accounts: Accounts, emulator: Emulator) -> None:
    """A message older than MessageRetentionPeriod is removed, consumed or not."""
    queue = accounts.master().get_queue("Short-1")
    queue.create(QueueMeta(msg_ttl=60))
    send_json(queue, {"n": 1})
    emulator.clock.advance(61)
    assert error_of(lambda: queue.receive_message(0)).type == "MessageNotExist"


# -- visibility and receipt handles ---------------------------------------------------------------


def test_visibility_expiry_redelivers_with_a_new_handle_and_the_old_one_is_stale(
    queue: Queue, emulator: Emulator
) -> None:
    """After the visibility timeout the message returns with a new handle; the old one is refused."""
    message_id = send_json(queue, {"n": 1})
    first = queue.receive_message(0)
    assert error_of(lambda: queue.receive_message(0)).type == "MessageNotExist"
    emulator.clock.advance(31)
    second = queue.receive_message(0)
    assert second.message_id == message_id
    assert second.receipt_handle != first.receipt_handle
    assert second.dequeue_count == 2
    assert second.first_dequeue_time == first.first_dequeue_time
    assert error_of(lambda: queue.delete_message(first.receipt_handle)).type == "ReceiptHandleError"
    queue.delete_message(second.receipt_handle)


def test_change_visibility_issues_a_new_handle_and_restarts_the_clock_from_now(
    queue: Queue, emulator: Emulator
) -> None:
    """ChangeMessageVisibility returns a new handle, invalidates the old one and counts from the call."""
    send_json(queue, {"n": 1})
    received = queue.receive_message(0)
    emulator.clock.advance(20)
    changed = queue.change_message_visibility(received.receipt_handle, 60)
    assert changed.receipt_handle != received.receipt_handle
    assert int(changed.next_visible_time) >= emulator.clock.now_ms() + 59_000  # the SDK leaves it a string
    emulator.clock.advance(30)  # 50 s after the receive: past the original 30 s, inside the new 60 s
    assert error_of(lambda: queue.receive_message(0)).type == "MessageNotExist"
    stale = error_of(lambda: queue.change_message_visibility(received.receipt_handle, 10))
    assert stale.type == "ReceiptHandleError"
    assert error_of(lambda: queue.delete_message(received.receipt_handle)).type == "ReceiptHandleError"
    queue.delete_message(changed.receipt_handle)
    gone = error_of(lambda: queue.change_message_visibility(changed.receipt_handle, 10))
    assert (gone.type, gone.status) == ("MessageNotExist", 404)


def test_change_visibility_refuses_a_timeout_beyond_43200(queue: Queue) -> None:
    """VisibilityTimeout is limited to 1..43200 s on the server, whatever the client checks."""
    send_json(queue, {"n": 1})
    handle = queue.receive_message(0).receipt_handle
    error = error_of(lambda: queue.change_message_visibility(handle, 0))
    assert (error.type, error.status) == ("InvalidArgument", 400)


# -- batches and limits ---------------------------------------------------------------------------


def test_batch_receive_returns_at_most_the_batch_and_may_return_fewer(queue: Queue) -> None:
    """BatchReceiveMessage hands out up to numOfMessages, fewer when fewer are there."""
    queue.batch_send_message([Message(json.dumps({"n": n})) for n in range(16)])
    send_json(queue, {"n": 16})
    assert len(queue.batch_receive_message(16, 0)) == 16
    assert len(queue.batch_receive_message(16, 0)) == 1


def test_batch_limits_of_sixteen_are_enforced_by_the_server(accounts: Accounts) -> None:
    """numOfMessages and batch sends above 16 are InvalidArgument (reference 3.5 limits)."""
    account = accounts.master()
    queue = account.get_queue(QUEUE)
    too_many = error_of(lambda: queue.batch_receive_message(17, 0))
    assert (too_many.type, too_many.status) == ("InvalidArgument", 400)
    batch = error_of(lambda: queue.batch_send_message([Message("x") for _ in range(17)]))
    assert batch.type == "InvalidArgument"


def test_waitseconds_above_thirty_is_invalid(queue: Queue) -> None:
    """Long polls wait at most 30 s; 31 is InvalidArgument."""
    error = error_of(lambda: queue.receive_message(31))
    assert (error.type, error.status) == ("InvalidArgument", 400)


def test_body_larger_than_maximum_message_size_is_refused(accounts: Accounts) -> None:
    """A body above MaximumMessageSize is InvalidArgument; one at the limit is accepted."""
    queue = accounts.master().get_queue("Small-1")
    queue.create(QueueMeta(max_msg_size=1024))
    queue.set_encoding(False)
    queue.send_message(Message("a" * 1024))
    error = error_of(lambda: queue.send_message(Message("a" * 1025)))
    assert (error.type, error.status) == ("InvalidArgument", 400)


def test_batch_send_over_64_kb_in_total_is_refused(queue: Queue) -> None:
    """A batch send is limited to 64 KB of bodies in total."""
    queue.set_encoding(False)
    error = error_of(lambda: queue.batch_send_message([Message("b" * 5000) for _ in range(14)]))
    assert error.type == "InvalidArgument"


def test_batch_delete_deletes_the_valid_handles_and_lists_only_the_failed_ones(queue: Queue) -> None:
    """A partial BatchDeleteMessage failure is 404 with <Errors> for the failed handles only."""
    queue.batch_send_message([Message(json.dumps({"n": n})) for n in range(3)])
    handles = [m.receipt_handle for m in queue.batch_receive_message(3, 0)]
    queue.delete_message(handles[0])
    error = error_of(lambda: queue.batch_delete_message(handles))
    assert error.type == "ReceiptHandleError"
    assert [e["ReceiptHandle"] for e in error.sub_errors] == [handles[0]]
    assert queue.get_attributes()._inactive_messages == 0


def test_batch_send_partial_failure_reports_each_item(accounts: Accounts) -> None:
    """A batch with one oversized body enqueues the others and reports the failed item."""
    queue = accounts.master().get_queue("Small-2")
    queue.create(QueueMeta(max_msg_size=1024))
    queue.set_encoding(False)
    error = error_of(lambda: queue.batch_send_message([Message("ok"), Message("x" * 2000), Message("ok2")]))
    assert error.type == "InvalidArgument"
    assert [sorted(item) for item in error.sub_errors] == [
        ["MessageBodyMD5", "MessageId"],
        ["ErrorCode", "ErrorMessage"],
        ["MessageBodyMD5", "MessageId"],
    ]
    assert queue.get_attributes()._active_messages == 2


def test_malformed_xml_is_refused(accounts: Accounts) -> None:
    """A body that is not XML is 400 MalformedXML."""
    account = accounts.master()
    error = error_of(lambda: raw_request(account, "POST", f"/queues/{QUEUE}/messages", "<Message><oops"))
    assert (error.type, error.status) == ("MalformedXML", 400)


def test_wrong_case_waitseconds_is_ignored_like_the_real_service(accounts: Accounts, emulator: Emulator) -> None:
    """Only ``waitseconds`` is read; ``WaitSeconds`` falls back to the queue default (pitfall 12)."""
    account = accounts.master()
    emulator.send_body(QUEUE, "eyJhIjoxfQ==")
    status, body = raw_request(account, "GET", f"/queues/{QUEUE}/messages?WaitSeconds=45")
    assert status == 200
    assert "<ReceiptHandle>" in body


# -- long polling ---------------------------------------------------------------------------------


def test_long_poll_returns_as_soon_as_a_message_is_sent(accounts: Accounts, emulator: Emulator) -> None:
    """A receive already waiting on an empty queue wakes up on a send instead of waiting out its 30 s."""
    receiver = accounts.master().get_queue(QUEUE)
    sender = accounts.master().get_queue(QUEUE)
    received: list[str] = []
    thread = threading.Thread(target=lambda: received.append(str(receiver.receive_message(30).message_id)))
    thread.start()
    wait_until_polling(emulator)
    message_id = send_json(sender, {"n": 1})
    thread.join(timeout=20)
    assert not thread.is_alive(), "the long poll did not wake up on the send"
    assert received == [message_id]


def test_long_poll_wakes_when_an_invisible_message_becomes_visible(accounts: Accounts, emulator: Emulator) -> None:
    """A waiting receive also picks up a message whose visibility timeout ran out."""
    queue = accounts.master().get_queue("Quick-1")
    queue.create(QueueMeta(vis_timeout=1))
    send_json(queue, {"n": 1})
    first = queue.receive_message(0)
    again = queue.receive_message(10)
    assert again.message_id == first.message_id
    assert again.dequeue_count == 2


def test_long_polls_beyond_the_cap_get_message_not_exist_at_once(make_emulator: Callable[..., Emulator]) -> None:
    """With the cap reached, a further long poll is answered MessageNotExist while the first still waits."""
    emulator = make_emulator(max_long_polls_per_queue=1)
    with accounts_for(emulator) as accounts:
        waiting = accounts.master().get_queue(QUEUE)
        extra = accounts.master().get_queue(QUEUE)
        outcome: list[str] = []
        thread = threading.Thread(target=lambda: outcome.append(str(waiting.receive_message(30).message_id)))
        thread.start()
        wait_until_polling(emulator)
        error = error_of(lambda: extra.receive_message(30))
        assert error.type == "MessageNotExist"
        assert thread.is_alive(), "the capped poll should have been answered while the first one waits"
        emulator.send_body(QUEUE, "eyJhIjoxfQ==")
        thread.join(timeout=10)
        assert len(outcome) == 1


def wait_until_polling(emulator: Emulator) -> None:
    """Block until a long poll is waiting on the test queue inside the emulator."""
    for _ in range(2000):
        if emulator.queue(QUEUE).waiting_polls() > 0:
            return
        time.sleep(0.005)
    raise AssertionError("no long poll reached the emulator")


def test_concurrent_consumers_never_hold_the_same_message_at_once(accounts: Accounts, emulator: Emulator) -> None:
    """Four consumers draining one queue each get distinct messages, and together get them all."""
    sender = accounts.master().get_queue(QUEUE)
    for start in range(0, 200, 16):
        sender.batch_send_message([Message(json.dumps({"n": n})) for n in range(start, min(start + 16, 200))])
    consumers = [accounts.master().get_queue(QUEUE) for _ in range(4)]
    seen: list[list[str]] = [[] for _ in consumers]

    errors: list[str] = []

    def drain(index: int) -> None:
        queue = consumers[index]
        while True:
            try:
                batch = queue.batch_receive_message(16, 1)
            except MNSServerException as exc:
                if exc.type != "MessageNotExist":
                    errors.append(exc.type)
                return
            seen[index].extend(m.message_id for m in batch)
            queue.batch_delete_message([m.receipt_handle for m in batch])

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(consumers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    everything = [message_id for part in seen for message_id in part]
    assert len(everything) == 200
    assert len(set(everything)) == 200


# -- authentication -------------------------------------------------------------------------------


def test_wrong_secret_is_signature_does_not_match(accounts: Accounts) -> None:
    """A request signed with the wrong secret is 403 SignatureDoesNotMatch."""
    queue = accounts.master(access_key="not-the-secret").get_queue(QUEUE)
    error = error_of(lambda: queue.receive_message(0))
    assert (error.type, error.status) == ("SignatureDoesNotMatch", 403)


def test_unknown_access_key_is_invalid_access_key_id(accounts: Accounts) -> None:
    """An AccessKey id the emulator does not know is 403 InvalidAccessKeyId."""
    queue = accounts.master(access_id="unknown-id").get_queue(QUEUE)
    error = error_of(lambda: queue.receive_message(0))
    assert (error.type, error.status) == ("InvalidAccessKeyId", 403)


def test_a_date_fifteen_minutes_off_is_time_expired(accounts: Accounts) -> None:
    """A correctly signed request whose Date is 16 minutes old is 408 TimeExpired."""
    old = email.utils.formatdate(time.time() - 16 * 60, usegmt=True)
    error = error_of(lambda: request_with_date(accounts.master(), "GET", f"/queues/{QUEUE}/messages", old))
    assert (error.type, error.status) == ("TimeExpired", 408)


def test_moving_the_emulator_clock_does_not_make_signed_dates_stale(queue: Queue, emulator: Emulator) -> None:
    """The Date check uses the wall clock, so an hour of emulator time still accepts current requests."""
    emulator.clock.advance(3600)
    assert error_of(lambda: queue.receive_message(0)).type == "MessageNotExist"


def test_signature_covers_the_raw_receipt_handle(queue: Queue) -> None:
    """Handles go unencoded in the query and still verify (the target is signed as sent)."""
    for n in range(20):  # enough handles that some carry '+', '/' or '='
        send_json(queue, {"n": n})
    for message in queue.batch_receive_message(16, 0):
        queue.delete_message(message.receipt_handle)


# -- temporary credentials ------------------------------------------------------------------------


def test_queue_token_receives_and_deletes_on_its_own_queue(accounts: Accounts, emulator: Emulator) -> None:
    """Credentials from QueryTokenForMnsQueue work on their queue through the security-token header."""
    emulator.produce("SmsReport", 3)
    account, token = accounts.temporary("SmsReport")
    assert token.access_key_id.startswith("STS.")
    queue = account.get_queue(QUEUE)
    messages = queue.batch_receive_message(16, 0)
    assert len(messages) == 3
    queue.batch_delete_message([m.receipt_handle for m in messages])


def test_queue_token_used_on_another_queue_is_access_denied(accounts: Accounts) -> None:
    """A token for SmsReport used on the SmsUp queue is 403 AccessDenied (pitfall 5)."""
    account, _ = accounts.temporary("SmsReport")
    error = error_of(lambda: account.get_queue("Alicom-Queue-i1-SmsUp").receive_message(0))
    assert (error.type, error.status) == ("AccessDenied", 403)


def test_queue_token_may_not_send(accounts: Accounts) -> None:
    """Only the platform enqueues receipts: a queue token's SendMessage is AccessDenied."""
    account, _ = accounts.temporary("SmsReport")
    error = error_of(lambda: send_json(account.get_queue(QUEUE), {"n": 1}))
    assert error.type == "AccessDenied"


def test_queue_token_past_its_expire_time_is_refused(make_emulator: Callable[..., Emulator]) -> None:
    """After ExpireTime the token gets the configured expired-token error (403 SecurityTokenExpired)."""
    emulator = make_emulator(token_ttl_seconds=60)
    emulator.produce("SmsReport", 1)
    with accounts_for(emulator) as accounts:
        account, _ = accounts.temporary("SmsReport")
        queue = account.get_queue(QUEUE)
        assert queue.receive_message(0).dequeue_count == 1
        emulator.clock.advance(61)
        error = error_of(lambda: queue.receive_message(0))
        assert (error.type, error.status) == ("SecurityTokenExpired", 403)


def test_expiring_tokens_now_refuses_them_and_a_new_token_works(accounts: Accounts, emulator: Emulator) -> None:
    """The token-expired-now switch invalidates live tokens; a freshly fetched one works."""
    account, _ = accounts.temporary("SmsReport")
    assert emulator.expire_tokens() >= 1
    assert error_of(lambda: account.get_queue(QUEUE).receive_message(0)).type == "SecurityTokenExpired"
    fresh, _ = accounts.temporary("SmsReport")
    assert error_of(lambda: fresh.get_queue(QUEUE).receive_message(0)).type == "MessageNotExist"


def test_temporary_id_without_its_security_token_is_refused(accounts: Accounts) -> None:
    """A temporary AccessKey id signed correctly but sent without security-token is refused."""
    _, token = accounts.temporary("SmsReport")
    account = accounts.master(access_id=token.access_key_id, access_key=token.access_key_secret)
    error = error_of(lambda: account.get_queue(QUEUE).receive_message(0))
    assert (error.type, error.status) == ("InvalidAccessKeyId", 403)


def test_visibility_change_can_be_forbidden_to_queue_tokens(make_emulator: Callable[..., Emulator]) -> None:
    """With token_allows_visibility_change off, a token's ChangeMessageVisibility is AccessDenied."""
    emulator = make_emulator(token_allows_visibility_change=False)
    emulator.produce("SmsReport", 1)
    with accounts_for(emulator) as accounts:
        account, _ = accounts.temporary("SmsReport")
        queue = account.get_queue(QUEUE)
        handle = queue.receive_message(0).receipt_handle
        error = error_of(lambda: queue.change_message_visibility(handle, 60))
        assert (error.type, error.status) == ("AccessDenied", 403)


# -- producer -------------------------------------------------------------------------------------


def test_produced_receipts_are_base64_json_objects_with_their_sends_logged(queue: Queue, emulator: Emulator) -> None:
    """produce() enqueues base64(UTF-8 JSON) SmsReport bodies and logs their sends for QuerySendDetails."""
    generated = emulator.produce("SmsReport", 5)
    bodies = [json.loads(m.message_body) for m in queue.batch_receive_message(16, 0)]
    assert sorted(b["phone_number"] for b in bodies) == sorted(g.receipt["phone_number"] for g in generated)
    assert len(emulator.send_log) == 5
    queue.set_encoding(False)
    emulator.clock.advance(31)
    raw = queue.receive_message(0).message_body
    assert isinstance(json.loads(base64.b64decode(raw)), dict)


# -- faults ---------------------------------------------------------------------------------------


def test_error_fault_answers_the_injected_status_in_mns_error_xml(queue: Queue, emulator: Emulator) -> None:
    """An error fault answers with the injected code and status, as a well-formed <Error>."""
    emulator.add_fault(
        kind="error", service="mns", operation="ReceiveMessage", times=1, status=500, code="InternalError"
    )
    error = error_of(lambda: queue.receive_message(0))
    assert (error.type, error.status) == ("InternalError", 500)
    assert error_of(lambda: queue.receive_message(0)).type == "MessageNotExist"


def test_dropped_response_is_a_network_error_and_the_message_comes_back(queue: Queue, emulator: Emulator) -> None:
    """A response cut mid-body fails the receive, and the message it carried returns after visibility."""
    message_id = send_json(queue, {"n": 1})
    emulator.add_fault(kind="drop", operation="ReceiveMessage", times=1)
    with pytest.raises(MNSClientNetworkException):
        queue.receive_message(0)
    assert error_of(lambda: queue.receive_message(0)).type == "MessageNotExist"
    emulator.clock.advance(31)
    assert queue.receive_message(0).message_id == message_id


def test_hanging_connection_times_out_on_the_client(accounts: Accounts, emulator: Emulator) -> None:
    """A request that is never answered hits the client's socket timeout instead of returning."""
    account = accounts.master()
    account.mns_client.set_connection_timeout(1)
    emulator.add_fault(kind="hang", operation="ReceiveMessage", times=1, seconds=30)
    with pytest.raises(MNSClientNetworkException) as caught:
        account.get_queue(QUEUE).receive_message(0)
    assert "timed out" in str(caught.value.message)


def test_duplicate_fault_enqueues_a_copy_of_each_delivered_message(queue: Queue, emulator: Emulator) -> None:
    """A duplicate fault makes a delivered receipt arrive again under a new MessageId."""
    send_json(queue, {"n": 1})
    emulator.add_fault(kind="duplicate", operation="ReceiveMessage", times=1)
    first = queue.receive_message(0)
    queue.delete_message(first.receipt_handle)
    second = queue.receive_message(0)
    assert second.message_id != first.message_id
    assert second.message_body == first.message_body


def test_malformed_fault_turns_delivered_bodies_into_poison(queue: Queue, emulator: Emulator) -> None:
    """A malformed fault rewrites a delivered body in the queue, so every redelivery carries the poison."""
    queue.set_encoding(False)
    send_json(queue, {"n": 1})
    emulator.add_fault(kind="malformed", operation="ReceiveMessage", times=1)
    original = queue.receive_message(0).message_body
    emulator.clock.advance(31)
    redelivered = queue.receive_message(0)
    assert redelivered.message_body != original
    assert redelivered.message_body_md5 == hashlib.md5(redelivered.message_body.encode()).hexdigest().upper()  # noqa: S324


def test_lose_fault_keeps_receipts_out_of_the_queue_but_in_the_send_log(queue: Queue, emulator: Emulator) -> None:
    """A lost receipt is logged as sent (so QuerySendDetails finds it) but never enqueued."""
    emulator.add_fault(kind="lose", service="producer", times=2)
    emulator.produce("SmsReport", 5)
    assert len(queue.batch_receive_message(16, 0)) == 3
    assert len(emulator.send_log) == 5


def test_latency_fault_delays_but_answers(queue: Queue, emulator: Emulator) -> None:
    """A latency fault still answers correctly, and it is counted as fired."""
    rule = emulator.add_fault(kind="latency", service="mns", seconds=0.2, times=1)
    assert error_of(lambda: queue.receive_message(0)).type == "MessageNotExist"
    assert rule.fired == 1
    assert emulator.faults.rules() == []
