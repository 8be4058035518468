"""The file sink's environment for the contract suite: a temporary folder of per-MessageType JSONL files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import Sink
from mns_consumer.sinks.file import FileSinkConfig


class FileSinkEnv:
    """A folder the file sink writes ``{message_type}.jsonl`` files into.

    Making it unavailable renames the folder away and puts a regular file at its path. Opening or
    creating anything below it then fails with NotADirectoryError or FileExistsError, even for root. A
    handle the sink already holds stays usable, but the sink notices on its next write, because the
    inode at its path no longer matches its open file.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "file-sink"
        self._away = tmp_path / "file-sink.away"

    def make_sink(self) -> Sink:
        """A file sink writing one file per MessageType into the folder."""
        return FileSinkConfig(type="file", path=str(self.folder / "{message_type}.jsonl")).build("archive")

    def stored_keys(self) -> list[str]:
        """The dedupe key of every line of every JSONL file below the folder."""
        keys: list[str] = []
        for path in sorted(self.folder.rglob("*.jsonl")):
            keys.extend(json.loads(line)["dedupe_key"] for line in path.read_text(encoding="utf-8").splitlines())
        return keys

    def rejectable(self, base: Receipt) -> Receipt | None:
        """None: the file sink stores every receipt."""
        return None

    def make_unavailable(self) -> None:
        """Move the folder away and block its path with a regular file."""
        self.folder.rename(self._away)
        self.folder.write_bytes(b"not a folder")

    def restore(self) -> None:
        """Remove the blocking file and put the folder back."""
        self.folder.unlink()
        self._away.rename(self.folder)

    def close(self) -> None:
        """Remove the folder (pytest's tmp_path would, but only after many runs)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self._away, ignore_errors=True)


def make_env(kind: str, tmp_path: Path) -> FileSinkEnv:
    """The environment of the ``file`` sink kind.

    Raises:
        ValueError: For any other kind.
    """
    if kind != "file":
        raise ValueError(f"sink_env_file makes only the 'file' environment, not {kind!r}")
    return FileSinkEnv(tmp_path)
