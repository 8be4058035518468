"""``check-config --connect``: try every outside dependency once, read-only, and report each result."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from mns_consumer.alicom.endpoints import resolve_endpoints
from mns_consumer.config import Config
from mns_consumer.consume.clients import queue_client, token_fetcher, token_provider
from mns_consumer.errors import MnsConsumerError
from mns_consumer.sinks.base import DeadLetterSink, Sink


@dataclass(frozen=True)
class CheckResult:
    """One check: what was tried, whether it worked, and what was seen (never a secret)."""

    subject: str
    ok: bool
    detail: str


def check_connections(config: Config) -> list[CheckResult]:
    """Fetch a token and probe each queue (taking no message), then open and close each sink."""
    results: list[CheckResult] = []
    try:
        endpoints = resolve_endpoints(config.region, config.endpoints)
        fetcher = token_fetcher(config, endpoints, os.environ)
    except MnsConsumerError as exc:
        return [CheckResult("credentials and endpoints", False, str(exc))]
    results.append(CheckResult("credentials", True, fetcher.credentials_description))
    for queue in config.queues:
        subject = f"queue {queue.queue_name} ({queue.message_type})"
        tokens = token_provider(config, fetcher, queue)
        try:
            token = tokens.get()
        except MnsConsumerError as exc:
            results.append(CheckResult(f"token for {subject}", False, str(exc)))
            continue
        results.append(CheckResult(f"token for {subject}", True, f"expires {token.expires_at.isoformat()}"))
        client = queue_client(config, endpoints, queue.queue_name, tokens)
        try:
            results.append(CheckResult(subject, True, client.probe()))
        except MnsConsumerError as exc:
            results.append(CheckResult(subject, False, str(exc)))
        finally:
            client.close()
    for name in sorted({name for queue in config.queues for name in queue.sinks}):
        results.append(_open_and_close(f"sink {name}", partial(config.sinks[name].build, name)))
    if config.dead_letter is not None:
        dead_letter = config.dead_letter
        results.append(_open_and_close("dead_letter", dead_letter.build))
    return results


def _open_and_close(subject: str, build: Callable[[], Sink | DeadLetterSink]) -> CheckResult:
    try:
        sink = build()
        sink.open()
        sink.close()
    except MnsConsumerError as exc:
        return CheckResult(subject, False, str(exc))
    return CheckResult(subject, True, "opened")
