"""``python -m mns_consumer`` runs the command line interface."""

from __future__ import annotations

from mns_consumer.cli import main

if __name__ == "__main__":
    main()
