"""mns-consumer: drain Alibaba Cloud SMS receipts into durable sinks, at least once.

The package also ships a faithful local emulator of the Alibaba endpoints it talks to
(:mod:`mns_consumer.emulator`), so the daemon, its tests and its demo run without an Alibaba account.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
