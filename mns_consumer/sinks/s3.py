"""Archive receipts as gzip JSON Lines objects in S3 or an S3-compatible store (Alibaba OSS, MinIO).

Needs the extra ``mns-consumer[s3]`` (boto3); this module imports without it. Each ``write`` puts one
object per message type at ``{prefix}{type}/YYYY/MM/DD/HHMMSS-{digest}.jsonl.gz``: the time is when
the sink first attempted that exact set of receipts, so a retry overwrites rather than duplicates a
PutObject whose answer was lost; equal content gives equal bytes (gzip mtime 0). The last
``dedupe_window`` keys stored are skipped, and :meth:`S3Sink.open` refills that memory from the newest
objects of today and yesterday, across restarts. The sink never rejects: every failure raises
:class:`~mns_consumer.errors.SinkUnavailable`, and botocore's own retries are off so that the
dispatcher's back-off is the only one.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib
import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from mns_consumer.errors import ConfigError, SinkUnavailable
from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.base import SinkConfig, SinkResult, compact_json, first_unseen, keys_digest
from mns_consumer.sinks.recent_keys import DEFAULT_CAPACITY, RecentKeys

OBJECT_SUFFIX = ".jsonl.gz"
DIGEST_HEX_CHARS = 16
_MISSING_BUCKET_CODES = frozenset({"404", "NoSuchBucket"})
_FORBIDDEN_CODES = frozenset(
    {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
# Enough to recognise a retry of any batch still being retried, bounded so memory stays flat.
_ATTEMPT_MEMORY = 4096


class S3SinkConfig(SinkConfig):
    """``type: s3``: gzip JSON Lines objects in an S3 bucket (AWS, Alibaba OSS, MinIO, ...)."""

    type: Literal["s3"] = Field(default="s3", description="Sink type name.")
    bucket: str = Field(min_length=3, max_length=63, description="Bucket name; it must exist.")
    prefix: str = Field(
        default="receipts/", description="Key prefix: empty, or ending with '/' and not starting with it."
    )
    endpoint_url: str | None = Field(
        default=None,
        description="S3 API endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com for OSS or a MinIO URL. Default: AWS.",
    )
    region: str | None = Field(default=None, description="Signing region, e.g. cn-hangzhou. Default: boto3's chain.")
    access_key_id: SecretStr | None = Field(
        default=None, description="Access key id; with secret_access_key, or neither for boto3's default chain."
    )
    secret_access_key: SecretStr | None = Field(default=None, description="Secret access key. Default: unset.")
    addressing_style: Literal["auto", "virtual", "path"] = Field(
        default="auto", description="Bucket in the host name (virtual, which OSS requires) or in the path."
    )
    ca_file: str | None = Field(
        default=None, description="PEM bundle to verify the endpoint's certificate with. Default: boto3's."
    )
    connect_timeout_seconds: float = Field(default=5.0, gt=0, description="Connect timeout, seconds.")
    read_timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout waiting for a response, seconds.")
    dedupe_window: int = Field(
        default=DEFAULT_CAPACITY, ge=1, description="How many recently stored dedupe keys are remembered, keys."
    )
    dedupe_scan_max_objects: int = Field(
        default=2000,
        ge=0,
        description="Most objects read at open to refill the dedupe window (newest first), objects; 0 skips it.",
    )

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if value and (not value.endswith("/") or value.startswith("/")):
            raise ValueError("must be empty, or end with '/' and not start with '/' (e.g. 'receipts/')")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _check_keys(self) -> S3SinkConfig:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither for boto3's default chain")
        return self

    def build(self, name: str) -> S3Sink:
        """The sink ``sinks.<name>``, not opened yet; ConfigError if boto3 is not installed."""
        _import_boto3(name)
        return S3Sink(name, self)


def object_key(prefix: str, message_type: str, first_attempt: datetime, dedupe_keys: Iterable[str]) -> str:
    """The key of the object holding receipts with these dedupe keys, first attempted at ``first_attempt``."""
    at = first_attempt.astimezone(UTC)
    return f"{prefix}{message_type}/{at:%Y/%m/%d/%H%M%S}-{keys_digest(dedupe_keys)[:DIGEST_HEX_CHARS]}{OBJECT_SUFFIX}"


def encode_object(receipts: Sequence[Receipt]) -> bytes:
    """The gzip JSON Lines body of an object holding these receipts, identical for identical input."""
    lines = "".join(compact_json(receipt.to_json_dict()) + "\n" for receipt in receipts)
    return gzip.compress(lines.encode("utf-8"), mtime=0)


def decode_object_keys(body: bytes) -> list[str]:
    """The dedupe keys in a body :func:`encode_object` wrote; ValueError if it is not one."""
    try:
        text = gzip.decompress(body).decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(f"not gzip UTF-8: {exc}") from exc
    keys: list[str] = []
    for line in filter(str.strip, text.splitlines()):
        data = json.loads(line)
        if not isinstance(data, dict) or not isinstance(data.get("dedupe_key"), str):
            raise ValueError("a line without a dedupe_key")
        keys.append(data["dedupe_key"])
    return keys


def _import_boto3(name: str) -> Any:
    try:
        return importlib.import_module("boto3")
    except ImportError as exc:
        raise ConfigError(
            f"sinks.{name}", "type", "the s3 sink needs boto3, which is not installed", "install mns-consumer[s3]"
        ) from exc


class S3Sink:
    """Puts receipts into the configured bucket; its boto3 client is thread-safe, so pollers may share it.

    ``clock`` (timezone-aware, the system clock by default) dates object keys and the days read at open.
    """

    def __init__(self, name: str, config: S3SinkConfig, *, clock: Callable[[], datetime] | None = None) -> None:
        self.name = name
        self.config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._recent = RecentKeys(config.dedupe_window)
        self._attempts: OrderedDict[str, datetime] = OrderedDict()
        self._attempts_lock = threading.Lock()
        self._client: Any = None
        self._errors: tuple[type[Exception], ...] = ()

    def __repr__(self) -> str:
        return f"S3Sink(name={self.name!r}, bucket={self.config.bucket!r}, prefix={self.config.prefix!r})"

    def open(self) -> None:
        """Connect, check the bucket, and refill the dedupe window from today's and yesterday's objects.

        Raises:
            ConfigError: If boto3 is missing, the client cannot be configured (an unknown profile), the
                bucket does not exist, or access is denied.
            SinkUnavailable: If the store cannot be reached or fails now.
        """
        self._connect(preload=True)

    def probe(self) -> str:
        """HeadBucket once and close (``check-config --connect``); raises as :meth:`open` does."""
        try:
            self._connect(preload=False)
        finally:
            self.close()
        return f"HeadBucket on bucket {self.config.bucket!r} answered"

    def _connect(self, *, preload: bool) -> None:
        boto3 = _import_boto3(self.name)
        botocore_config: Any = importlib.import_module("botocore.config")
        exceptions: Any = importlib.import_module("botocore.exceptions")
        self._errors = (exceptions.ClientError, exceptions.BotoCoreError)
        config = self.config
        client_config = botocore_config.Config(
            connect_timeout=config.connect_timeout_seconds,
            read_timeout=config.read_timeout_seconds,
            # The dispatcher owns retries; total_max_attempts counts the first try (max_attempts would add one).
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": config.addressing_style},
            # OSS and older MinIO refuse the CRC32 trailers boto3 adds by default; Content-MD5 covers integrity.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            # A private session: boto3's default one is shared process-wide and not thread-safe to create.
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=config.endpoint_url,
                region_name=config.region,
                aws_access_key_id=config.access_key_id.get_secret_value() if config.access_key_id else None,
                aws_secret_access_key=config.secret_access_key.get_secret_value() if config.secret_access_key else None,
                verify=config.ca_file,
                config=client_config,
            )
        except exceptions.BotoCoreError as exc:
            # E.g. AWS_PROFILE naming a profile that does not exist.
            raise ConfigError(f"sinks.{self.name}", "", f"cannot create the S3 client: {exc}") from exc
        try:
            self._client.head_bucket(Bucket=config.bucket)
            if preload:
                self._preload()
        except self._errors as exc:
            self.close()
            code, where = _error_code(exc), f"sinks.{self.name}"
            if code in _MISSING_BUCKET_CODES:
                raise ConfigError(
                    where, "bucket", f"bucket {config.bucket!r} does not exist", "create it first"
                ) from exc
            if code in _FORBIDDEN_CODES:
                problem = f"access to bucket {config.bucket!r} denied ({code})"
                hint = "grant s3:ListBucket, s3:GetObject and s3:PutObject on it"
                raise ConfigError(where, "access_key_id", problem, hint) from exc
            raise SinkUnavailable(self.name, self._describe(exc)) from exc

    def _preload(self) -> None:
        limit = self.config.dedupe_scan_max_objects
        if limit == 0:
            return
        today = self._clock().astimezone(UTC)
        days = [f"{day:%Y/%m/%d}/" for day in (today, today - timedelta(days=1))]
        found: list[tuple[str, str]] = []
        for type_prefix in self._list(self.config.prefix, "CommonPrefixes[].Prefix", Delimiter="/"):
            for day in days:
                keys = self._list(type_prefix + day, "Contents[].Key")
                found += [(key[len(type_prefix) :], key) for key in keys if key.endswith(OBJECT_SUFFIX)]
        # Keys sort by their date and HHMMSS after the type prefix, so this is newest first.
        newest = [key for _, key in sorted(found, reverse=True)[:limit]]
        with ThreadPoolExecutor(max_workers=8) as pool:
            contents = list(pool.map(self._read_keys, newest))
        # Oldest first, so the newest keys are the last the bounded window evicts.
        for keys in reversed(contents):
            self._recent.add_all(keys)

    def _list(self, prefix: str, field: str, **arguments: str) -> list[str]:
        """``field`` of every page of ListObjectsV2 under ``prefix`` (a JMESPath expression)."""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.config.bucket, Prefix=prefix, **arguments
        )
        return [str(value) for value in pages.search(field) if value is not None]

    def _read_keys(self, key: str) -> list[str]:
        try:
            response = self._client.get_object(Bucket=self.config.bucket, Key=key)
        except self._errors as exc:
            if _error_code(exc) in ("404", "NoSuchKey"):
                return []
            raise
        with response["Body"] as stream:
            body: bytes = stream.read()
        try:
            return decode_object_keys(body)
        except ValueError:
            # Another writer's object under our prefix says nothing about what we stored; skip it.
            return []

    def write(self, batch: Sequence[Receipt]) -> SinkResult:
        """Put one object per message type holding the receipts not stored recently; all are accepted.

        Raises:
            SinkUnavailable: If any PutObject fails; objects put before it stay stored and remembered.
            RuntimeError: If the sink was not opened.
        """
        if self._client is None:
            raise RuntimeError(f"s3 sink {self.name!r} is not open")
        unique, fresh = first_unseen(batch, self._recent)
        by_type: dict[str, list[Receipt]] = {}
        for receipt in fresh:
            by_type.setdefault(receipt.message_type, []).append(receipt)
        for message_type, receipts in sorted(by_type.items()):
            self._put(message_type, receipts)
        return SinkResult(accepted=unique)

    def _put(self, message_type: str, receipts: Sequence[Receipt]) -> None:
        keys = [receipt.dedupe_key for receipt in receipts]
        identity = keys_digest([message_type, *keys])
        with self._attempts_lock:
            first_attempt = self._attempts.setdefault(identity, self._clock())
            self._attempts.move_to_end(identity)
            while len(self._attempts) > _ATTEMPT_MEMORY:
                self._attempts.popitem(last=False)
        body = encode_object(receipts)
        try:
            self._client.put_object(
                Bucket=self.config.bucket,
                Key=object_key(self.config.prefix, message_type, first_attempt, keys),
                Body=body,
                ContentMD5=base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii"),
                ContentType="application/x-ndjson",
                ContentEncoding="gzip",
            )
        except self._errors as exc:
            raise SinkUnavailable(self.name, self._describe(exc)) from exc
        self._recent.add_all(keys)
        with self._attempts_lock:
            self._attempts.pop(identity, None)

    def _describe(self, exc: Exception) -> str:
        code = _error_code(exc)
        if code:
            status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            return f"{code} (HTTP {status}) from bucket {self.config.bucket!r}"
        return f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Close the client's connection pool; the sink is not used afterwards."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _error_code(exc: Exception) -> str:
    """The S3 error code of a botocore ClientError (which alone carries ``response``), else ``""``."""
    response: Any = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


__all__ = ["S3Sink", "S3SinkConfig", "decode_object_keys", "encode_object", "object_key"]
