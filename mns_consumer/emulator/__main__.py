"""``python -m mns_consumer.emulator`` is ``mns-consumer emulator``."""

from __future__ import annotations

from mns_consumer.cli import emulator_main

if __name__ == "__main__":
    emulator_main()
