"""The sink interface, its result type, the config base class and the registry of sink types.

A sink is anything with ``name``, ``open()``, ``write(batch) -> SinkResult`` and ``close()``; it need
not inherit from anything (:class:`Sink` is a structural Protocol). The contract:

* ``write`` returns only once every receipt it reports as accepted is durable (fsynced, committed,
  acknowledged by the remote end). A receipt already stored (same ``dedupe_key``) counts as accepted:
  that is how duplicates are absorbed.
* A receipt the sink will never accept (it violates the sink's own constraints) is reported in
  ``SinkResult.rejected`` with a reason; it goes to the dead-letter sink. That is data, not an error.
* A transient failure of the whole call (server down, timeout, disk full) raises
  :class:`~mns_consumer.errors.SinkUnavailable`; nothing of the batch is assumed stored, and the
  caller retries later. The next ``write`` must work again once the cause is gone (reconnecting on its
  own if needed).
* Anything else raised is a bug in the sink.

Retries, timing, metrics, logging and dead-lettering live in the dispatcher, not in sinks.

New sink types register a :class:`SinkConfig` subclass, either built in (:data:`BUILTIN_SINK_TYPES`)
or from another distribution through the entry-point group ``mns_consumer.sinks``::

    [project.entry-points."mns_consumer.sinks"]
    kafka = "my_package.kafka:KafkaSinkConfig"
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, ClassVar, Final, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.recent_keys import RecentKeys

compact_json: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""Compact JSON keeping non-ASCII text; one encoder built once (json.dumps with options builds one per call)."""


@dataclass(frozen=True)
class SinkResult:
    """What a sink did with a batch.

    Attributes:
        accepted: Dedupe keys now durably stored (or stored before: duplicates count as accepted).
        rejected: Dedupe key -> permanent reason, for receipts this sink will never accept.
    """

    accepted: frozenset[str] = frozenset()
    rejected: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def accept_all(cls, batch: Sequence[Receipt]) -> SinkResult:
        """Every receipt of the batch accepted."""
        return cls(accepted=frozenset(r.dedupe_key for r in batch))


def keys_digest(dedupe_keys: Iterable[str]) -> str:
    """The hex SHA-256 of the sorted keys joined with newlines: one name for a set of receipts, in any order."""
    return hashlib.sha256("\n".join(sorted(dedupe_keys)).encode("utf-8")).hexdigest()


def first_unseen(batch: Sequence[Receipt], recent: RecentKeys | None) -> tuple[frozenset[str], list[Receipt]]:
    """The batch's dedupe keys, and the first receipt of each key ``recent`` does not remember, in batch order."""
    unique: dict[str, Receipt] = {}
    for receipt in batch:
        unique.setdefault(receipt.dedupe_key, receipt)
    return frozenset(unique), [unique[key] for key in (recent.unseen(unique) if recent is not None else unique)]


@runtime_checkable
class Sink(Protocol):
    """Where receipts are stored. See the module docstring for the contract."""

    name: str

    def open(self) -> None:
        """Acquire resources (files, connections, tables) once before the first write.

        Raises:
            SinkUnavailable: If the destination cannot be reached now.
            ConfigError: If the destination exists but cannot ever work (e.g. an incompatible table).
        """

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
        """Store a batch durably; see the module docstring for what to return and raise."""

    def close(self) -> None:
        """Flush and release everything; the sink is not used afterwards."""


@runtime_checkable
class Reopenable(Protocol):
    """A sink holding file handles that log rotation must be able to reopen (SIGHUP)."""

    def reopen(self) -> None:
        """Close and reopen the sink's files at their configured paths."""


