"""The MNS REST/XML wire around :mod:`mns_consumer.emulator.queues` (reference 3.3-3.5).

Routing, query parsing, request XML, response XML and the permission rules of queue tokens. The XML
is written exactly as ``aliyun-mns-sdk`` parses it: default namespace, no prefixes, no whitespace
between elements, every required child present and non-empty (reference 8.13).
"""

from __future__ import annotations

import secrets
import threading
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import unquote
from xml.sax.saxutils import escape

from mns_consumer.emulator.http_reply import Reply
from mns_consumer.emulator.mns_auth import Caller
from mns_consumer.emulator.queues import (
    Delivery,
    MnsFault,
    Queue,
    QueueAttributes,
    QueueStore,
    SendResult,
    ShortBatch,
    message_not_exist,
)
from mns_consumer.emulator.settings import EmulatorSettings

XMLNS = "http://mns.aliyuncs.com/doc/v1/"
MNS_VERSION = "2015-06-06"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'

# What a QueryTokenForMnsQueue credential may do on its own queue. Sending and queue management are
# the platform's business; visibility changes and attribute reads are switchable (reference 3.4, 10).
TOKEN_OPERATIONS = frozenset({"ReceiveMessage", "BatchReceiveMessage", "DeleteMessage", "BatchDeleteMessage"})
TOKEN_INSPECT_OPERATIONS = frozenset({"GetQueueAttributes", "PeekMessage", "BatchPeekMessage"})
TOKEN_VISIBILITY_OPERATIONS = frozenset({"ChangeMessageVisibility"})


@dataclass(frozen=True)
class MnsRequest:
    """An MNS request after routing: which operation, on which queue, with which raw parameters."""

    method: str
    raw_target: str
    operation: str
    queue: str | None
    params: Mapping[str, str]
    body: bytes


def request_id() -> str:
    """A request id shaped like the service's (24 upper-case hex digits)."""
    return secrets.token_hex(12).upper()


def parse_query(raw_query: str) -> dict[str, str]:
    """Split a raw query string without turning ``+`` into a space (receipt handles contain ``+``).

    Percent-escapes are decoded, so a client that does URL-encode handles works as well (reference 8.8).
    """
    params: dict[str, str] = {}
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            params.setdefault(unquote(name), unquote(value))
    return params


def route(method: str, raw_target: str, body: bytes) -> MnsRequest:
    """Name the MNS operation a request asks for (reference 8.6).

    Raises:
        MnsFault: ``InvalidRequestURL`` (400) for a path or method MNS does not serve.
    """
    path, _, raw_query = raw_target.partition("?")
    params = parse_query(raw_query)
    parts = [p for p in path.split("/") if p]
    operation: str | None = None
    queue: str | None = None
    if len(parts) >= 2 and parts[0] == "queues":
        queue = unquote(parts[1])
        if len(parts) == 2:
            operation = _queue_operation(method, params)
        elif len(parts) == 3 and parts[2] == "messages":
            operation = _message_operation(method, params, body)
    if operation is None:
        raise MnsFault("InvalidRequestURL", 400, f"The request URL is not supported: {method} {path}.")
    return MnsRequest(method, raw_target, operation, queue, params, body)


def _queue_operation(method: str, params: Mapping[str, str]) -> str | None:
    if method == "GET":
        return "GetQueueAttributes"
    if method == "PUT":
        return "SetQueueAttributes" if params.get("metaoverride") == "true" else "CreateQueue"
    if method == "DELETE":
        return "DeleteQueue"
    return None


def _message_operation(method: str, params: Mapping[str, str], body: bytes) -> str | None:
    batch = "numOfMessages" in params
    if method == "GET":
        if params.get("peekonly") == "true":
            return "BatchPeekMessage" if batch else "PeekMessage"
        return "BatchReceiveMessage" if batch else "ReceiveMessage"
    if method == "POST":
        return "BatchSendMessage" if b"<Messages" in body[:200] else "SendMessage"
    if method == "DELETE":
        return "DeleteMessage" if _param(params, "ReceiptHandle") is not None else "BatchDeleteMessage"
    if method == "PUT":
        return "ChangeMessageVisibility"
    return None


def _param(params: Mapping[str, str], name: str) -> str | None:
    """A parameter under its SDK spelling or the docs' lower-camel one (reference 3.4)."""
    value = params.get(name)
    if value is None:
        value = params.get(name[0].lower() + name[1:])
    return value


