"""The child side of :mod:`mns_consumer.alicom.token_process`: read a request, fetch the tokens, answer.

Run as ``python -m mns_consumer.alicom.token_child`` with the JSON request on stdin. The answer is the
only thing on stdout, and the exit status is 0 once it is written, failed fetches included; anything
else that prints goes to stderr, which the parent reads only when the child fails.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from mns_consumer.alicom.dybase import DybaseTokenFetcher
from mns_consumer.alicom.endpoints import Endpoints
from mns_consumer.alicom.token_process import CHILD_FAILED, credentials_from_wire, error_to_wire, token_to_wire
from mns_consumer.errors import TokenError


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """The answer to one request: a token or an error per queue, in the request's order."""
    queues: list[list[str]] = request["queues"]
    try:
        fetcher = DybaseTokenFetcher(
            credentials_from_wire(request["credentials"]),
            Endpoints(**request["endpoints"]),
            connect_timeout_seconds=float(request["connect_timeout_seconds"]),
            read_timeout_seconds=float(request["read_timeout_seconds"]),
        )
    except Exception as exc:  # noqa: BLE001  (building the client failed: every queue fails alike)
        error = TokenError(CHILD_FAILED, f"cannot build the Dybaseapi client: {type(exc).__name__}")
        return {"results": [{"error": error_to_wire(error)} for _ in queues]}
    results: list[dict[str, Any]] = []
    for message_type, queue_name in queues:
        try:
            results.append({"token": token_to_wire(fetcher.fetch(message_type, queue_name))})
        except TokenError as exc:
            results.append({"error": error_to_wire(exc)})
    return {"results": results}


def main() -> int:
    """Answer the request on stdin; 0 once the answer is written, 2 when the request is unreadable."""
    # The answer goes to the real stdout; everything else that prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        request = json.load(sys.stdin)
        document = answer(request)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"unreadable token request: {type(exc).__name__}", file=sys.stderr)
        return 2
    with out:
        json.dump(document, out)
    return 0


if __name__ == "__main__":
    status = main()
    sys.stderr.flush()
    # No interpreter shutdown: it would join the credential library's refresh threads (ECS RAM role,
    # OIDC), which may be mid-call, and the answer is already written.
    os._exit(status)
