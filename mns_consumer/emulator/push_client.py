"""A stand-in for Alibaba's HTTP batch push of SMS receipts (reference section 5 and 8.17).

:func:`push_receipts` POSTs receipts to a receiver's URL the way the Alicom platform does:

* each POST is a JSON array, UTF-8, ``Content-Type: application/json;charset=utf-8``; SmsReport and
  SmsUp (and other non-review types) carry up to ``batch_size`` receipts, while signature, template
  and card reports carry exactly one;
* only HTTP 200 with a JSON body whose ``code`` is a number counts as delivered. ``code == 0`` is
  recorded as *accepted*, any other number as *refused*; Alibaba does not retry either;
* anything else is a failure: another status, a body that is not such JSON, a connection error, or
  no complete answer within the response timeout (700 ms, counted over the whole request);
* a failed batch is retried after each of ``retry_delays_seconds`` (1, 5 and 10 minutes by default,
  compressible for tests) and dropped after the last retry fails, as Alibaba drops it;
* with ``redeliver``, every accepted batch is POSTed a second time, imitating the duplicates Alibaba
  warns about (pitfall 6), so receivers can prove they are idempotent.

Waiting between retries uses ``stop.wait(delay)``: setting the event ends the push at once, and
the batches not yet delivered are reported as abandoned.

Nothing here logs, and the report never contains receipt contents, so phone numbers stay out of it.
"""

from __future__ import annotations

import json
import math
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

from mns_consumer.errors import EmulatorError

PushOutcome = Literal["accepted", "refused", "failed"]

SINGLE_RECEIPT_MESSAGE_TYPES: frozenset[str] = frozenset(
    {"SignSmsReport", "TemplateSmsReport", "MnsCardVender", "MnsCardTemplate"}
)
"""Message types Alibaba pushes one per request (reference 4.3 to 4.5)."""

ALIBABA_RETRY_DELAYS_SECONDS: tuple[float, ...] = (60.0, 300.0, 600.0)
"""Alibaba's documented retry schedule for failed pushes: after 1, 5 and 10 minutes (reference 5)."""

ALIBABA_RESPONSE_TIMEOUT_SECONDS = 0.7
"""How long Alibaba waits for a receiver's answer (reference 5)."""

CONTENT_TYPE = "application/json;charset=utf-8"
USER_AGENT = "mns-consumer-emulator-push"

_MAX_RESPONSE_BYTES = 65536
# An httpx timeout can never be zero (that would mean "no wait" to some backends, "none" to others).
_MIN_PHASE_TIMEOUT_SECONDS = 0.001


@dataclass(frozen=True)
class PushAttempt:
    """One POST of one batch.

    Attributes:
        batch_index: Position of the batch in the push, from 0.
        attempt: 1 for the first POST of the batch, 2 and up for its retries.
        status_code: HTTP status of the answer; None when none arrived in time.
        outcome: ``accepted`` (200, ``code`` 0), ``refused`` (200, another numeric ``code``) or
            ``failed`` (anything else).
        error: Why the attempt failed; empty unless ``outcome`` is ``failed``.
        elapsed_seconds: Wall time of the POST.
        redelivery: Whether this POST re-sent an already accepted batch (``redeliver=True``).
    """

    batch_index: int
    attempt: int
    status_code: int | None
    outcome: PushOutcome
    error: str
    elapsed_seconds: float
    redelivery: bool = False


@dataclass
class PushReport:
    """What a push achieved, in receipt counts.

    Every receipt ends up in exactly one of ``accepted_receipts``, ``refused_receipts``,
    ``dropped_receipts`` and ``abandoned_receipts``.

    Attributes:
        message_type: The MessageType pushed, which decides the batching.
        batches: Number of batches the receipts were split into.
        receipts: Number of receipts handed to the push.
        accepted_receipts: Delivered and answered with ``code`` 0.
        refused_receipts: Delivered but answered with a non-zero numeric ``code``; Alibaba counts them
            as delivered and never sends them again.
        dropped_receipts: Every attempt failed, so they were dropped as Alibaba drops them.
        abandoned_receipts: Not delivered because ``stop`` was set first.
        redelivered: Receipts POSTed a second time on purpose (``redeliver=True``).
        stopped: Whether ``stop`` ended the push early.
        attempts: Every POST, in order, redeliveries included.
    """

    message_type: str
    batches: int = 0
    receipts: int = 0
    accepted_receipts: int = 0
    refused_receipts: int = 0
    dropped_receipts: int = 0
    abandoned_receipts: int = 0
    redelivered: int = 0
    stopped: bool = False
    attempts: list[PushAttempt] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for people, with counts only (never receipt contents)."""
        failed = sum(1 for attempt in self.attempts if attempt.outcome == "failed")
        text = (
            f"Pushed {self.receipts} {self.message_type} receipt(s) in {self.batches} batch(es) "
            f"with {len(self.attempts)} POST(s), {failed} of them failed: "
            f"{self.accepted_receipts} accepted, {self.refused_receipts} refused by the receiver, "
            f"{self.dropped_receipts} dropped after the last retry"
        )
        if self.stopped:
            text += f", {self.abandoned_receipts} abandoned when the push was stopped"
        if self.redelivered:
            text += f"; {self.redelivered} accepted receipt(s) were deliberately sent a second time"
        return text + "."

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, attempts included."""
        return asdict(self)


