"""The MNS clients a configuration calls for, built one way for the daemon and for ``check-config --connect``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mns_consumer.alicom.credentials import resolve_access_key
from mns_consumer.alicom.endpoints import Endpoints
from mns_consumer.alicom.queue import MnsQueue
from mns_consumer.alicom.token_process import ChildProcessTokenFetcher
from mns_consumer.alicom.tokens import TokenFetcher, TokenProvider
from mns_consumer.config import Config, QueueConfig

if TYPE_CHECKING:
    # Imported when called: the Tea SDK behind DybaseTokenFetcher is left to the token child process
    # unless configured otherwise.
    from mns_consumer.alicom.dybase import DybaseTokenFetcher


def token_fetcher(
    config: Config, endpoints: Endpoints, environ: Mapping[str, str]
) -> ChildProcessTokenFetcher | DybaseTokenFetcher:
    """QueryTokenForMnsQueue with the configured (or environment, or default-chain) AccessKey.

    In a child process per refresh unless ``tokens.child_process`` is false.

    Raises:
        ConfigError: If the credentials or endpoints cannot be resolved.
    """
    credentials = resolve_access_key(config.credentials, environ)
    tokens = config.tokens
    if tokens.child_process:
        return ChildProcessTokenFetcher(
            credentials,
            endpoints,
            connect_timeout_seconds=tokens.connect_timeout_seconds,
            read_timeout_seconds=tokens.read_timeout_seconds,
            start_timeout_seconds=tokens.child_start_timeout_seconds,
        )
    from mns_consumer.alicom.dybase import DybaseTokenFetcher  # noqa: PLC0415  (see TYPE_CHECKING above)

    return DybaseTokenFetcher(
        credentials,
        endpoints,
        connect_timeout_seconds=tokens.connect_timeout_seconds,
        read_timeout_seconds=tokens.read_timeout_seconds,
    )


def token_provider(config: Config, fetcher: TokenFetcher, queue: QueueConfig) -> TokenProvider:
    """The token cache of one configured queue."""
    return TokenProvider(
        fetcher, queue.message_type, queue.queue_name, refresh_margin_seconds=config.tokens.refresh_margin_seconds
    )


def queue_client(config: Config, endpoints: Endpoints, queue_name: str, tokens: TokenProvider) -> MnsQueue:
    """An MNS client of one queue (one per thread), signing with the queue's token."""
    return MnsQueue(
        endpoints.mns,
        queue_name,
        tokens.credentials_provider(),
        request_timeout_seconds=config.mns_request_timeout_seconds,
        ca_file=endpoints.ca_file,
        proxy=endpoints.proxy_for(endpoints.mns),
    )
