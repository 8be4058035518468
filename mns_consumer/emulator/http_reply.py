"""The one value every emulator API handler returns: a complete HTTP answer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Reply:
    """Status, headers and body of an HTTP response, before it reaches the socket."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, text: str, headers: dict[str, str] | None = None) -> Reply:
        """A JSON answer; ``text`` is already serialised."""
        merged = {"Content-Type": "application/json;charset=utf-8", **(headers or {})}
        return cls(status, text.encode("utf-8"), merged)
