"""The source-agnostic delivery core: MNS, HTTP push and backfill hand their receipts to it."""

from __future__ import annotations

from mns_consumer.delivery.dispatcher import Dispatcher, Item
from mns_consumer.delivery.settle import SinkRetry, write_until_settled
from mns_consumer.errors import Abandoned

__all__ = ["Abandoned", "Dispatcher", "Item", "SinkRetry", "write_until_settled"]
