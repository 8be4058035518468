"""The exception hierarchy of mns-consumer, and nothing else.

No exception's ``str()`` ever contains a secret: errors carry identifiers (queue names, AccessKey ids,
request ids, sink names), never AccessKey secrets, security tokens, signatures or webhook secrets.
"""

from __future__ import annotations


class MnsConsumerError(Exception):
    """Base class of every error mns-consumer raises on purpose."""


class ConfigError(MnsConsumerError):
    """A configuration file or option is invalid.

    Attributes:
        source: The file (or option) the bad value came from.
        key_path: Dotted path of the offending key, e.g. ``queues[1].wait_seconds``.
        problem: What is wrong with it.
        hint: What to write instead.
    """

    def __init__(self, source: str, key_path: str, problem: str, hint: str = "") -> None:
        self.source = source
        self.key_path = key_path
        self.problem = problem
        self.hint = hint
        where = f"{source}: {key_path}: " if key_path else f"{source}: "
        super().__init__(where + problem + (f" ({hint})" if hint else ""))


class DecodeError(MnsConsumerError):
    """A receipt body cannot be decoded into a :class:`~mns_consumer.receipts.Receipt`: dead-lettered, never retried.

    Attributes:
        message_type: The MessageType the body was decoded as.
        field: The field at fault, or ``""`` when the body as a whole is (not base64, not JSON, ...).
        reason: Why, in words a person can act on.
        raw: The body exactly as received.
    """

    def __init__(self, message_type: str, field: str, reason: str, raw: bytes = b"") -> None:
        self.message_type = message_type
        self.field = field
        self.reason = reason
        self.raw = raw
        where = f"{message_type}.{field}" if field else message_type
        super().__init__(f"{where}: {reason}")


class AlicomError(MnsConsumerError):
    """Anything Alibaba said, or failed to say.

    Attributes:
        code: Alibaba's error code (``MessageNotExist``, ``SignatureDoesNotMatch``, ...) or a local one
            such as ``NetworkError`` or ``Timeout``.
        request_id: Alibaba's request id, when the answer carried one.
        detail: The message alone, without the code and request id that ``str()`` adds.
    """

    def __init__(self, code: str, message: str, *, request_id: str | None = None) -> None:
        self.code = code
        self.request_id = request_id
        self.detail = message
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{code}: {message}{suffix}")


class MessageGone(AlicomError):  # noqa: N818  (a state, named as one: see STYLE.md)
    """The receipt handle no longer designates a message this consumer holds (deleted, expired, stale: pitfall 11).

    Retrying cannot help; a receipt that still exists comes back through a new receive, and its dedupe key absorbs it.
    """


class DamagedAnswerError(MnsConsumerError, ValueError):
    """An MNS answer is not the XML its operation returns; the message never quotes the answer."""


class TokenError(AlicomError):
    """QueryTokenForMnsQueue failed: bad AccessKey, refused, throttled, unreachable or a Code other than OK."""


class QueueNotFound(AlicomError):  # noqa: N818  (a state, named as one: see STYLE.md)
    """The MNS queue does not exist (``QueueNotExist``): check ``queue_name`` against the console."""


class QueueAuthError(AlicomError):
    """MNS refused the credentials (expired or wrong token, wrong queue, bad signature).

    The token is refreshed at once and the call retried (reference 2.6, pitfall 3).
    """


class QueueUnavailable(AlicomError):  # noqa: N818  (a state, named as one: see STYLE.md)
    """MNS could not be reached or answered with a server error or throttling: back off and retry."""


class QueueThrottled(QueueUnavailable):
    """MNS's flow limiter refused the call (HTTP 429 ``TooManyRequests``, reference 3.9): backpressure.

    The poller slows down (fewer concurrent calls, a jittered pause) and retries; nothing is dead-lettered.
    A :class:`QueueUnavailable`, so code that only knows "retry later" keeps working.
    """


class SendDetailsError(AlicomError):
    """QuerySendDetails (Dysmsapi) did not answer one query with its records; other queries may still work.

    Alibaba refused it on its merits (a ``Code`` other than ``OK``, an HTTP 4xx), or, with a local code
    (``InvalidSendDate``, ``InvalidPhoneNumber``, ``InvalidResponse``), it was refused before being sent
    or its answer cannot be read.
    """


class SendDetailsAuthError(SendDetailsError):
    """Dysmsapi refused the AccessKey itself (unknown key, bad signature, no permission): no query can work."""


class SendDetailsUnavailable(SendDetailsError):  # noqa: N818  (a state, named as one: see STYLE.md)
    """Dysmsapi could not be reached, answered 5xx or throttled, and kept doing so through every retry."""


class SendDetailsThrottled(SendDetailsUnavailable):
    """A throttling answer from Dysmsapi, carrying the delay it asked for."""

    def __init__(self, code: str, message: str, *, request_id: str | None, retry_after_seconds: float | None) -> None:
        super().__init__(code, message, request_id=request_id)
        self.retry_after_seconds = retry_after_seconds


class InvalidSendsError(MnsConsumerError):
    """The list of sends to backfill cannot be read (a bad column, date, number or line).

    Attributes:
        source: The file (or ``command line``) the sends came from.
        problems: One line per problem, each naming its line number and field, e.g.
            ``sends.csv:3: send_date: '2024-13-01' is not a date (write YYYY-MM-DD or YYYYMMDD)``.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = problems[:10]
        more = f"\n... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(f"{source}: cannot read the sends to backfill:\n" + "\n".join(shown) + more)


class SinkError(MnsConsumerError):
    """A sink failed in a way its caller must handle."""


class SinkUnavailable(SinkError):  # noqa: N818  (a state, named as one: see STYLE.md)
    """A sink cannot accept writes right now (server down, disk full, timeout): retry; nothing of the batch is stored.

    Attributes:
        sink: The name of the sink.
        retry_after_seconds: A delay the sink was told to wait (e.g. an HTTP Retry-After), if any.
    """

    def __init__(self, sink: str, reason: str, *, retry_after_seconds: float | None = None) -> None:
        self.sink = sink
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"sink {sink!r} unavailable: {reason}")


class DeadlinePassed(MnsConsumerError, TimeoutError):  # noqa: N818  (a state, named as one: see STYLE.md)
    """A database call reached its deadline; raised instead of opening a connection for it."""


class Abandoned(MnsConsumerError):  # noqa: N818  (a flow signal, STYLE.md 4)
    """The stop event ended a wait for an unavailable sink: nothing of the write may count as stored."""


class SpoolUnavailable(MnsConsumerError):  # noqa: N818  (a state, named as one: see STYLE.md)
    """The HTTP push spool cannot store or remove entries now (disk full, I/O error, locked): the push gets a 5xx.

    Attributes:
        reason: What SQLite or the operating system said (never a path secret: routes are stored by name).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"push spool unavailable: {reason}")


class PushRejected(MnsConsumerError):  # noqa: N818  (a flow signal: the request is answered with its status)
    """A push is refused; carries what to answer and how to count it.

    Attributes:
        status: HTTP status, also sent as the body's ``code``.
        stage: The ``stage`` label of the rejection (see ``PUSH_STAGES``).
        message: The body's ``msg``; never holds the request path.
    """

    def __init__(self, status: int, stage: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.stage = stage
        self.message = message


class EmulatorError(MnsConsumerError):
    """The local emulator could not start or was driven with invalid arguments."""