def _int_param(params: Mapping[str, str], name: str, *, required: bool = False) -> int | None:
    value = _param(params, name)
    if value is None:
        if required:
            raise MnsFault(f"Missing{name}", 400, f"The {name} parameter is missing.")
        return None
    try:
        return int(value)
    except ValueError:
        raise MnsFault("InvalidArgument", 400, f"The value of {name} should be an integer.") from None


class MnsApi:
    """Serves routed MNS requests from a :class:`QueueStore`."""

    def __init__(
        self,
        settings: EmulatorSettings,
        store: QueueStore,
        stopping: threading.Event,
        short_batch: ShortBatch | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._stopping = stopping
        self._short_batch = short_batch
        self._host_id = f"http://{settings.account_id}.mns.cn-hangzhou.aliyuncs.com"

    # -- entry points ----------------------------------------------------------------------------

    def handle(self, request: MnsRequest, caller: Caller) -> tuple[Reply, list[Delivery]]:
        """Serve one authenticated request. Returns the reply and the messages it handed out.

        The deliveries let fault injection act on exactly the messages a receive returned.
        """
        try:
            self._authorize(request, caller)
            return self._dispatch(request)
        except MnsFault as fault:
            return self.error(fault), []

    def error(self, fault: MnsFault) -> Reply:
        """The ``<Error>`` document with all four children the SDK requires (reference 3.3)."""
        rid = request_id()
        body = _xml(
            "Error",
            f"<Code>{escape(fault.code)}</Code><Message>{escape(fault.message)}</Message>"
            f"<RequestId>{rid}</RequestId><HostId>{escape(self._host_id)}</HostId>",
        )
        return self._reply(fault.status, body, rid)

    # -- permissions -----------------------------------------------------------------------------

    def _authorize(self, request: MnsRequest, caller: Caller) -> None:
        token = caller.temporary
        if token is None:
            return
        allowed = set(TOKEN_OPERATIONS)
        if self._settings.token_allows_queue_attributes:
            allowed |= TOKEN_INSPECT_OPERATIONS
        if self._settings.token_allows_visibility_change:
            allowed |= TOKEN_VISIBILITY_OPERATIONS
        # The Java puller's advice for AccessDenied is "check MessageType and QueueName" (reference 9.5).
        if request.queue != token.queue_name or request.operation not in allowed:
            raise MnsFault(
                "AccessDenied",
                403,
                "The security token is not allowed to do this on this queue; check MessageType and QueueName.",
            )

    # -- operations ------------------------------------------------------------------------------

    def _dispatch(self, request: MnsRequest) -> tuple[Reply, list[Delivery]]:
        name = request.queue or ""
        operation = request.operation
        if operation == "CreateQueue":
            return self._create_queue(name, request.body), []
        if operation == "SetQueueAttributes":
            queue = self._store.get(name)
            queue.set_attributes(_queue_attributes(request.body, queue.attributes))
            return self._reply(204, b"", request_id()), []
        if operation == "DeleteQueue":
            self._store.delete(name)
            return self._reply(204, b"", request_id()), []
        queue = self._store.get(name)
        if operation == "GetQueueAttributes":
            return self._queue_attributes(queue), []
        if operation in ("ReceiveMessage", "BatchReceiveMessage"):
            return self._receive(queue, request)
        if operation in ("PeekMessage", "BatchPeekMessage"):
            count = _int_param(request.params, "numOfMessages") if operation == "BatchPeekMessage" else 1
            deliveries = queue.peek(count or 0)
            return self._messages_reply(deliveries, batch=operation == "BatchPeekMessage", peek=True), []
        if operation == "SendMessage":
            return self._send(queue, request.body), []
        if operation == "BatchSendMessage":
            return self._send_batch(queue, request.body), []
        if operation == "DeleteMessage":
            queue.delete(_param(request.params, "ReceiptHandle") or "")
            return self._reply(204, b"", request_id()), []
        if operation == "BatchDeleteMessage":
            return self._delete_batch(queue, request.body), []
        return self._change_visibility(queue, request.params), []

    def _create_queue(self, name: str, body: bytes) -> Reply:
        defaults = QueueAttributes.from_defaults(self._settings.queue_defaults)
        created = self._store.create(name, _queue_attributes(body, replace(defaults)))
        rid = request_id()
        # The SDK reads Location from every 2xx CreateQueue answer, 204 included (reference 3.4).
        location = f"{self._host_id}/queues/{name}"
        return self._reply(201 if created else 204, b"", rid, {"Location": location})

    def _queue_attributes(self, queue: Queue) -> Reply:
        counts = queue.counts()
        attrs = queue.attributes
        fields = {
            "QueueName": queue.name,
            "CreateTime": queue.created_s,
            "LastModifyTime": queue.modified_s,
            "DelaySeconds": attrs.delay_seconds,
            "MaximumMessageSize": attrs.maximum_message_size,
            "MessageRetentionPeriod": attrs.message_retention_period,
            "VisibilityTimeout": attrs.visibility_timeout,
            "PollingWaitSeconds": attrs.polling_wait_seconds,
            "ActiveMessages": counts.active,
            "InactiveMessages": counts.inactive,
            "DelayMessages": counts.delayed,
            "LoggingEnabled": "True" if attrs.logging_enabled else "False",
        }
        inner = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields.items())
        return self._reply(200, _xml("Queue", inner), request_id())

    def _receive(self, queue: Queue, request: MnsRequest) -> tuple[Reply, list[Delivery]]:
        batch = request.operation == "BatchReceiveMessage"
        count = _int_param(request.params, "numOfMessages") if batch else 1
        # Only the exact spelling counts: a client sending WaitSeconds gets the queue default (pitfall 12).
        raw_wait = request.params.get("waitseconds")
        try:
            wait = None if raw_wait is None else int(raw_wait)
        except ValueError:
            raise MnsFault("InvalidArgument", 400, "The value of waitseconds should be an integer.") from None
        short_batch = self._short_batch if batch else None
        deliveries = queue.receive(count or 0, wait, should_stop=self._stopping, short_batch=short_batch)
        return self._messages_reply(deliveries, batch=batch, peek=False), deliveries

    def _send(self, queue: Queue, body: bytes) -> Reply:
        root = _parse_xml(body, "Message")
        message_body, priority, delay = _message_fields(root)
        result = queue.send(message_body, priority=priority, delay_seconds=delay)
        return self._reply(201, _xml("Message", _send_result_xml(result)), request_id())

    def _send_batch(self, queue: Queue, body: bytes) -> Reply:
        root = _parse_xml(body, "Messages")
        items = [_message_fields(child) for child in root if _local(child.tag) == "Message"]
        results = queue.send_batch(items)
        parts: list[str] = []
        failed = False
        for result in results:
            if isinstance(result, MnsFault):
                failed = True
                parts.append(
                    f"<Message><ErrorCode>{escape(result.code)}</ErrorCode>"
                    f"<ErrorMessage>{escape(result.message)}</ErrorMessage></Message>"
                )
            else:
                parts.append(f"<Message>{_send_result_xml(result)}</Message>")
        # The status of a partial failure is undocumented (reference 10); 500 with the mixed list is
        # what the SDK's BatchSendMessageDecoder.decodeError understands.
        return self._reply(500 if failed else 201, _xml("Messages", "".join(parts)), request_id())

    def _delete_batch(self, queue: Queue, body: bytes) -> Reply:
        root = _parse_xml(body, "ReceiptHandles")
        handles = [(child.text or "").strip() for child in root if _local(child.tag) == "ReceiptHandle"]
        failures = queue.delete_batch(handles)
        if not failures:
            return self._reply(204, b"", request_id())
        # Partial failure: 404 and an <Errors> list naming only the failed handles (reference 3.4).
        items = "".join(
            f"<Error><ErrorCode>{escape(fault.code)}</ErrorCode><ErrorMessage>{escape(fault.message)}</ErrorMessage>"
            f"<ReceiptHandle>{escape(handle)}</ReceiptHandle></Error>"
            for handle, fault in failures
        )
        return self._reply(404, _xml("Errors", items), request_id())

    def _change_visibility(self, queue: Queue, params: Mapping[str, str]) -> Reply:
        handle = _param(params, "ReceiptHandle")
        if not handle:
            raise MnsFault("MissingReceiptHandle", 400, "The ReceiptHandle parameter is missing.")
        timeout = _int_param(params, "VisibilityTimeout")
        if timeout is None:
            raise MnsFault("MissingVisibilityTimeout", 400, "The VisibilityTimeout parameter is missing.")
        new_handle, next_visible = queue.change_visibility(handle, timeout)
        inner = f"<ReceiptHandle>{escape(new_handle)}</ReceiptHandle><NextVisibleTime>{next_visible}</NextVisibleTime>"
        return self._reply(200, _xml("ChangeVisibility", inner), request_id())

    # -- rendering -------------------------------------------------------------------------------

    def _messages_reply(self, deliveries: list[Delivery], *, batch: bool, peek: bool) -> Reply:
        if not deliveries:
            raise message_not_exist()
        rendered = [_message_xml(d, peek=peek) for d in deliveries]
        if batch:
            body = _xml("Messages", "".join(f"<Message>{m}</Message>" for m in rendered))
        else:
            body = _xml("Message", rendered[0])
        return self._reply(200, body, request_id())

    def _reply(self, status: int, body: bytes, rid: str, extra: Mapping[str, str] | None = None) -> Reply:
        headers = {"x-mns-request-id": rid, "x-mns-version": MNS_VERSION, **(extra or {})}
        if body:
            headers["Content-Type"] = "text/xml;charset=utf-8"
        return Reply(status, body, headers)


