"""The YAML configuration: pydantic models, ``${VAR}`` interpolation, and errors that say what to write.

Models are strict (a typo must not silently change behaviour) and frozen; secrets are ``SecretStr``.
``${NAME}`` is the environment variable (an error if unset), ``${NAME:-fallback}`` falls back when it
is unset or empty, ``$${`` is a literal ``${``. :func:`load_config` refuses a configuration that cannot
work, with the file, key path and fix, so it never starts a daemon that would crash later.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from mns_consumer.config_paths import check_paths
from mns_consumer.config_secrets import check_secrets
from mns_consumer.config_yaml import join_key, read_yaml
from mns_consumer.errors import ConfigError
from mns_consumer.observe.logging import LoggingConfig
from mns_consumer.observe.metrics import MetricsConfig
from mns_consumer.opt_out import OptOutConfig
from mns_consumer.receipts import MESSAGE_TYPES
from mns_consumer.sinks.base import SinkConfig, known_sink_types, parse_sink_config
from mns_consumer.sinks.dead_letter import DeadLetterSinkConfig

_VARIABLE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _distinct_sinks(value: list[str]) -> list[str]:
    duplicates = sorted({name for name in value if value.count(name) > 1})
    if duplicates:
        raise ValueError(f"sink listed twice: {', '.join(duplicates)}")
    return value


SinkNames = Annotated[
    list[str],
    Field(min_length=1, description="Names (keys of `sinks`) every receipt must reach."),
    AfterValidator(_distinct_sinks),
]
"""The ``sinks`` of a queue or push route: at least one, none twice."""


def host_and_port(listen: str) -> tuple[str, int]:
    """(host, port) to bind, from a valid ``listen`` value (``host:port``, an IPv6 host in brackets)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _port_in_range(listen: str) -> str:
    # The pattern allows five digits; bind() raises OverflowError past 65535, a traceback at start.
    if host_and_port(listen)[1] > 65535:
        raise ValueError("the port must be 0..65535 (0 picks a free one)")
    return listen