def push_receipts(
    url: str,
    receipts: Sequence[Mapping[str, Any]],
    *,
    message_type: str,
    batch_size: int = 100,
    response_timeout_seconds: float = ALIBABA_RESPONSE_TIMEOUT_SECONDS,
    retry_delays_seconds: Sequence[float] = ALIBABA_RETRY_DELAYS_SECONDS,
    redeliver: bool = False,
    verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
    stop: threading.Event | None = None,
    on_attempt: Callable[[PushAttempt], None] | None = None,
) -> PushReport:
    """Push receipts to an HTTP receiver as Alibaba's batch push mode does, retries included.

    Batches go out one after another over one pooled connection; a batch's retries are waited out
    before the next batch is sent. Proxy environment variables are ignored.

    Args:
        url: The receiver's ``http://`` or ``https://`` URL, path included.
        receipts: Receipt objects as Alibaba sends them (section 4 of the reference).
        message_type: Their MessageType; review and card types go one receipt per POST.
        batch_size: Most receipts per POST for the types that are batched.
        response_timeout_seconds: Budget of each POST, from connecting to the end of the answer.
        retry_delays_seconds: Waits before each retry of a failed batch; its length is the number of
            retries, so a batch is POSTed at most ``len(retry_delays_seconds) + 1`` times.
        redeliver: POST every accepted batch once more, right after it was accepted.
        verify: TLS verification: True for the system trust store, False for none, a CA file path
            (e.g. the emulator's ``cert.pem``) or a ready context.
        stop: Set it to end the push; a pending retry wait returns at once.
        on_attempt: Called after every POST, e.g. to print progress.

    Returns:
        The counts and every attempt.

    Raises:
        EmulatorError: If an argument is invalid or a receipt cannot be serialised to JSON; nothing
            has been sent then.
    """
    _check_arguments(url, message_type, batch_size, response_timeout_seconds, retry_delays_seconds)
    size = 1 if message_type in SINGLE_RECEIPT_MESSAGE_TYPES else batch_size
    batches = [receipts[start : start + size] for start in range(0, len(receipts), size)]
    bodies = [_encode(batch, index * size) for index, batch in enumerate(batches)]
    report = PushReport(message_type=message_type, batches=len(batches), receipts=len(receipts))
    stop = stop if stop is not None else threading.Event()
    if not bodies:
        return report

    def record(attempt: PushAttempt) -> None:
        report.attempts.append(attempt)
        if on_attempt is not None:
            on_attempt(attempt)

    with httpx.Client(
        verify=_ssl_context(verify),
        trust_env=False,
        follow_redirects=False,
        headers={"Content-Type": CONTENT_TYPE, "User-Agent": USER_AGENT},
    ) as client:
        sender = _Sender(client, url, response_timeout_seconds, retry_delays_seconds, stop, record)
        for index, body in enumerate(bodies):
            count = len(batches[index])
            outcome = sender.deliver(index, body)
            if outcome == "accepted":
                report.accepted_receipts += count
            elif outcome == "refused":
                report.refused_receipts += count
            elif outcome == "failed":
                report.dropped_receipts += count
            else:
                report.stopped = True
                report.abandoned_receipts = sum(len(batch) for batch in batches[index:])
                break
            if outcome == "accepted" and redeliver and not stop.is_set():
                record(sender.post(index, body, 1, redelivery=True))
                report.redelivered += count
    return report