def flow_units(request: MnsRequest, reply: Reply, deliveries: list[Delivery]) -> int:
    """What a served call counts against the account's TPS budget: 1, or its messages for a batch (reference 3.9).

    Batch sends and deletes count the messages they carry, batch receives and peeks the messages they
    answer; an empty or failed call still counts one.
    """
    operation = request.operation
    if operation == "BatchReceiveMessage":
        units = len(deliveries)
    elif operation == "BatchPeekMessage":
        units = reply.body.count(b"<Message>")
    elif operation == "BatchSendMessage":
        units = request.body.count(b"<Message>")
    elif operation == "BatchDeleteMessage":
        units = request.body.count(b"<ReceiptHandle>")
    else:
        units = 1
    return max(1, units)


def _xml(root: str, inner: str) -> bytes:
    return f'{XML_DECLARATION}<{root} xmlns="{XMLNS}">{inner}</{root}>'.encode()


def _message_xml(delivery: Delivery, *, peek: bool) -> str:
    fields: list[tuple[str, str | int]] = [
        ("MessageId", delivery.message_id),
        ("MessageBodyMD5", delivery.body_md5),
        ("MessageBody", delivery.body),
        ("EnqueueTime", delivery.enqueue_ms),
        ("FirstDequeueTime", delivery.first_dequeue_ms),
        ("DequeueCount", delivery.dequeue_count),
        ("Priority", delivery.priority),
    ]
    if not peek:
        fields[1:1] = [("ReceiptHandle", delivery.receipt_handle)]
        fields.append(("NextVisibleTime", delivery.next_visible_ms))
    return "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields)