Listen = Annotated[str, Field(pattern=r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):[0-9]{1,5}$"), AfterValidator(_port_in_range)]


class StrictModel(BaseModel):
    """Base of every configuration section: unknown keys fail, values are immutable, numbers finite
    (YAML's ``.inf`` passes every ``gt=0`` bound, then crashes or waits forever)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CredentialsConfig(StrictModel):
    """The AccessKey used for QueryTokenForMnsQueue and QuerySendDetails.

    When absent, ``ALIBABA_CLOUD_ACCESS_KEY_ID``/``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` and then the
    ``alibabacloud-credentials`` default chain (ECS RAM role, RRSA/OIDC, credentials file) apply.
    """

    access_key_id: str = Field(description="AccessKey id (not secret, but keep it out of code).")
    access_key_secret: SecretStr = Field(description="AccessKey secret; use ${ALIBABA_CLOUD_ACCESS_KEY_SECRET}.")


class EndpointsConfig(StrictModel):
    """Overrides of the endpoints ``region`` implies; how the emulator is used."""

    dybaseapi: str | None = Field(None, description="host[:port] of Dybaseapi (QueryTokenForMnsQueue).")
    dysmsapi: str | None = Field(None, description="host[:port] of Dysmsapi (QuerySendDetails).")
    mns: str | None = Field(
        None, description="MNS endpoint URL, e.g. https://1943695596114318.mns.cn-hangzhou.aliyuncs.com"
    )
    protocol: str = Field("https", pattern="^https?$", description="Scheme for Dybaseapi and Dysmsapi.")
    ca_file: str | None = Field(None, description="CA bundle to trust for HTTPS endpoints (e.g. the emulator's).")
    proxy: str | None = Field(
        None,
        pattern="^https?://",
        description="Proxy URL (http://host:port) for every MNS, Dybaseapi and Dysmsapi call, instead of "
        "HTTP_PROXY/HTTPS_PROXY; NO_PROXY still exempts hosts. HTTPS is tunnelled through it (CONNECT), so an "
        "https:// proxy is refused for an HTTPS MNS endpoint. Unset: those variables apply.",
    )


class _KeyValueError(ValueError):
    """A section-level check's error that belongs to one key of the section, so its path names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


class _RoutedConfig(StrictModel):
    """What a queue and a push route share: the MessageType they carry and the sinks it goes to."""

    message_type: str = Field(
        description=f"Alibaba MessageType, one of {', '.join(MESSAGE_TYPES)} (others need allow_unknown_message_type)."
    )
    allow_unknown_message_type: bool = Field(
        False,
        description="Accept a message_type this version does not decode (a type Alibaba added later): its messages "
        "are consumed and go to dead_letter with their raw body, for `dead-letters replay` once a version decodes "
        "them. Default: false (an unknown type is a configuration error, as typos are).",
    )
    sinks: SinkNames

    @model_validator(mode="after")
    def _known_type(self) -> _RoutedConfig:
        """Refuse a MessageType this version does not decode (a typo would consume a queue that does not
        exist, or dead-letter every push of a route), unless allowed; an allowed one must look like one."""
        if self.message_type in MESSAGE_TYPES:
            return self
        if not self.allow_unknown_message_type:
            close = difflib.get_close_matches(self.message_type, MESSAGE_TYPES, n=1, cutoff=0.8)
            guess = f"did you mean {close[0]}? " if close else ""
            raise _KeyValueError(
                "message_type",
                f"unknown MessageType {self.message_type!r}; {guess}use one of: {', '.join(MESSAGE_TYPES)}, "
                "or set allow_unknown_message_type: true for a type Alibaba added since",
            )
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{1,63}", self.message_type):
            raise _KeyValueError(
                "message_type",
                f"{self.message_type!r} is not a MessageType (letters and digits, as the console shows it)",
            )
        return self


def _typed_sink(section: Any) -> Any:
    """A ``sinks.<name>`` mapping as its type's model; pydantic reports the model's errors under the sink."""
    if isinstance(section, SinkConfig):
        return section
    if not isinstance(section, Mapping):
        raise ValueError("must be a mapping with a 'type'")
    try:
        return parse_sink_config(section)
    except LookupError as exc:
        raise ValueError(str(exc).strip("'\"")) from None


class QueueConfig(_RoutedConfig):
    """One receipt queue: its MessageType, its QueueName as the console shows it, and its sinks."""

    queue_name: str = Field(min_length=1, description="QueueName copied from the console; never derived.")
    batch_size: int = Field(16, ge=1, le=16, description="Messages per BatchReceiveMessage (MNS limit 16).")
    wait_seconds: int = Field(30, ge=0, le=30, description="Long-poll wait per receive, s (MNS limit 30).")
    in_flight_batches: int = Field(
        8,
        ge=1,
        le=64,
        description="Batches received but not yet deleted; more lets a busy sink write more batches per commit, "
        "batches.",
    )
    batch_linger_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="After a receive that was not full, wait this long before the next, so a trickle comes in "
        "fuller batches (less CPU per receipt, up to this much more latency); 0 receives again at once, ms.",
    )
    extend_visibility: bool = Field(
        True, description="Keep batches invisible (ChangeMessageVisibility) while sinks are slow or down."
    )
    visibility_timeout_seconds: float = Field(
        30.0, ge=5, le=43200, description="Visibility assumed when NextVisibleTime cannot be trusted (clock skew), s."
    )
    visibility_extension_seconds: int = Field(
        60, ge=5, le=43200, description="How far each extension pushes a slow batch's visibility, s."
    )
    max_receivers: int = Field(
        16,
        ge=1,
        le=16,
        description="Concurrent receives while a backlog comes back in full batches (one long poll otherwise); "
        "1 keeps a single receiver, receivers.",
    )
    max_in_flight_messages: int = Field(
        512,
        ge=16,
        le=4096,
        description="Messages received and not yet deleted, all receivers together; keep replicas x this well "
        "under MNS's 5,000 abnormal-consumption limit, messages.",
    )
    max_receipts_per_second: float | None = Field(
        None,
        gt=0,
        description="Receive at most this many messages a second from the queue (a share of an account's "
        "budget); null: no limit, messages/s.",
    )
    max_hold_seconds: float = Field(
        600.0,
        ge=30,
        le=1500,
        description="Longest a received, undeleted message is kept invisible (during a sink outage); past it "
        "its visibility lapses and MNS hands it out again later, well before the 30-minute rule, s.",
    )


class TokensConfig(StrictModel):
    """How queue tokens (QueryTokenForMnsQueue) are fetched and refreshed."""

    refresh_margin_seconds: float = Field(
        120.0, ge=10, le=3600, description="Refresh this long before ExpireTime, s (Alibaba's helpers use 120)."
    )
    connect_timeout_seconds: float = Field(5.0, gt=0, le=60, description="Connect timeout of token calls, s.")
    read_timeout_seconds: float = Field(10.0, gt=0, le=120, description="Read timeout of token calls, s.")
    child_process: bool = Field(
        True,
        description=(
            "Make token calls in a short-lived child process (`python -m mns_consumer.alicom.token_child`, "
            "about half a second of CPU per refresh), so the daemon never loads Alibaba's Tea SDK: about 27 MB "
            "less resident memory; false makes them in the daemon itself."
        ),
    )
    child_start_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description=(
            "Time the token child process may take to start, on top of the connect and read timeouts of "
            "its calls; past it the child is killed and the refresh fails (and is retried), s."
        ),
    )


class HttpConfig(StrictModel):
    """The daemon's own HTTP endpoint: /metrics, /healthz, /readyz."""

    listen: Listen | None = Field(
        "127.0.0.1:9464",
        description="host:port to serve on (0.0.0.0:9464 in a container); null turns the endpoint off.",
    )

    def address(self) -> tuple[str, int] | None:
        """(host, port), or None when turned off."""
        return None if self.listen is None else host_and_port(self.listen)


class BackfillConfig(StrictModel):
    """Defaults of ``mns-consumer backfill`` (QuerySendDetails compensation runs); options override them."""

    concurrency: int = Field(
        4, ge=1, le=32, description="QuerySendDetails calls in flight at once, calls (Alibaba allows 5000/s)."
    )
    page_size: int = Field(50, ge=1, le=50, description="Records per QuerySendDetails page (Alibaba's limit: 50).")
    connect_timeout_seconds: float = Field(5.0, gt=0, le=60, description="Connect timeout of QuerySendDetails, s.")
    read_timeout_seconds: float = Field(10.0, gt=0, le=120, description="Read timeout of QuerySendDetails, s.")
    query_attempts: int = Field(
        5, ge=1, le=20, description="Tries of one page on throttling, 5xx and network errors, tries."
    )
    query_retry_initial_seconds: float = Field(
        0.5, gt=0, le=60, description="First back-off after a failed QuerySendDetails call, s."
    )
    query_retry_max_seconds: float = Field(
        10.0, gt=0, le=600, description="Longest back-off between QuerySendDetails retries, s."
    )
    sink_attempts: int = Field(
        6,
        ge=1,
        le=100,
        description="Tries of a sink write while the sink is unavailable before the run stops (exit 4), tries.",
    )
    batch_size: int = Field(256, ge=1, le=10000, description="Receipts per sink write, receipts.")
    include_pending: bool = Field(
        False, description="Also store sends still waiting for their report (SendStatus 1) as status pending."
    )

    @model_validator(mode="after")
    def _retry_order(self) -> BackfillConfig:
        if self.query_retry_initial_seconds > self.query_retry_max_seconds:
            raise ValueError("query_retry_initial_seconds must not exceed query_retry_max_seconds")
        return self


class PushRouteConfig(_RoutedConfig):
    """One URL of the HTTP push receiver: Alibaba's console takes one URL per MessageType (reference 5).

    The URL path is ``path``, then ``/``, then ``secret`` when one is set. Pushes carry no signature, so
    the secret segment is what keeps strangers from injecting receipts: it is never logged, counted or
    written to dead letters; routes are named by ``name`` instead.
    """

    path: str = Field(
        pattern=r"^/[A-Za-z0-9._~/-]*$",
        description="Public part of the URL path, e.g. /alicom/SmsReport (letters, digits, . _ ~ - /).",
    )
    secret: SecretStr | None = Field(
        None,
        description="Unguessable last path segment (at least 16 URL-safe characters); use ${PUSH_SECRET}.",
    )
    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description='Route name in logs, metrics (queue="push:<name>") and receipts; default: message_type.',
    )

    @field_validator("secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{16,}", value.get_secret_value()):
            # The message must not echo the value: it is a secret.
            raise ValueError(
                "must be at least 16 URL-safe characters (letters, digits, . _ ~ -), e.g. from "
                "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`"
            )
        return value

    @property
    def label(self) -> str:
        """The route's name as logs, metrics, dead letters and receipts' ``queue`` show it."""
        return f"push:{self.name or self.message_type}"

    def url_path(self) -> str:
        """The whole path Alibaba must POST to, secret included: for matching requests only, never to show."""
        base = self.path.rstrip("/")
        return f"{base}/{self.secret.get_secret_value()}" if self.secret is not None else self.path


