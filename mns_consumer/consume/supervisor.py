"""The daemon's top: builds sinks, tokens and pollers from the configuration, owns signals, drains.

Signals only set flags; the main loop acts on them. SIGHUP reopens the file sinks' and the log's files
(logrotate). SIGTERM or SIGINT drains and exits 0; a second one exits at once with :data:`EXIT_KILLED`,
after one ``shutdown.killed`` line saying what it abandoned. The drain, each step after the one before:

1. ``STOPPING=1`` to systemd, stop receiving (long polls interrupted, HTTP pushes answered 503 so Alibaba
   retries them later): no new work.
2. Up to ``drain_timeout_seconds``, let the batches in flight finish their sinks and deletes (so the next
   start does not see them again) and the push spool deliver (what is left stays for the next start).
3. Abandon what is still in flight: nothing of it is deleted, so MNS hands it out again after its
   visibility timeout (at least once, never lost).
4. Close the sinks (flushing them) and the dead-letter sink, last, because steps 2-3 still write.

A poller that dies of an unexpected error is logged with its traceback, counted and replaced by a new
one after a back-off; its in-flight batches are abandoned as in step 3.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry

from mns_consumer.alicom.endpoints import Endpoints, resolve_endpoints
from mns_consumer.alicom.tokens import TokenFetcher, TokenProvider
from mns_consumer.config import Config, QueueConfig
from mns_consumer.consume.clients import queue_client, token_fetcher, token_provider
from mns_consumer.consume.poller import Poller, PollerSettings
from mns_consumer.delivery import Abandoned, Dispatcher, SinkRetry
from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.exit_codes import EXIT_KILLED, EXIT_OK
from mns_consumer.observe.events import Events
from mns_consumer.observe.health import HealthServer
from mns_consumer.observe.metrics import Metrics
from mns_consumer.observe.systemd import SystemdNotifier
from mns_consumer.retry import Backoff
from mns_consumer.sinks.base import DeadLetterSink, Reopenable, Sink

if TYPE_CHECKING:
    from mns_consumer.push.service import PushService

log = structlog.get_logger("mns_consumer.supervisor")


TICK_SECONDS = 0.5
KILL_LOG_SECONDS = 1.0
"""How long a second signal waits for its ``shutdown.killed`` line to be written before leaving anyway."""
RESTART_BACKOFF = Backoff(1.0, 60.0)
"""Delays before a crashed poller is replaced, by its restarts so far."""


@dataclass
class _Slot:
    """One configured queue and the poller currently serving it."""

    queue: QueueConfig
    tokens: TokenProvider
    poller: Poller
    restarts: int = 0
    restart_at: float | None = None


class Supervisor:
    """Runs one poller per configured queue until told to stop; see the module docstring."""

    def __init__(
        self,
        config: Config,
        *,
        events: Events | None = None,
        notifier: SystemdNotifier | None = None,
        handle_signals: bool = True,
        environ: Mapping[str, str] | None = None,
        token_fetcher: TokenFetcher | None = None,
        on_reopen: Callable[[], None] | None = None,
        source: str = "configuration",
    ) -> None:
        self.config = config
        self.source = source
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, config.metrics)
        self.opt_out = config.opt_out.matcher()
        self.events = events or Events(self.metrics)
        self.environ = dict(os.environ if environ is None else environ)
        self.notifier = notifier or SystemdNotifier(self.environ)
        self.handle_signals = handle_signals
        self.endpoints: Endpoints = resolve_endpoints(config.region, config.endpoints)
        self._token_fetcher = token_fetcher
        self._on_reopen = on_reopen
        self.stop_requested = threading.Event()
        self._reopen_requested = threading.Event()
        self._signals = 0
        self._killed = threading.Event()
        self.sinks: dict[str, Sink] = {}
        self.dead_letter: DeadLetterSink | None = None
        self.slots: list[_Slot] = []
        self.ready = threading.Event()
        self.draining = threading.Event()
        self.health: HealthServer | None = None
        self.push: PushService | None = None

    # -- control ---------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin the drain (what SIGTERM does)."""
        self.stop_requested.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reopen_requested.set()
            return
        self._signals += 1
        if self._signals > 1:
            # The operator asked twice: leave now (see _exit_when_killed, which says what is left behind).
            self._killed.set()
            return
        self.stop_requested.set()

    def _exit_when_killed(self) -> None:
        """Wait for a second signal, log what it abandons, and end the process with :data:`EXIT_KILLED`.

        A thread, not the handler, which may run inside a log write whose lock it would wait for forever.
        The line gets :data:`KILL_LOG_SECONDS` (a blocked stderr must not keep the process alive), then
        ``os._exit`` skips the drain: undeleted messages come back from MNS, their dedupe keys absorb it.
        """
        self._killed.wait()
        writer = threading.Thread(target=self._log_killed, name="killed-log", daemon=True)
        writer.start()
        writer.join(KILL_LOG_SECONDS)
        os._exit(EXIT_KILLED)

    def _log_killed(self) -> None:
        held = [(slot.queue.queue_name, *slot.poller.in_flight_messages()) for slot in list(self.slots)]
        self.events.drain(
            "killed",
            exit_code=EXIT_KILLED,
            in_flight_batches=sum(batches for _, batches, _ in held),
            in_flight_receipts=sum(receipts for _, _, receipts in held),
            queues=[{"queue": queue, "batches": batches, "receipts": receipts} for queue, batches, receipts in held],
        )

    # -- run -------------------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, serve until stopped, drain, and return the exit code.

        Raises:
            ConfigError: If a sink's destination can never work (e.g. an incompatible table).
        """
        if self.handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, self._on_signal)
            threading.Thread(target=self._exit_when_killed, name="exit-when-killed", daemon=True).start()
        started = time.monotonic()
        self._start_health()
        try:
            # Before the sinks: pushes are spooled (and acknowledged) even while a sink cannot be opened.
            self._start_push()
            if not self._open_sinks():
                return self._finish(started)
            self._start_pollers()
            if self.push is not None:
                assert self.dead_letter is not None  # noqa: S101  (opened by _open_sinks)
                self.push.deliver(self.sinks, self.dead_letter)
            self.ready.set()
            self.notifier.ready()
            self.notifier.status(f"consuming {len(self.slots)} queue(s)")
            push_routes = sorted(self.push.workers) if self.push is not None else []
            log.info(
                "daemon.ready",
                queues=[s.queue.queue_name for s in self.slots],
                push_routes=push_routes,
                sinks=sorted(self.sinks),
            )
            self._serve()
            self._drain()
        finally:
            # Before the sinks: the spool workers write to them until they are stopped here.
            if self.push is not None:
                self.push.close()
            self._close_sinks()
            # Last, so the drain stays observable to Prometheus and probes until the very end.
            if self.health is not None:
                self.health.stop()
        return self._finish(started)

    def _start_health(self) -> None:
        address = self.config.http.address()
        if address is None:
            return
        try:
            self.health = HealthServer(address[0], address[1], self.registry, self.liveness, self.readiness).start()
        except OSError as exc:
            raise ConfigError(
                self.source,
                "http.listen",
                f"cannot listen on {self.config.http.listen}: {exc.strerror or exc}",
                "pick a free port, 0 for any, or null to turn the endpoint off",
            ) from None
        log.info(
            "http.listening", address=f"{address[0]}:{self.health.port}", paths=["/metrics", "/healthz", "/readyz"]
        )

    def _queue_states(self) -> dict[str, dict[str, object]]:
        states: dict[str, dict[str, object]] = {}
        for slot in self.slots:
            poller = slot.poller
            states[slot.queue.queue_name] = {
                "message_type": slot.queue.message_type,
                "poller": "restarting" if slot.restart_at is not None else "running",
                "restarts": slot.restarts,
                "in_flight_batches": poller.in_flight,
                "seconds_since_progress": round(time.monotonic() - poller.last_progress, 3),
                "sinks_healthy": poller.dispatcher.healthy.is_set(),
                "token_seconds_to_expiry": slot.tokens.seconds_to_expiry(),
                "token_error": slot.tokens.last_error,
            }
        return states

    def liveness(self) -> tuple[bool, dict[str, object]]:
        """Alive unless a poller's loop has been stuck far longer than a long poll can take."""
        stuck_after = 2 * (30 + self.config.mns_request_timeout_seconds) + 30
        now = time.monotonic()
        stuck = [
            slot.queue.queue_name
            for slot in self.slots
            if slot.restart_at is None and now - slot.poller.last_progress > stuck_after
        ]
        push_down = self.push is not None and self.ready.is_set() and not self.push.alive()
        return not stuck and not push_down, self._state(stuck_pollers=stuck)

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready when started, not draining, and every queue holds a valid token and reaches its sinks."""
        reasons: list[str] = []
        if not self.ready.is_set():
            reasons.append("starting: sinks not open or pollers not started yet")
        if self.draining.is_set():
            reasons.append("draining")
        for slot in self.slots:
            remaining = slot.tokens.seconds_to_expiry()
            if remaining is None or remaining <= 0:
                reasons.append(f"no valid token for {slot.queue.queue_name}")
            if self.push is None and not slot.poller.dispatcher.healthy.is_set():
                # Receiving is paused until the sink takes the batch again (sink.unavailable says which).
                # Not with push: the spool takes pushes through a sink outage, and a daemon taken out of
                # its Service would turn them into refusals that Alibaba gives up on after three tries.
                reasons.append(f"a sink of {slot.queue.queue_name} is unavailable")
        if self.push is not None and self.ready.is_set() and not self.draining.is_set() and not self.push.accepting():
            reasons.append("push receiver not accepting")
        return not reasons, self._state(reasons=reasons)

    def _state(self, **fields: object) -> dict[str, object]:
        """The JSON body of /healthz and /readyz: ``fields``, then the queues' and the push receiver's state."""
        state = {**fields, "queues": self._queue_states()}
        if self.push is not None:
            state["push"] = self.push.state()
        return state

    def _open_sinks(self) -> bool:
        """Open every sink a queue uses, retrying unavailable ones until they open or a stop arrives."""
        names = {name for queue in self.config.queues for name in queue.sinks}
        if self.config.push is not None:
            names.update(name for route in self.config.push.routes for name in route.sinks)
        self.sinks = {name: self.config.sinks[name].build(name) for name in sorted(names)}
        if self.config.dead_letter is None:
            raise ConfigError(self.source, "dead_letter", "is required when queues or push are configured")
        self.dead_letter = self.config.dead_letter.build()
        retry = SinkRetry(Backoff(0.5, 30.0), self.stop_requested, _log_open_failed)
        try:
            opens = [(name, sink.open) for name, sink in self.sinks.items()] + [("dead_letter", self.dead_letter.open)]
            for name, open_sink in opens:
                retry.retrying(name)(open_sink)
        except Abandoned:
            return False
        return True

    def _start_pollers(self) -> None:
        if not self.config.queues:
            return
        fetcher = self._token_fetcher or token_fetcher(self.config, self.endpoints, self.environ)
        for queue in self.config.queues:
            tokens = token_provider(self.config, fetcher, queue)
            slot = _Slot(queue=queue, tokens=tokens, poller=self._new_poller(queue, tokens))
            self.slots.append(slot)
            self._watch(slot)
            slot.poller.start()

    def _watch(self, slot: _Slot) -> None:
        """Tie the scrape-time gauges of a queue to the slot (which outlives restarted pollers)."""
        name, message_type = slot.queue.queue_name, slot.queue.message_type
        self.events.register_queue(name, message_type)
        self.metrics.watch_queue(
            name,
            message_type,
            seconds_since_receive=lambda: self.events.seconds_since_receive(name),
            oldest_message_age_seconds=lambda: slot.poller.oldest_message_age_seconds(),  # noqa: PLW0108  (the poller a restart puts in the slot)
            batches_in_flight=lambda: float(slot.poller.in_flight),
            token_seconds_to_expiry=lambda: _or_minus_one(slot.tokens.seconds_to_expiry()),
            messages_in_flight=lambda: float(slot.poller.in_flight_messages()[1]),
            receivers=lambda: float(slot.poller.receivers),
        )
        for sink in slot.queue.sinks:
            self.metrics.watch_sink(name, message_type, sink)

    def _new_poller(self, queue: QueueConfig, tokens: TokenProvider) -> Poller:
        assert self.dead_letter is not None  # noqa: S101  (opened before pollers start)
        abandon = threading.Event()
        dispatcher = Dispatcher(
            queue.queue_name,
            queue.message_type,
            [self.sinks[name] for name in queue.sinks],
            self.dead_letter,
            self.events,
            abandon,
            retry_initial_seconds=self.config.sink_retry_initial_seconds,
            retry_max_seconds=self.config.sink_retry_max_seconds,
            opt_out=self.opt_out,
        )
        # The queue's own keys carry the same names; the rest come from the top-level settings.
        shared = {field.name for field in fields(PollerSettings)} & set(QueueConfig.model_fields)
        settings = PollerSettings(
            **{name: getattr(queue, name) for name in shared},
            batch_linger_seconds=queue.batch_linger_ms / 1000,
            retry_initial_seconds=self.config.mns_retry_initial_seconds,
            retry_max_seconds=self.config.mns_retry_max_seconds,
        )
        make_client = partial(queue_client, self.config, self.endpoints, queue.queue_name, tokens)
        return Poller(settings, tokens, dispatcher, self.events, make_client)

    def _start_push(self) -> None:
        if self.config.push is None:
            return
        # Imported here: a daemon without push routes does not load the receiver's modules (less RSS).
        from mns_consumer.push.service import PushService  # noqa: PLC0415

        self.push = PushService(
            self.config.push,
            self.events,
            metrics=self.metrics,
            retry_initial_seconds=self.config.sink_retry_initial_seconds,
            retry_max_seconds=self.config.sink_retry_max_seconds,
            source=self.source,
            opt_out=self.opt_out,
        ).listen()

    def _serve(self) -> None:
        watchdog = self.notifier.watchdog_interval_seconds()
        last_watchdog = 0.0
        while not self.stop_requested.wait(TICK_SECONDS):
            if self._reopen_requested.is_set():
                self._reopen_requested.clear()
                self._reopen()
            self._restart_crashed()
            now = time.monotonic()
            if watchdog is not None and now - last_watchdog >= watchdog and self._pollers_progressing(now, watchdog):
                self.notifier.watchdog()
                last_watchdog = now

    def _pollers_progressing(self, now: float, interval: float) -> bool:
        """Whether every live poller's receive loop moved recently (ties the watchdog to real progress)."""
        limit = max(interval * 2, self.config.mns_request_timeout_seconds + 35.0)
        return all(now - slot.poller.last_progress < limit for slot in self.slots if slot.restart_at is None)

    def _restart_crashed(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            poller = slot.poller
            if slot.restart_at is None and poller.crashed is not None:
                slot.restarts += 1
                delay = RESTART_BACKOFF.delay(slot.restarts)
                self.events.poller_crashed(
                    slot.queue.queue_name, slot.queue.message_type, poller.crashed, round(delay, 3)
                )
                poller.give_up()
                slot.restart_at = now + delay
            elif slot.restart_at is not None and now >= slot.restart_at:
                poller.join(time.monotonic() + 5.0)
                slot.poller = self._new_poller(slot.queue, slot.tokens)
                slot.restart_at = None
                slot.poller.start()

    def _reopen(self) -> None:
        for name, sink in self.sinks.items():
            if isinstance(sink, Reopenable):
                sink.reopen()
                log.info("sink.reopened", sink=name)
        reopen_dead_letters = getattr(self.dead_letter, "reopen", None)
        if callable(reopen_dead_letters):
            reopen_dead_letters()
        if self._on_reopen is not None:
            self._on_reopen()

    def _drain(self) -> None:
        self.draining.set()
        self.notifier.stopping()
        in_flight = sum(slot.poller.in_flight for slot in self.slots)
        self.events.drain("started", in_flight_batches=in_flight, timeout_seconds=self.config.drain_timeout_seconds)
        deadline = time.monotonic() + self.config.drain_timeout_seconds
        # Pushes are answered 503 from here on: Alibaba keeps them and retries after a minute.
        if self.push is not None:
            self.push.stop_accepting()
        for slot in self.slots:
            slot.poller.stop_receiving()
        unfinished = [slot for slot in self.slots if not slot.poller.join(deadline)]
        if unfinished:
            left = sum(slot.poller.in_flight for slot in unfinished)
            self.events.drain("abandoned", in_flight_batches=left, queues=[s.queue.queue_name for s in unfinished])
            for slot in unfinished:
                slot.poller.give_up()
            for slot in unfinished:
                slot.poller.join(time.monotonic() + 5.0)
        # The spool workers ran all along; what they cannot finish by the deadline stays spooled.
        if self.push is not None and not self.push.drain(deadline):
            self.events.drain("push_abandoned", spool_entries=self.push.spool.depth())
        self.events.drain(
            "drained", seconds=round(self.config.drain_timeout_seconds - (deadline - time.monotonic()), 3)
        )

    def _close_sinks(self) -> None:
        for name, sink in self.sinks.items():
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001  (one sink failing to close must not keep others open)
                log.error("sink.close_failed", sink=name, error=repr(exc))
        if self.dead_letter is not None:
            self.dead_letter.close()

    def _finish(self, started: float) -> int:
        names = ["received", "deleted", "dead_lettered", "decode_failed", "rejected", "delete_failed", "throttled"]
        if self.config.push is not None:
            names += ["push_accepted", "push_rejected", "push_settled"]
        totals = {name: self.events.total(name) for name in names}
        restarts = sum(slot.restarts for slot in self.slots)
        log.info(
            "daemon.stopped", uptime_seconds=round(time.monotonic() - started, 3), poller_restarts=restarts, **totals
        )
        return EXIT_OK


def _log_open_failed(sink: str, attempt: int, error: SinkUnavailable, delay: float) -> None:
    log.warning("sink.open_failed", sink=sink, reason=error.reason, retry_in_seconds=round(delay, 3))


def _or_minus_one(value: float | None) -> float:
    return -1.0 if value is None else value