@dataclass(frozen=True)
class _Sender:
    """POSTs the batches of one push over one pooled client."""

    client: httpx.Client
    url: str
    response_timeout_seconds: float
    retry_delays_seconds: Sequence[float]
    stop: threading.Event
    record: Callable[[PushAttempt], None]

    def deliver(self, index: int, body: bytes) -> PushOutcome | Literal["stopped"]:
        """POST one batch until it is delivered, every retry has failed, or ``stop`` is set."""
        delays = [0.0, *self.retry_delays_seconds]
        for number, delay in enumerate(delays, start=1):
            # A zero first delay still checks stop, so a stopped push sends nothing more.
            if self.stop.wait(delay) if delay > 0 else self.stop.is_set():
                return "stopped"
            attempt = self.post(index, body, number)
            self.record(attempt)
            if attempt.outcome != "failed":
                return attempt.outcome
        return "failed"

    def post(self, index: int, body: bytes, number: int, *, redelivery: bool = False) -> PushAttempt:
        """POST one body once and classify the answer the way Alibaba does."""
        budget = self.response_timeout_seconds
        started = time.monotonic()
        deadline = started + budget
        # httpcore reads these per phase (connect, write, read), so shrinking them as the request
        # progresses turns per-phase socket timeouts into one budget for the whole request.
        timeouts = dict.fromkeys(("connect", "read", "write", "pool"), budget)

        def shrink_timeouts(event: str, info: Mapping[str, Any]) -> None:
            if event.endswith(".started"):
                remaining = max(deadline - time.monotonic(), _MIN_PHASE_TIMEOUT_SECONDS)
                for phase in timeouts:
                    timeouts[phase] = remaining

        status_code: int | None = None
        outcome: PushOutcome = "failed"
        error = ""
        try:
            with self.client.stream(
                "POST", self.url, content=body, extensions={"timeout": timeouts, "trace": shrink_timeouts}
            ) as response:
                status_code = response.status_code
                answer = _read_capped(response, deadline)
            if time.monotonic() > deadline:
                error = f"no complete answer within {budget:g} s"
            elif status_code != 200:
                error = f"HTTP {status_code}"
            else:
                code = _numeric_code(answer)
                if code is None:
                    error = 'HTTP 200 but the body is not JSON with a numeric "code"'
                else:
                    outcome = "accepted" if code == 0 else "refused"
        except httpx.TimeoutException:
            error = f"no complete answer within {budget:g} s"
        except httpx.RequestError as exc:
            error = f"{type(exc).__name__}: {exc}"
        return PushAttempt(
            batch_index=index,
            attempt=number,
            status_code=status_code,
            outcome=outcome,
            error=error,
            elapsed_seconds=time.monotonic() - started,
            redelivery=redelivery,
        )


def _read_capped(response: httpx.Response, deadline: float) -> bytes:
    """Read the body until it ends, grows past a sane size, or the deadline passes."""
    answer = bytearray()
    for chunk in response.iter_bytes():
        answer += chunk
        if len(answer) > _MAX_RESPONSE_BYTES or time.monotonic() > deadline:
            break
    return bytes(answer)


def _numeric_code(answer: bytes) -> float | None:
    """The number in a ``{"code": ...}`` answer; None if the body is anything else."""
    try:
        document = json.loads(answer)
    except ValueError:
        return None
    code = document.get("code") if isinstance(document, dict) else None
    # JSON true/false decode to bool, a subclass of int, yet are not numbers on the wire.
    if isinstance(code, bool) or not isinstance(code, int | float):
        return None
    return code


def _encode(batch: Sequence[Mapping[str, Any]], first_position: int) -> bytes:
    """Serialise one batch as Alibaba does: a JSON array, UTF-8, non-ASCII kept as is."""
    try:
        return json.dumps([dict(receipt) for receipt in batch], ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        last = first_position + len(batch) - 1
        raise EmulatorError(f"receipts {first_position}..{last} cannot be serialised to JSON: {exc}") from exc


def _ssl_context(verify: bool | str | os.PathLike[str] | ssl.SSLContext) -> bool | ssl.SSLContext:
    """Turn a CA file path into a context, since httpx deprecated ``verify=<str>``."""
    if isinstance(verify, bool | ssl.SSLContext):
        return verify
    try:
        return ssl.create_default_context(cafile=os.fspath(verify))
    except (OSError, ssl.SSLError) as exc:
        raise EmulatorError(f"cannot load CA file {os.fspath(verify)!r}: {exc}") from exc


def _check_arguments(
    url: str,
    message_type: str,
    batch_size: int,
    response_timeout_seconds: float,
    retry_delays_seconds: Sequence[float],
) -> None:
    """Raise EmulatorError for arguments no push could succeed with."""
    try:
        scheme = httpx.URL(url).scheme
    except httpx.InvalidURL as exc:
        raise EmulatorError(f"invalid push URL: {exc}") from exc
    if scheme not in ("http", "https"):
        raise EmulatorError("the push URL must start with http:// or https://")
    if not message_type:
        raise EmulatorError("message_type must name the receipts' MessageType, e.g. SmsReport")
    if batch_size < 1:
        raise EmulatorError(f"batch_size must be at least 1, not {batch_size}")
    if not (math.isfinite(response_timeout_seconds) and response_timeout_seconds > 0):
        raise EmulatorError(f"response_timeout_seconds must be positive, not {response_timeout_seconds}")
    if any(not (math.isfinite(delay) and delay >= 0) for delay in retry_delays_seconds):
        raise EmulatorError("retry_delays_seconds must all be zero or positive")
