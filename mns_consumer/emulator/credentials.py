"""Who may call the emulator: master AccessKeys and the temporary queue tokens minted from them.

A master AccessKey (the customer's own) may call Dybaseapi, Dysmsapi and, like a queue owner, any MNS
operation on any queue; this is how tests and external tools seed queues. A temporary credential from
``QueryTokenForMnsQueue`` is scoped to one queue, expires at its ExpireTime, and only works together
with its ``security-token`` (reference 2.4, 3.1, 3.3).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, replace

from mns_consumer.emulator.clock import Clock


@dataclass(frozen=True)
class TemporaryCredential:
    """An STS-style credential for one queue, as QueryTokenForMnsQueue hands it out."""

    access_key_id: str
    access_key_secret: str
    security_token: str
    message_type: str
    queue_name: str
    created_at: float
    expires_at: float


class CredentialStore:
    """Thread-safe registry of master keys and the temporary credentials minted for queues."""

    def __init__(self, clock: Clock, token_ttl_seconds: float) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._masters: dict[str, str] = {}
        self._temporary: dict[str, TemporaryCredential] = {}
        self.token_ttl_seconds = token_ttl_seconds

    def add_master_key(self, access_key_id: str, access_key_secret: str) -> None:
        """Allow a master AccessKey pair."""
        with self._lock:
            self._masters[access_key_id] = access_key_secret

    def master_secret(self, access_key_id: str) -> str | None:
        """The secret of a master AccessKey, or None when the id is unknown."""
        with self._lock:
            return self._masters.get(access_key_id)

    def mint(self, message_type: str, queue_name: str) -> TemporaryCredential:
        """Create a fresh temporary credential for one queue, valid for ``token_ttl_seconds``."""
        now = self._clock.now()
        # Whole seconds: ExpireTime has second resolution, and the credential must not outlive it.
        created = float(int(now))
        credential = TemporaryCredential(
            access_key_id="STS." + secrets.token_hex(12),
            access_key_secret=secrets.token_urlsafe(30),
            security_token="CAIS" + secrets.token_urlsafe(180),
            message_type=message_type,
            queue_name=queue_name,
            created_at=created,
            expires_at=created + self.token_ttl_seconds,
        )
        with self._lock:
            self._prune(now)
            self._temporary[credential.access_key_id] = credential
        return credential

    def temporary(self, access_key_id: str) -> TemporaryCredential | None:
        """The temporary credential with this id, expired or not, or None when unknown."""
        with self._lock:
            return self._temporary.get(access_key_id)

    def expire_all(self) -> int:
        """Make every temporary credential expire now (a fault switch). Returns how many were live."""
        now = self._clock.now()
        with self._lock:
            live = [c for c in self._temporary.values() if c.expires_at > now]
            for credential in live:
                self._temporary[credential.access_key_id] = replace(credential, expires_at=now)
            return len(live)

    def live_count(self) -> int:
        """How many temporary credentials have not expired yet."""
        now = self._clock.now()
        with self._lock:
            return sum(1 for c in self._temporary.values() if c.expires_at > now)

    def _prune(self, now: float) -> None:
        # Keep expired credentials for an hour so their use still gets "expired", not "unknown key".
        horizon = now - 3600
        stale = [key for key, c in self._temporary.items() if c.expires_at < horizon]
        for key in stale:
            del self._temporary[key]
