"""The push receiver, its spool and one spool worker per route, started and drained as one unit.

It listens before the sinks are opened (pushes are spooled even while a sink is down at start) and
delivers once they are. Its drain mirrors the pollers': :meth:`PushService.stop_accepting` answers
pushes 503 so Alibaba sends them again later; :meth:`PushService.drain` delivers the spool until it is
empty or the deadline passes (a batch still waiting for a sink stays spooled for the next run);
:meth:`PushService.close` closes the listener (after the drain, so Alibaba sees 503s rather than
refused connections), then the spool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from functools import partial

from mns_consumer.config import PushConfig
from mns_consumer.delivery import Dispatcher
from mns_consumer.errors import ConfigError, SpoolUnavailable
from mns_consumer.observe.events import Events
from mns_consumer.observe.metrics import Metrics
from mns_consumer.opt_out import OptOutMatcher
from mns_consumer.push.receiver import PushReceiver
from mns_consumer.push.spool import Spool
from mns_consumer.push.worker import SpoolWorker
from mns_consumer.sinks.base import DeadLetterSink, Sink


class PushService:
    """Receives pushes into the spool and delivers the spool to each route's sinks.

    ``source`` names the configuration file in errors; ``opt_out`` re-reads SmsUp replies with the
    configured unsubscribe keywords (None keeps the decoders').
    """

    def __init__(
        self,
        config: PushConfig,
        events: Events,
        *,
        metrics: Metrics | None = None,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        source: str = "configuration",
        opt_out: OptOutMatcher | None = None,
    ) -> None:
        self.config = config
        self.opt_out = opt_out
        self.events = events
        self.source = source
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.spool = Spool(config.spool_path)
        self.workers: dict[str, SpoolWorker] = {}
        self.receiver: PushReceiver | None = None
        for route in config.routes:
            events.register_queue(route.label, route.message_type)
            if metrics is not None:
                metrics.watch_push_route(
                    route.label,
                    route.message_type,
                    route.sinks,
                    spool_entries=partial(self.spool.depth, route.label),
                    spool_oldest_age_seconds=partial(self.spool.oldest_age_seconds, route.label),
                )

    def listen(self) -> PushService:
        """Open the spool and serve pushes into it; nothing is delivered until :meth:`deliver`.

        Raises:
            ConfigError: If the spool cannot be opened or the listen address cannot be bound.
        """
        try:
            self.spool.open()
        except SpoolUnavailable as exc:
            raise ConfigError(
                self.source, "push.spool_path", f"cannot open the spool: {exc.reason}", "use a writable path"
            ) from None
        waiting = self.spool.depths()
        labels = {route.label for route in self.config.routes}
        orphaned = {route: count for route, count in waiting.items() if route not in labels}
        self.events.push_spool_opened(str(self.spool.path), waiting, orphaned)
        try:
            self.receiver = PushReceiver(self.config, self.spool, self.events, self._wake).start()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(
                self.source,
                "push.listen",
                f"cannot serve on {self.config.listen}: {reason}",
                "pick a free port, and check tls_cert_file and tls_key_file",
            ) from None
        routes = [
            {
                "route": route.label,
                "message_type": route.message_type,
                "path": route.path.rstrip("/") + "/********" if route.secret is not None else route.path,
            }
            for route in self.config.routes
        ]
        self.events.push_listening(self.receiver.address, routes, self.receiver.tls)
        return self

    def deliver(self, sinks: Mapping[str, Sink], dead_letter: DeadLetterSink) -> PushService:
        """Start one worker per route, delivering its spool (earlier runs' pushes first) to opened sinks."""
        for route in self.config.routes:
            dispatcher = Dispatcher(
                route.label,
                route.message_type,
                [sinks[name] for name in route.sinks],
                dead_letter,
                self.events,
                threading.Event(),
                retry_initial_seconds=self.retry_initial_seconds,
                retry_max_seconds=self.retry_max_seconds,
                source="push",
                opt_out=self.opt_out,
            )
            self.workers[route.label] = SpoolWorker(
                self.spool,
                dispatcher,
                batch_entries=self.config.spool_batch_entries,
                batch_receipts=self.config.spool_batch_receipts,
                retry_initial_seconds=self.retry_initial_seconds,
                retry_max_seconds=self.retry_max_seconds,
            ).start()
        return self

    def _wake(self, route: str) -> None:
        worker = self.workers.get(route)
        if worker is not None:
            worker.wake()

    def stop_accepting(self) -> None:
        """Answer pushes 503 from now on (the drain's first step)."""
        if self.receiver is not None:
            self.receiver.accepting.clear()

    def drain(self, deadline: float) -> bool:
        """Deliver the spool until it is empty or ``deadline`` (monotonic) passes; True if it emptied."""
        for worker in self.workers.values():
            worker.finish()
        unfinished = [worker for worker in self.workers.values() if not worker.join(deadline)]
        _abandon(unfinished)
        return not unfinished

    def close(self) -> None:
        """Stop the listener and the workers, and close the spool (what is left stays in it)."""
        if self.receiver is not None:
            self.receiver.stop()
        _abandon(self.workers.values())
        self.spool.close()

    def accepting(self) -> bool:
        """Whether pushes are being stored (listening and not draining)."""
        return self.receiver is not None and self.receiver.alive() and self.receiver.accepting.is_set()

    def alive(self) -> bool:
        """Whether the listener and every started worker thread run (false before listen and after close)."""
        workers = self.workers.values()
        return self.receiver is not None and self.receiver.alive() and all(worker.alive() for worker in workers)

    def state(self) -> dict[str, object]:
        """JSON-ready state for /healthz and /readyz; routes by name, never by path."""
        depths = self.spool.depths()
        routes = {
            label: {
                "message_type": worker.message_type,
                "spool_entries": depths.get(label, 0),
                "spool_oldest_age_seconds": round(self.spool.oldest_age_seconds(label), 3),
                "sinks_healthy": worker.dispatcher.healthy.is_set(),
                "worker": "running" if worker.alive() else "stopped",
            }
            for label, worker in self.workers.items()
        }
        return {
            "listen": self.receiver.address if self.receiver is not None else None,
            "accepting": self.accepting(),
            "spool_entries": sum(depths.values()),
            "orphaned_spool_entries": {route: n for route, n in depths.items() if route not in self.workers},
            "routes": routes,
        }


def _abandon(workers: Collection[SpoolWorker]) -> None:
    """Stop the workers at once (each abandons its batch), then give each 5 s to end."""
    for worker in workers:
        worker.abandon()
    for worker in workers:
        worker.join(time.monotonic() + 5.0)
