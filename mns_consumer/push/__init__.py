"""Alibaba's HTTP batch push mode: a receiver that spools each push durably before acknowledging it,
and workers that deliver the spool to the sinks with the same semantics as the MNS path."""

from __future__ import annotations

from mns_consumer.push.receiver import PushReceiver
from mns_consumer.push.service import PushService
from mns_consumer.push.spool import Spool, SpoolEntry
from mns_consumer.push.worker import SpoolWorker

__all__ = ["PushReceiver", "PushService", "Spool", "SpoolEntry", "SpoolWorker"]
