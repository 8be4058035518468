"""Public helpers for testing code that consumes receipts: the emulator in a context manager.

Example::

    from mns_consumer.testing import running_emulator

    with running_emulator(queues={"SmsUp": "Alicom-Queue-i1-SmsUp"}, seed_receipts=5) as emulator:
        ...  # emulator.url is the MNS endpoint, emulator.endpoint the Dybaseapi/Dysmsapi one
"""

from __future__ import annotations

from mns_consumer.emulator import Emulator, EmulatorSettings, FaultRule, running_emulator

__all__ = ["Emulator", "EmulatorSettings", "FaultRule", "running_emulator"]
