"""A faithful local stand-in for the Alibaba endpoints mns-consumer talks to.

One HTTP(S) server on one port plays MNS (queues, long polling, visibility, receipt handles, the real
error XML), Dybaseapi (``QueryTokenForMnsQueue``) and Dysmsapi (``QuerySendDetails``), signs nothing
and verifies everything, and misbehaves on demand (:mod:`mns_consumer.emulator.faults`); it throttles
(:mod:`~mns_consumer.emulator.flow_limiter`), cuts batches short and adds WAN latency when asked.
The real ``aliyun-mns-sdk`` and Tea clients talk to it unchanged; see the README's "Emulator" section.

The public names are imported on first use, so ``mns-consumer`` commands that only declare emulator
options (:mod:`mns_consumer.emulator.cli_options`) do not pay for the server and its TLS machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mns_consumer.emulator.faults import FaultRule
    from mns_consumer.emulator.flow_limiter import FlowLimits
    from mns_consumer.emulator.server import Emulator, running_emulator
    from mns_consumer.emulator.settings import EmulatorSettings, QueueDefaults
    from mns_consumer.emulator.wan import WanProfile

__all__ = ["Emulator", "EmulatorSettings", "FaultRule", "FlowLimits", "QueueDefaults", "WanProfile", "running_emulator"]

_HOMES = {
    "Emulator": "server",
    "running_emulator": "server",
    "EmulatorSettings": "settings",
    "QueueDefaults": "settings",
    "FaultRule": "faults",
    "FlowLimits": "flow_limiter",
    "WanProfile": "wan",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