class PushConfig(StrictModel):
    """The HTTP batch push receiver: Alibaba POSTs JSON arrays of receipts, one URL per MessageType."""

    listen: Listen = Field(
        "0.0.0.0:8080", description="host:port the receiver serves on; port 0 picks a free one (tests)."
    )
    spool_path: str = Field(
        "/var/lib/mns-consumer/spool.db",
        min_length=1,
        description="SQLite file where each push is made durable before it is acknowledged.",
    )
    routes: list[PushRouteConfig] = Field(min_length=1, description="One entry per pushed MessageType URL.")
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, le=1024**3, description="Largest POST body accepted (413 beyond), bytes."
    )
    max_items: int = Field(10000, ge=1, le=1_000_000, description="Most receipts in one POST (413 beyond), receipts.")
    read_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="How long a client may take to send its whole request (line, headers, body), s.",
    )
    max_connections: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Most connections served at once (one thread each; lowered to fit the open-files limit);"
        " beyond it the one waiting longest for its request is closed, connections.",
    )
    tls_cert_file: str | None = Field(
        None, description="PEM certificate chain to serve HTTPS directly; unset: plain HTTP behind a proxy."
    )
    tls_key_file: str | None = Field(None, description="PEM private key of tls_cert_file.")
    spool_batch_entries: int = Field(
        64, ge=1, le=10000, description="Spooled pushes handed to the sinks in one write, pushes."
    )
    spool_batch_receipts: int = Field(
        10000,
        ge=1,
        le=1_000_000,
        description="Most receipts decoded and handed to the sinks in one write (a larger push goes alone),"
        " which bounds the workers' memory, receipts.",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> PushConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        return self

    def address(self) -> tuple[str, int]:
        """(host, port) to bind."""
        return host_and_port(self.listen)


class Config(StrictModel):
    """The whole configuration file."""

    credentials: CredentialsConfig | None = Field(None, description="AccessKey; absent: environment or default chain.")
    region: str = Field("cn-hangzhou", description="Picks the Dybaseapi host and the shared MNS account.")
    endpoints: EndpointsConfig = Field(default_factory=EndpointsConfig, description="Endpoint overrides.")
    queues: list[QueueConfig] = Field(default_factory=list, description="Receipt queues to consume.")
    # SerializeAsAny: dumps show each sink's own fields, not just those of the base class.
    sinks: dict[str, Annotated[SerializeAsAny[SinkConfig], BeforeValidator(_typed_sink)]] = Field(
        default_factory=dict, description="Named sinks; each has a `type` and that type's keys."
    )
    dead_letter: DeadLetterSinkConfig | None = Field(
        None, description="Where undecodable or rejected messages go; required with queues or push."
    )
    push: PushConfig | None = Field(None, description="HTTP batch push receiver; absent: off.")
    tokens: TokensConfig = Field(default_factory=TokensConfig, description="Queue token refresh.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Log level, format and masking.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="Metrics and health endpoint.")
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Optional labels of the delivery metrics, and their cap."
    )
    opt_out: OptOutConfig = Field(
        default_factory=OptOutConfig, description="Which SmsUp replies are flagged opt_out: true."
    )
    backfill: BackfillConfig = Field(
        default_factory=BackfillConfig, description="Defaults of QuerySendDetails backfill runs."
    )
    drain_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="On SIGTERM, how long in-flight batches may take to finish, s."
    )
    mns_request_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Timeout of every MNS call beyond a long poll's own wait, s."
    )
    mns_retry_initial_seconds: float = Field(
        0.5, gt=0, le=60, description="First back-off after a failed MNS receive or delete, s."
    )
    mns_retry_max_seconds: float = Field(
        30.0, gt=0, le=600, description="Longest back-off between failed MNS receives, s."
    )
    sink_retry_initial_seconds: float = Field(0.5, gt=0, le=60, description="First back-off after a sink failure, s.")
    sink_retry_max_seconds: float = Field(30.0, gt=0, le=3600, description="Longest back-off between sink retries, s.")

    @model_validator(mode="after")
    def _references(self) -> Config:
        routes = self.push.routes if self.push is not None else []
        if self.dead_letter is None and (self.queues or routes):
            raise ValueError(
                f"dead_letter is required when {'queues are' if self.queues else 'push is'} configured: undecodable "
                "or rejected receipts must go somewhere (add dead_letter: {type: file, path: "
                "/var/lib/mns-consumer/dead-letter.jsonl})"
            )
        seen: set[tuple[str, str]] = set()
        for index, queue in enumerate(self.queues):
            self._check_defined(f"queues[{index}]", queue.sinks)
            identity = (queue.message_type, queue.queue_name)
            if identity in seen:
                raise ValueError(f"queues[{index}] repeats {queue.message_type} on {queue.queue_name}")
            seen.add(identity)
        labels: set[str] = set()
        paths: set[str] = set()
        for index, route in enumerate(routes):
            self._check_defined(f"push.routes[{index}]", route.sinks)
            if route.label in labels:
                raise ValueError(
                    f"push.routes[{index}] is named {route.label} like an earlier route "
                    "(give each route of one message_type its own name:)"
                )
            if route.url_path() in paths:
                raise ValueError(f"push.routes[{index}] repeats the path and secret of an earlier route")
            labels.add(route.label)
            paths.add(route.url_path())
        return self

    def _check_defined(self, where: str, sinks: list[str]) -> None:
        """A queue or push route may only name sinks that are defined."""
        missing = [name for name in sinks if name not in self.sinks]
        if missing:
            known = ", ".join(sorted(self.sinks)) or "none defined"
            raise ValueError(f"{where}.sinks names undefined sink(s) {', '.join(missing)} (defined: {known})")

    def sinks_for(self, message_type: str, queue_name: str | None = None) -> list[str]:
        """The sink names receipts of a type (from a queue, when given) are routed to."""
        names: list[str] = []
        for source in (*self.queues, *(self.push.routes if self.push is not None else ())):
            source_name = source.queue_name if isinstance(source, QueueConfig) else source.label
            if source.message_type == message_type and queue_name in (None, source_name):
                names.extend(n for n in source.sinks if n not in names)
        return names

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data with every secret masked (a database URL's password
        only, so host and path stay checkable)."""
        return self.model_dump(mode="json")


def interpolate(value: Any, source: str, path: str = "") -> Any:
    """Replace ``${NAME}`` and ``${NAME:-fallback}`` in every string of a parsed YAML tree.

    Raises:
        ConfigError: When a variable without a fallback is not set.
    """
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            escaped, name, fallback = match.group(1), match.group(2), match.group(3)
            if escaped:
                return match.group(0)[1:]
            resolved = os.environ.get(name)
            if resolved is None or (resolved == "" and fallback is not None):
                if fallback is None:
                    raise ConfigError(
                        source,
                        path or "(top level)",
                        f"environment variable {name} is not set",
                        f"export {name}=... or write ${{{name}:-default}}",
                    )
                return fallback
            return resolved

        return _VARIABLE.sub(substitute, value)
    if isinstance(value, Mapping):
        return {key: interpolate(item, source, join_key(path, str(key))) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, source, f"{path}[{index}]") for index, item in enumerate(value)]
    return value


def parse_config(data: Any, source: str) -> Config:
    """Validate already-parsed configuration data (interpolated first), secrets and paths included, so
    data built in code (the demo, tests) is held to the same rules as files.

    Raises:
        ConfigError: Naming the source, the key path and what to write instead.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, "", "the file must hold a mapping of sections", "see config.example.yaml")
    try:
        config = Config.model_validate(interpolate(data, source))
    except ValidationError as exc:
        raise _config_error(exc, source) from None
    check_secrets(config, source)
    check_paths(config, source)
    return config


