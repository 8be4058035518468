"""QueryTokenForMnsQueue in a short-lived child process, so the daemon never loads Alibaba's Tea SDK.

The Tea SDK behind ``alibabacloud_dybaseapi20170525`` costs about 27 MB resident for one call per
queue and token lifetime, so :class:`ChildProcessTokenFetcher` makes that call with
:class:`~mns_consumer.alicom.dybase.DybaseTokenFetcher` in ``python -m mns_consumer.alicom.token_child``,
which lives about half a second. The wire is one JSON document each way over the child's stdin and
stdout (never its arguments or environment, which other users of the host can read):

* request: ``{"credentials": {...}, "endpoints": {...}, "connect_timeout_seconds": 5,
  "read_timeout_seconds": 10, "queues": [["SmsReport", "Alicom-Queue-..."], ...]}``;
* answer: ``{"results": [{"token": {...}} | {"error": {"code": ..., "detail": ..., "request_id": ...}}]}``.

One worker thread runs the children one at a time, each taking every fetch that arrived while the
previous one ran, so refreshes that come due together share a child.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from mns_consumer.alicom.credentials import AccessKey, AccessKeySource, DefaultCredentialChain
from mns_consumer.alicom.endpoints import Endpoints
from mns_consumer.alicom.pop_text import safe_text
from mns_consumer.alicom.tokens import NETWORK_ERROR, QueueToken
from mns_consumer.errors import TokenError

CHILD_FAILED = "TokenChildFailed"
"""TokenError code when the child process could not be started, crashed or answered nonsense."""


def credentials_to_wire(credentials: AccessKeySource) -> dict[str, Any]:
    """The credentials as the child reads them (the secret included: the wire is a private pipe)."""
    if isinstance(credentials, DefaultCredentialChain):
        return {"kind": "default_chain"}
    return {"kind": "access_key", **dataclasses.asdict(credentials)}


def credentials_from_wire(wire: dict[str, Any]) -> AccessKeySource:
    """The inverse of :func:`credentials_to_wire`."""
    fields = dict(wire)
    if fields.pop("kind") == "default_chain":
        return DefaultCredentialChain()
    return AccessKey(**fields)


def token_to_wire(token: QueueToken) -> dict[str, Any]:
    """A token as JSON, its times in ISO 8601 with their UTC offset."""
    created_at = token.created_at.isoformat() if token.created_at is not None else None
    return {**dataclasses.asdict(token), "expires_at": token.expires_at.isoformat(), "created_at": created_at}


def token_from_wire(wire: dict[str, Any]) -> QueueToken:
    """The inverse of :func:`token_to_wire`."""
    created_at = datetime.fromisoformat(wire["created_at"]) if wire.get("created_at") else None
    return QueueToken(**{**wire, "expires_at": datetime.fromisoformat(wire["expires_at"]), "created_at": created_at})


def error_to_wire(error: TokenError) -> dict[str, Any]:
    """A TokenError as JSON."""
    return {"code": error.code, "detail": error.detail, "request_id": error.request_id}


@dataclasses.dataclass
class _Fetch:
    message_type: str
    queue_name: str
    result: Future[QueueToken] = dataclasses.field(default_factory=Future)


class ChildProcessTokenFetcher:
    """A :class:`~mns_consumer.alicom.tokens.TokenFetcher` that runs the Tea client in a child process.

    Thread-safe; every failure, the child's own included, is a :class:`~mns_consumer.errors.TokenError`,
    so the :class:`~mns_consumer.alicom.tokens.TokenProvider` backs off as it does for the API's.
    The connect and read timeouts are each call's in the child; ``start_timeout_seconds`` is what the
    child may take beyond them (starting Python and importing the SDK) before it is killed.
    ``children_started`` counts the children, for tests and debugging.
    """

    def __init__(
        self,
        credentials: AccessKeySource,
        endpoints: Endpoints,
        *,
        connect_timeout_seconds: float = 5,
        read_timeout_seconds: float = 10,
        start_timeout_seconds: float = 30,
        command: list[str] | None = None,
    ) -> None:
        self.endpoint = endpoints.dybaseapi
        self.credentials_description = credentials.describe()
        self.command = command if command is not None else [sys.executable, "-m", "mns_consumer.alicom.token_child"]
        self._request: dict[str, Any] = {
            "credentials": credentials_to_wire(credentials),
            "endpoints": dataclasses.asdict(endpoints),
            "connect_timeout_seconds": connect_timeout_seconds,
            "read_timeout_seconds": read_timeout_seconds,
        }
        self._per_call_seconds = connect_timeout_seconds + read_timeout_seconds
        self._start_timeout_seconds = start_timeout_seconds
        self._arrived = threading.Condition()
        self._waiting: list[_Fetch] = []
        self._worker: threading.Thread | None = None
        self.children_started = 0

    def fetch(self, message_type: str, queue_name: str) -> QueueToken:
        """Fetch a new token for the queue, in a child process shared with concurrent fetches.

        Raises:
            TokenError: Alibaba's code or ``NetworkError``, ``InvalidResponse``, ``CredentialsUnavailable``
                as :class:`~mns_consumer.alicom.dybase.DybaseTokenFetcher` raises them in the child;
                ``NetworkError`` when the child outlives its timeout (it is killed);
                ``TokenChildFailed`` when it cannot start, crashes or answers nonsense.
        """
        fetch = _Fetch(message_type, queue_name)
        with self._arrived:
            self._waiting.append(fetch)
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name="token-child", daemon=True)
                self._worker.start()
            self._arrived.notify()
        return fetch.result.result()

    def _serve(self) -> None:
        """The worker thread: one child for every fetch waiting when the previous child ended."""
        while True:
            with self._arrived:
                self._arrived.wait_for(lambda: self._waiting)
                batch, self._waiting = self._waiting, []
            try:
                results = self._run_child(batch)
            except Exception as exc:  # noqa: BLE001  (a bug here must not leave the fetching threads hanging)
                text = f"running the token child process failed: {type(exc).__name__}"
                results = [TokenError(CHILD_FAILED, text) for _ in batch]
            for fetch, result in zip(batch, results, strict=True):
                if isinstance(result, TokenError):
                    fetch.result.set_exception(result)
                else:
                    fetch.result.set_result(result)

    def _run_child(self, batch: list[_Fetch]) -> list[QueueToken | TokenError]:
        request = dict(self._request, queues=[[fetch.message_type, fetch.queue_name] for fetch in batch])
        timeout = self._start_timeout_seconds + len(batch) * self._per_call_seconds
        self.children_started += 1
        try:
            done = subprocess.run(  # noqa: S603  (our own module, run by our own interpreter)
                self.command,
                input=json.dumps(request).encode(),
                capture_output=True,
                timeout=timeout,
                check=False,
                # Its own session: a Ctrl-C meant for the daemon's drain does not kill a refresh.
                start_new_session=True,
                # The proxy travels in the request (Endpoints): the Tea SDK reads HTTP(S)_PROXY but not NO_PROXY.
                env={name: value for name, value in os.environ.items() if name.lower() not in _PROXY_VARIABLES},
            )
        except subprocess.TimeoutExpired:
            text = f"no token from Dybaseapi at {self.endpoint} within {timeout:.0f} s (child process killed)"
            return [TokenError(NETWORK_ERROR, text) for _ in batch]
        except OSError as exc:
            text = f"cannot start the token child process {self.command[0]!r}: {exc}"
            return [TokenError(CHILD_FAILED, text) for _ in batch]
        results = _parse_answer(done.stdout, len(batch))
        if done.returncode != 0 or results is None:
            return [TokenError(CHILD_FAILED, _child_failure(done)) for _ in batch]
        return results


_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


def _parse_answer(stdout: bytes, expected: int) -> list[QueueToken | TokenError] | None:
    """The child's results, or None when its answer is not one well-formed result per fetch."""
    try:
        wires = json.loads(stdout)["results"]
        if not isinstance(wires, list) or len(wires) != expected:
            return None
        return [
            token_from_wire(wire["token"])
            if "token" in wire
            else TokenError(
                str(wire["error"]["code"]), str(wire["error"]["detail"]), request_id=wire["error"]["request_id"]
            )
            for wire in wires
        ]
    except (ValueError, TypeError, KeyError):
        return None


def _child_failure(done: subprocess.CompletedProcess[bytes]) -> str:
    """Why a child failed, in words fit for a log: its status and its last line of stderr, scrubbed."""
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    last = safe_text(lines[-1]) if lines else "nothing on stderr"
    if done.returncode != 0:
        return f"the token child process exited with status {done.returncode}: {last}"
    return f"the token child process answered something that is not a token list: {last}"
