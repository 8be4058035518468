"""Everything an emulator instance is started with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mns_consumer.emulator.flow_limiter import FlowLimits
    from mns_consumer.emulator.wan import WanProfile

MAINLAND_MNS_ACCOUNT = "1943695596114318"
"""The Alibaba-owned account that holds mainland receipt queues (reference 2.7); used in HostId."""


@dataclass(frozen=True)
class QueueDefaults:
    """Attributes of the queues the emulator creates for receipt types.

    Alibaba does not publish the attributes of its receipt queues (reference 3.5); these are the MNS
    CreateQueue defaults, and a consumer must measure ``NextVisibleTime - now`` rather than assume them.
    """

    visibility_timeout_seconds: int = 30
    polling_wait_seconds: int = 0
    message_retention_seconds: int = 345600
    maximum_message_bytes: int = 65536
    delay_seconds: int = 0


@dataclass(frozen=True)
class EmulatorSettings:
    """How an emulator instance listens, whom it trusts and which queues it serves.

    Attributes:
        host: Interface to bind; loopback by default.
        port: TCP port; 0 picks a free one.
        access_key_id: The master AccessKey id the emulator accepts.
        access_key_secret: Its secret.
        queues: MessageType -> QueueName of the receipt queues QueryTokenForMnsQueue serves.
        token_ttl_seconds: Lifetime of minted queue tokens (Alibaba's is undocumented, reference 2.6).
        seed: Seed of every random choice (sample receipts, probabilistic faults).
        seed_receipts: Receipts enqueued into each configured queue at start.
        tls: Serve HTTPS with a self-signed certificate generated at start.
        tls_dir: Where the certificate (``cert.pem``) and key are written; a temporary folder if None.
        max_long_polls_per_queue: Concurrent waiting long polls a queue holds before answering
            MessageNotExist at once (reference 3.4 and pitfall 13).
        verify_signatures: Check MNS and POP signatures (leave on: it is what catches signing bugs).
        max_clock_skew_seconds: Allowed distance between a request's Date and the emulator clock.
        token_allows_visibility_change: Whether queue tokens may call ChangeMessageVisibility.
        token_allows_queue_attributes: Whether queue tokens may call GetQueueAttributes and PeekMessage.
        expired_token_status: HTTP status for a request with an expired queue token (unconfirmed).
        expired_token_code: MNS error code for it (unconfirmed; see reference 3.3).
        queue_defaults: Attributes of the receipt queues created at start.
        hang_seconds_max: Upper bound on how long a ``hang`` fault holds a connection.
        flow_limits: Start with the flow limiter on, with these limits (reference 3.9); None: off.
        short_batch_probability: Share of BatchReceiveMessage answers cut short (reference 3.10); 0: none.
        wan: Start with this WAN profile (latency, jitter, handshakes); None: loopback speed.
    """

    host: str = "127.0.0.1"
    port: int = 0
    access_key_id: str = "emulator-access-key-id"
    access_key_secret: str = "emulator-access-key-secret"  # noqa: S105  (a test key, printed at start)
    queues: dict[str, str] = field(default_factory=lambda: {"SmsReport": "Alicom-Queue-i1-SmsReport"})
    token_ttl_seconds: float = 3600.0
    seed: int = 0
    seed_receipts: int = 0
    tls: bool = False
    tls_dir: Path | None = None
    max_long_polls_per_queue: int = 16
    verify_signatures: bool = True
    max_clock_skew_seconds: float = 900.0
    token_allows_visibility_change: bool = True
    token_allows_queue_attributes: bool = True
    expired_token_status: int = 403
    expired_token_code: str = "SecurityTokenExpired"  # noqa: S105  (an error code, not a secret)
    queue_defaults: QueueDefaults = field(default_factory=QueueDefaults)
    hang_seconds_max: float = 3600.0
    account_id: str = MAINLAND_MNS_ACCOUNT
    flow_limits: FlowLimits | None = None
    short_batch_probability: float = 0.0
    wan: WanProfile | None = None