def _send_result_xml(result: SendResult) -> str:
    inner = f"<MessageId>{result.message_id}</MessageId><MessageBodyMD5>{result.body_md5}</MessageBodyMD5>"
    if result.receipt_handle:
        inner += f"<ReceiptHandle>{escape(result.receipt_handle)}</ReceiptHandle>"
    return inner


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _parse_xml(body: bytes, root_name: str) -> ET.Element:
    try:
        # Expat >= 2.4.1 (every supported CPython) refuses entity-expansion bombs; the input is a test client's.
        root = ET.fromstring(body)  # noqa: S314
    except ET.ParseError:
        raise MnsFault("MalformedXML", 400, "The XML you provided was not well-formed.") from None
    if _local(root.tag) != root_name:
        raise MnsFault("MalformedXML", 400, f"The XML root element should be {root_name}.")
    return root


def _children(element: ET.Element) -> dict[str, str]:
    return {_local(child.tag): (child.text or "") for child in element}


def _message_fields(element: ET.Element) -> tuple[str, int | None, int | None]:
    fields = _children(element)
    return fields.get("MessageBody", ""), _xml_int(fields, "Priority"), _xml_int(fields, "DelaySeconds")


def _xml_int(fields: Mapping[str, str], name: str) -> int | None:
    if name not in fields:
        return None
    try:
        return int(fields[name])
    except ValueError:
        raise MnsFault("InvalidArgument", 400, f"The value of {name} should be an integer.") from None


def _queue_attributes(body: bytes, base: QueueAttributes) -> QueueAttributes:
    if not body.strip():
        return base
    fields = _children(_parse_xml(body, "Queue"))
    changes: dict[str, int | bool] = {}
    for xml_name, attr in (
        ("DelaySeconds", "delay_seconds"),
        ("MaximumMessageSize", "maximum_message_size"),
        ("MessageRetentionPeriod", "message_retention_period"),
        ("VisibilityTimeout", "visibility_timeout"),
        ("PollingWaitSeconds", "polling_wait_seconds"),
    ):
        value = _xml_int(fields, xml_name)
        if value is not None:
            changes[attr] = value
    if "LoggingEnabled" in fields:
        changes["logging_enabled"] = fields["LoggingEnabled"].lower() == "true"
    return replace(base, **changes)  # type: ignore[arg-type]
