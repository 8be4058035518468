"""A faithful local stand-in for the Alibaba endpoints mns-consumer talks to.

One HTTP(S) server on one port plays MNS (queues, long polling, visibility, receipt handles, the real
error XML), Dybaseapi (``QueryTokenForMnsQueue``) and Dysmsapi (``QuerySendDetails``), signs nothing
and verifies everything, and misbehaves on demand (:mod:`mns_consumer.emulator.faults`). The real
``aliyun-mns-sdk`` and Tea clients talk to it unchanged; see the README's "Emulator" section.
"""

from __future__ import annotations

from mns_consumer.emulator.faults import FaultRule
from mns_consumer.emulator.server import Emulator, running_emulator
from mns_consumer.emulator.settings import EmulatorSettings, QueueDefaults

__all__ = ["Emulator", "EmulatorSettings", "FaultRule", "QueueDefaults", "running_emulator"]