def load_config(path: str | Path) -> Config:
    """Read, interpolate and validate a YAML configuration file.

    Raises:
        ConfigError: If the file cannot be read, is not UTF-8 YAML within the loader's limits, any value
            is invalid, a secret is a placeholder or too short, or a path can never be opened.
    """
    return parse_config(read_yaml(path), str(path))


_PYDANTIC_ERRORS = {
    "extra_forbidden": ("unknown key", "remove it or check its spelling against config.example.yaml"),
    "missing": ("required key is missing", ""),
    "finite_number": (
        "must be a finite number, not .inf or .nan",
        "give a number in the key's unit; where the key allows null, null means no limit",
    ),
}
"""(message, hint) in place of pydantic's own, by error type."""


def _config_error(error: ValidationError, source: str) -> ConfigError:
    first = error.errors(include_url=False)[0]
    location = [str(part) for part in first["loc"]]
    nested = (first.get("ctx") or {}).get("error")
    if isinstance(nested, _KeyValueError):
        location.append(nested.key)
    message, hint = _PYDANTIC_ERRORS.get(first["type"], (str(first["msg"]).removeprefix("Value error, "), ""))
    if location[:1] == ["sinks"] and "unknown sink type" in message:
        hint = f"use one of: {', '.join(sorted(known_sink_types()))}"
    return ConfigError(source, _format_location(location), message, hint)


def _format_location(parts: list[str]) -> str:
    text = ""
    for part in parts:
        text = f"{text}[{part}]" if part.isdigit() else join_key(text, part)
    return text
