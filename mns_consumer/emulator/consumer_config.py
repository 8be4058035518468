"""The mns-consumer configuration that consumes a running emulator (``emulator --print-config``, the demo)."""

from __future__ import annotations

from pathlib import Path


def emulator_config(described: dict[str, object], data_dir: Path) -> dict[str, object]:
    """A configuration that consumes every queue of a running emulator into SQLite and files."""
    queues = described["queues"]
    assert isinstance(queues, dict)  # noqa: S101  (describe() builds it)
    folder = data_dir.resolve()
    endpoints: dict[str, object] = {
        "dybaseapi": described["dybaseapi_endpoint"],
        "dysmsapi": described["dysmsapi_endpoint"],
        "mns": described["mns_endpoint"],
        "protocol": described["protocol"],
    }
    if described["ca_file"]:
        endpoints["ca_file"] = described["ca_file"]
    return {
        "credentials": {
            "access_key_id": described["access_key_id"],
            "access_key_secret": described["access_key_secret"],
        },
        "endpoints": endpoints,
        "queues": [
            {"message_type": message_type, "queue_name": queue_name, "sinks": ["db", "archive"]}
            for message_type, queue_name in queues.items()
        ],
        "sinks": {
            "db": {"type": "database", "url": f"sqlite:///{folder / 'receipts.db'}"},
            "archive": {"type": "file", "path": str(folder / "{message_type}.jsonl")},
        },
        "dead_letter": {"type": "file", "path": str(folder / "dead-letter.jsonl")},
    }
