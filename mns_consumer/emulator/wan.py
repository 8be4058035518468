"""A WAN profile: the emulator answers as if Alibaba were a network away, not on loopback.

A profile is one ``latency`` fault rule (:mod:`mns_consumer.emulator.faults`) with jitter and
handshakes switched on: every call waits one round trip (``latency_seconds`` give or take
``jitter_seconds``), and the first call on a new connection also waits the round trips that setting up
the connection costs (TCP's one, and TLS's one more in TLS mode with TLS 1.3, or two with TLS 1.2). So a
client that reuses its connections pays one round trip a call, and one that reconnects pays two or three,
as it would towards a real region. ``services`` picks MNS alone or every service (Dybaseapi, Dysmsapi too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from mns_consumer.emulator.faults import FaultRule

WanServices = Literal["mns", "all"]
WAN_SERVICES: tuple[str, ...] = get_args(WanServices)


@dataclass(frozen=True)
class WanProfile:
    """Per-call latency with jitter, and what a new connection costs.

    Attributes:
        latency_seconds: One round trip, e.g. 0.05 for a 50 ms WAN.
        jitter_seconds: Each round trip is ``latency_seconds`` plus or minus up to this (uniform).
        services: ``mns`` (the queue calls only) or ``all`` (Dybaseapi and Dysmsapi as well).
        handshake: Whether a new connection's first call also pays its TCP (and TLS) round trips.
    """

    latency_seconds: float
    jitter_seconds: float = 0.0
    services: WanServices = "mns"
    handshake: bool = True

    def __post_init__(self) -> None:
        if self.latency_seconds < 0 or self.jitter_seconds < 0:
            raise ValueError("latency_seconds and jitter_seconds must be zero or more")
        if self.services not in WAN_SERVICES:
            raise ValueError(f"services must be one of {', '.join(WAN_SERVICES)}, not {self.services!r}")

    @classmethod
    def from_milliseconds(cls, fields: dict[str, Any]) -> WanProfile:
        """A profile from the admin API's JSON: ``latency_ms``, ``jitter_ms``, ``services``, ``handshake``.

        Raises:
            KeyError: If ``latency_ms`` is missing.
            ValueError: For negative times or unknown services.
        """
        return cls(
            latency_seconds=float(fields["latency_ms"]) / 1000,
            jitter_seconds=float(fields.get("jitter_ms", 0)) / 1000,
            services=fields.get("services", "mns"),
            handshake=bool(fields.get("handshake", True)),
        )

    def rule(self) -> FaultRule:
        """The ``latency`` fault rule that plays this profile."""
        return FaultRule(
            kind="latency",
            service="mns" if self.services == "mns" else "any",
            seconds=self.latency_seconds,
            jitter_seconds=self.jitter_seconds,
            handshake=self.handshake,
        )

    def to_dict(self) -> dict[str, Any]:
        """The profile as the admin API shows it, in milliseconds."""
        return {
            "latency_ms": self.latency_seconds * 1000,
            "jitter_ms": self.jitter_seconds * 1000,
            "services": self.services,
            "handshake": self.handshake,
        }


def handshake_round_trips(tls_version: str | None) -> int:
    """Round trips a new connection costs before its first request: TCP's one, plus TLS's.

    TLS 1.3 adds one round trip and TLS 1.2 two (full handshakes; the emulator does not resume sessions).
    """
    if tls_version is None:
        return 1
    return 1 + (1 if tls_version == "TLSv1.3" else 2)