@runtime_checkable
class Probeable(Protocol):
    """A sink that can check its destination without storing anything (``check-config --connect``).

    Optional: a sink without ``probe`` is checked by opening and closing it, which proves less.
    """

    def probe(self) -> str:
        """Reach the destination once, as a write would, changing nothing there; called on an unopened sink.

        Returns:
            What was seen, for one report line (never a secret).

        Raises:
            SinkUnavailable: If the destination cannot be reached or refuses the check now.
            ConfigError: If it can never work as configured.
        """


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be stored: kept with everything needed to explain and replay it.

    Attributes:
        message_type: The MessageType the body was decoded as.
        source: ``mns``, ``push`` or ``query``.
        queue: The queue (or push route) it came from.
        raw: The body exactly as received.
        reason: Why it is here (a decode error, or a sink's rejection reason).
        message_id: The MNS MessageId, if it came from MNS.
        dequeue_count: How often MNS had delivered it (the attempt count).
        sink: The sink that rejected it, when a sink did.
        dedupe_key: The receipt's dedupe key, when it was decoded.
        failed_at: When it was dead-lettered.
    """

    message_type: str
    source: str
    queue: str | None
    raw: bytes
    reason: str
    failed_at: datetime
    message_id: str | None = None
    dequeue_count: int | None = None
    sink: str | None = None
    dedupe_key: str | None = None


class DeadLetterSink(Protocol):
    """Where undecodable or rejected messages go; ``write`` returns once they are durable."""

    name: str

    def open(self) -> None:
        """Acquire resources."""

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Store dead letters durably.

        Raises:
            SinkUnavailable: If they could not be stored; the messages then stay in MNS.
        """

    def close(self) -> None:
        """Flush and release everything."""


class SinkConfig(BaseModel):
    """Base of every sink's configuration model: subclasses set ``type`` to a ``Literal`` and implement ``build``.

    ``allow_inf_nan=False`` is inherited: no sink setting is meaningful as ``.inf`` or ``.nan``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    type: str
    sink_type: ClassVar[str] = ""

    def build(self, name: str) -> Sink:
        """Create the sink described by this configuration (not opened yet)."""
        raise NotImplementedError


BUILTIN_SINK_TYPES: dict[str, str] = {
    "file": "mns_consumer.sinks.file:FileSinkConfig",
    "database": "mns_consumer.sinks.database:DatabaseSinkConfig",
    "webhook": "mns_consumer.sinks.webhook:WebhookSinkConfig",
    "s3": "mns_consumer.sinks.s3:S3SinkConfig",
}
"""Built-in sink types and where their config models live (imported on first use, so optional
extras such as boto3 are only needed when their sink is configured)."""


def known_sink_types() -> dict[str, str]:
    """Every sink type name -> where its config model lives, built-ins first, then entry points."""
    known = dict(BUILTIN_SINK_TYPES)
    for entry_point in entry_points(group="mns_consumer.sinks"):
        known.setdefault(entry_point.name, entry_point.value)
    return known


def sink_config_class(type_name: str) -> type[SinkConfig]:
    """The config model of a sink type.

    Raises:
        LookupError: If no built-in or installed plugin provides the type; the message lists the known ones.
        ImportError: If the type's module (or its optional dependency) cannot be imported.
    """
    known = known_sink_types()
    if (target := known.get(type_name)) is None:
        raise LookupError(f"unknown sink type {type_name!r}; known types: {', '.join(sorted(known))}")
    module_name, _, attribute = target.partition(":")
    loaded: Any = getattr(import_module(module_name), attribute)
    if not (isinstance(loaded, type) and issubclass(loaded, SinkConfig)):
        raise TypeError(f"{target} is not a SinkConfig subclass")
    return loaded


def parse_sink_config(data: Mapping[str, Any]) -> SinkConfig:
    """Validate one ``sinks.<name>`` mapping into its type's config model.

    Raises:
        LookupError: For an unknown ``type``.
        pydantic.ValidationError: For invalid fields.
    """
    type_name = data.get("type")
    if not isinstance(type_name, str):
        raise LookupError(f"every sink needs a 'type'; known types: {', '.join(sorted(known_sink_types()))}")
    return sink_config_class(type_name).model_validate(dict(data))
