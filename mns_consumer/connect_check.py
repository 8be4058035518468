"""``check-config --connect``: reach every outside dependency once, change nothing, and report each result.

Queues: a token is fetched and the queue's attributes read (no message becomes invisible). Sinks:
their ``probe`` (webhook: an empty batch marked ``X-MNS-Consumer-Probe: 1``; database: ``SELECT 1``;
S3: HeadBucket), or open and close for a type without one. Files, dead letters and the spool: their
folder is writable or can be created, creating nothing (the check may run as another user).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from mns_consumer.alicom.endpoints import resolve_endpoints
from mns_consumer.config import Config
from mns_consumer.consume.clients import queue_client, token_fetcher, token_provider
from mns_consumer.errors import MnsConsumerError, SinkUnavailable
from mns_consumer.files import check_can_create_in, describe_os_error
from mns_consumer.sinks.base import DeadLetterSink, Probeable, Sink, SinkConfig
from mns_consumer.sinks.dead_letter import DeadLetterSinkConfig


@dataclass(frozen=True)
class CheckResult:
    """One check: what was tried, whether it worked, and what was seen (never a secret)."""

    subject: str
    ok: bool
    detail: str


def check_connections(config: Config) -> list[CheckResult]:
    """Check the credentials, each queue, each sink in use, the dead-letter file and the push spool.

    Returns:
        One result per dependency, in that order; the command fails if any is not ``ok``.
    """
    routes = config.push.routes if config.push is not None else []
    names = {name for source in (*config.queues, *routes) for name in source.sinks}
    results = _check_queues(config) + [check_sink(name, config.sinks[name]) for name in sorted(names)]
    if config.dead_letter is not None:
        results.append(check_dead_letter(config.dead_letter))
    if config.push is not None:
        results.append(check_spool(config.push.spool_path))
    return results


def _check_queues(config: Config) -> list[CheckResult]:
    if not config.queues:
        return []
    try:
        endpoints = resolve_endpoints(config.region, config.endpoints)
        fetcher = token_fetcher(config, endpoints, os.environ)
    except MnsConsumerError as exc:
        return [CheckResult("credentials and endpoints", False, str(exc))]
    results = [CheckResult("credentials", True, fetcher.credentials_description)]
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
    return results


def check_sink(name: str, sink_config: SinkConfig) -> CheckResult:
    """Reach one sink's destination (see the module docstring); a failure's detail has no secrets."""
    return _check(f"sink {name}", lambda: sink_config.build(name))


def check_dead_letter(dead_letter: DeadLetterSinkConfig) -> CheckResult:
    """Check that the dead-letter file can be appended to, or created (creating nothing)."""
    return _check("dead_letter", dead_letter.build)


def check_spool(spool_path: str) -> CheckResult:
    """Check that the push spool's folder exists and is writable, or can be created (creating nothing)."""
    try:
        found = check_can_create_in(os.path.dirname(spool_path))
    except OSError as exc:
        return CheckResult("push spool", False, describe_os_error(exc, spool_path))
    return CheckResult("push spool", True, found)


def _check(subject: str, build: Callable[[], Sink | DeadLetterSink]) -> CheckResult:
    try:
        sink = build()
        if isinstance(sink, Probeable):
            return CheckResult(subject, True, sink.probe())
        sink.open()
        sink.close()
    except SinkUnavailable as exc:
        # The reason alone: the subject already names the sink.
        return CheckResult(subject, False, exc.reason)
    except MnsConsumerError as exc:
        return CheckResult(subject, False, str(exc))
    return CheckResult(subject, True, "opened and closed (this sink type has no probe)")
