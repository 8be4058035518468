"""The Alibaba clients a configuration calls for, built one way for the daemon and for ``check-config --connect``."""

from __future__ import annotations

from collections.abc import Mapping

from mns_consumer.alicom.credentials import resolve_access_key
from mns_consumer.alicom.endpoints import Endpoints
from mns_consumer.alicom.queue import MnsQueue
from mns_consumer.alicom.tokens import DybaseTokenFetcher, TokenFetcher, TokenProvider
from mns_consumer.config import Config, QueueConfig


def token_fetcher(config: Config, endpoints: Endpoints, environ: Mapping[str, str]) -> DybaseTokenFetcher:
    """QueryTokenForMnsQueue with the configured (or environment, or default-chain) AccessKey.

    Raises:
        ConfigError: If the credentials or endpoints cannot be resolved.
    """
    return DybaseTokenFetcher(
        resolve_access_key(config.credentials, environ),
        endpoints,
        connect_timeout_seconds=config.tokens.connect_timeout_seconds,
        read_timeout_seconds=config.tokens.read_timeout_seconds,
    )


def token_provider(config: Config, fetcher: TokenFetcher, queue: QueueConfig) -> TokenProvider:
    """The token cache of one configured queue."""
    return TokenProvider(
        fetcher,
        queue.message_type,
        queue.queue_name,
        refresh_margin_seconds=config.tokens.refresh_margin_seconds,
    )


def queue_client(config: Config, endpoints: Endpoints, queue_name: str, tokens: TokenProvider) -> MnsQueue:
    """An MNS client of one queue (one per thread), signing with the queue's token."""
    return MnsQueue(
        endpoints.mns,
        queue_name,
        tokens.credentials_provider(),
        request_timeout_seconds=config.mns_request_timeout_seconds,
        ca_file=endpoints.ca_file,
    )
