"""The emulator's admin endpoint: fault switches, clock, tokens and seeding over plain JSON.

Routes (all under ``/__emulator/``):

==========  =====================  =============================================================
GET         ``state``              queues with message counts, the time (ms) a receive first handed
                                   out a message, received-not-deleted now and at most, short
                                   batches; live faults, flow limiter and its 429s by rule and
                                   operation, short-batch probability, WAN profile, clock, tokens
POST        ``faults``             switch a fault on; body: :class:`FaultRule` fields as JSON
DELETE      ``faults[?kind=K]``    switch every fault (or every fault of kind K) off
POST        ``flow-limiter``       switch the flow limiter on; body: :class:`FlowLimits` fields (``{}``
                                   for the documented limits)
DELETE      ``flow-limiter``       switch it off (its 429 counts stay)
POST        ``short-batches``      ``{"probability": P}``: share of BatchReceiveMessage answers cut short
POST        ``wan``                ``{"latency_ms", "jitter_ms", "services": "mns"|"all", "handshake"}``
DELETE      ``wan``                back to loopback speed
POST        ``clock``              ``{"advance_seconds": N}`` moves the emulator clock forward
POST        ``tokens/expire``      every queue token expires now
POST        ``receipts``           ``{"message_type", "count", "variant", "malformed"}`` seeds receipts
POST        ``trickle``            ``{"message_type", "rate", "seconds"}`` starts a steady producer
                                   (receipts generated first, then enqueued at the rate)
GET         ``deletions?queue=Q``  ``[EnqueueTime, delete time]`` in ms of Q's latest deleted messages
                                   (``&clear=1`` forgets them): enqueue-to-delete latency, as MNS sees it
==========  =====================  =============================================================
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from mns_consumer.emulator.faults import FaultRule
from mns_consumer.emulator.flow_limiter import FlowLimits
from mns_consumer.emulator.http_reply import Reply
from mns_consumer.emulator.queues import MnsFault
from mns_consumer.emulator.wan import WanProfile
from mns_consumer.errors import EmulatorError

if TYPE_CHECKING:
    from mns_consumer.emulator.server import Emulator


class AdminApi:
    """Serves ``/__emulator/...`` for one emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator

    def handle(self, method: str, target: str, body: bytes) -> Reply:
        """Answer one admin request with JSON; client mistakes get 400 with the reason."""
        path, _, query = target.partition("?")
        route = path.removeprefix("/__emulator/").strip("/")
        try:
            payload: Any = json.loads(body) if body.strip() else {}
            if not isinstance(payload, dict):
                raise TypeError("the request body must be a JSON object")
            result = self._dispatch(method, route, payload, parse_qs(query))
        except (TypeError, ValueError, KeyError, EmulatorError, MnsFault) as exc:
            return Reply.json(400, json.dumps({"error": str(exc)}))
        if result is None:
            return Reply.json(404, json.dumps({"error": f"no admin route {method} {path}"}))
        return Reply.json(200, json.dumps(result, ensure_ascii=False))

    def _dispatch(
        self, method: str, route: str, payload: dict[str, Any], query: dict[str, list[str]]
    ) -> dict[str, Any] | None:
        emulator = self._emulator
        if (method, route) == ("GET", "state"):
            return self.state()
        if (method, route) == ("POST", "faults"):
            return emulator.faults.add(FaultRule(**payload)).to_dict()
        if (method, route) == ("DELETE", "faults"):
            kind = query.get("kind", [None])[0]
            return {"cleared": emulator.faults.clear(kind)}
        if route == "flow-limiter" and method in ("POST", "DELETE"):
            emulator.set_flow_limits(FlowLimits.from_dict(payload) if method == "POST" else None)
            return emulator.flow_limiter.state()
        if (method, route) == ("POST", "short-batches"):
            emulator.set_short_batches(float(payload["probability"]))
            return {"probability": emulator.short_batch_probability}
        if route == "wan" and method in ("POST", "DELETE"):
            emulator.set_wan(WanProfile.from_milliseconds(payload) if method == "POST" else None)
            return {"wan": emulator.wan.to_dict() if emulator.wan else None}
        if (method, route) == ("POST", "clock"):
            emulator.clock.advance(float(payload["advance_seconds"]))
            return {"offset_seconds": emulator.clock.offset_seconds}
        if (method, route) == ("POST", "tokens/expire"):
            return {"expired": emulator.expire_tokens()}
        if (method, route) == ("POST", "trickle"):
            rate, seconds = float(payload["rate"]), float(payload["seconds"])
            emulator.trickle(str(payload["message_type"]), rate, seconds)
            return {"messages": round(rate * seconds), "rate": rate, "seconds": seconds}
        if (method, route) == ("GET", "deletions"):
            queue = emulator.store.get(query["queue"][0])
            clear = query.get("clear", ["0"])[0] in ("1", "true")
            return {"queue": queue.name, "deletions": queue.deletions(clear=clear)}
        if (method, route) == ("POST", "receipts"):
            generated = emulator.produce(
                str(payload["message_type"]),
                int(payload.get("count", 1)),
                variant=str(payload.get("variant", "mainland")),
                malformed=int(payload.get("malformed", 0)),
            )
            return {"generated": len(generated)}
        return None

    def state(self) -> dict[str, Any]:
        """A JSON-ready picture of the emulator."""
        emulator = self._emulator
        queues: dict[str, Any] = {}
        for name in emulator.store.names():
            queue = emulator.store.get(name)
            counts = queue.counts()
            consumption = queue.consumption()
            queues[name] = {
                "active": counts.active,
                "inactive": counts.inactive,
                "delayed": counts.delayed,
                "waiting_polls": queue.waiting_polls(),
                "first_received_ms": queue.first_received_ms(),
                "received_not_deleted": consumption.received_not_deleted,
                "received_not_deleted_max": consumption.received_not_deleted_max,
                "oldest_received_ms": consumption.oldest_received_ms,
                "short_batches": consumption.short_batches,
            }
        return {
            "queues": queues,
            "faults": [rule.to_dict() for rule in emulator.faults.rules()],
            "flow_limiter": emulator.flow_limiter.state(),
            "short_batch_probability": emulator.short_batch_probability,
            "wan": emulator.wan.to_dict() if emulator.wan else None,
            "clock_offset_seconds": emulator.clock.offset_seconds,
            "live_tokens": emulator.credentials.live_count(),
            "send_log_records": len(emulator.send_log),
        }
