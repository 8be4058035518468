"""Which AccessKey signs QueryTokenForMnsQueue (and QuerySendDetails): configuration, environment, default chain.

The order is the one the configuration documents:

1. the ``credentials`` section of the configuration;
2. ``ALIBABA_CLOUD_ACCESS_KEY_ID`` and ``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` (plus
   ``ALIBABA_CLOUD_SECURITY_TOKEN`` when the key is an STS one);
3. the ``alibabacloud-credentials`` default chain: ECS RAM role, RRSA/OIDC, the credentials file.

The result is an :data:`AccessKeySource`, which knows how to appear in a Tea ``Config``
(:meth:`AccessKey.tea_config_fields`) and how to appear in a log line (``describe()``, which never
shows a secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from mns_consumer.config import CredentialsConfig
from mns_consumer.errors import ConfigError

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
"""The environment variable holding the AccessKey id (the name every Alibaba SDK reads)."""

ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105  (a variable name, not a secret)
"""The environment variable holding the AccessKey secret."""

ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105  (a variable name, not a secret)
"""The environment variable holding an STS security token, when the AccessKey is temporary."""


@dataclass(frozen=True)
class AccessKey:
    """An explicit AccessKey pair (optionally an STS one).

    Attributes:
        access_key_id: The AccessKey id; safe to log.
        access_key_secret: The AccessKey secret; never logged, left out of ``repr``.
        security_token: The STS token of a temporary AccessKey, else None; left out of ``repr``.
        origin: Where the key came from (``configuration`` or ``environment``), for logs.
    """

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    origin: str = field(default="configuration", compare=False)

    def describe(self) -> str:
        """A log-safe description: the id and where it came from, never the secret."""
        kind = "STS AccessKey" if self.security_token else "AccessKey"
        return f"{kind} {self.access_key_id} from {self.origin}"

    def tea_config_fields(self) -> dict[str, object]:
        """The keyword arguments of ``alibabacloud_tea_openapi.models.Config`` that carry this key."""
        fields: dict[str, object] = {
            "access_key_id": self.access_key_id,
            "access_key_secret": self.access_key_secret,
        }
        if self.security_token:
            fields["security_token"] = self.security_token
        return fields


@dataclass(frozen=True)
class DefaultCredentialChain:
    """The ``alibabacloud-credentials`` default chain, resolved lazily by the Tea client on each call.

    Building it does nothing: the chain's client is created in :meth:`tea_config_fields` (which starts
    the library's background refresh thread for ECS RAM roles) and asked for a key on the first request.
    """

    def describe(self) -> str:
        """A log-safe description."""
        return "default credential chain"

    def tea_config_fields(self) -> dict[str, object]:
        """The ``credential=`` keyword argument of a Tea ``Config``: a new default-chain client."""
        # Imported here: only the process that builds a Tea client needs the library (and its
        # requests and cryptography), which the daemon leaves to its token child process.
        from alibabacloud_credentials.client import Client as CredentialClient  # noqa: PLC0415

        return {"credential": CredentialClient()}


AccessKeySource: TypeAlias = AccessKey | DefaultCredentialChain
"""How QueryTokenForMnsQueue is signed: an explicit key, or whatever the default chain finds."""


def resolve_access_key(config: CredentialsConfig | None, environ: Mapping[str, str]) -> AccessKeySource:
    """Find the AccessKey to sign Dybaseapi and Dysmsapi calls with.

    Args:
        config: The ``credentials`` section of the configuration, or None when it is absent.
        environ: The process environment (passed in so that callers and tests choose it).

    Returns:
        The configured key, else the key in the environment, else the default credential chain.

    Raises:
        ConfigError: If the configured key has an empty id or secret, or if only one of
            ``ALIBABA_CLOUD_ACCESS_KEY_ID`` and ``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` is set.
    """
    if config is not None:
        secret = config.access_key_secret.get_secret_value()
        if not config.access_key_id or not secret:
            empty = "access_key_id" if not config.access_key_id else "access_key_secret"
            raise ConfigError(
                "config",
                f"credentials.{empty}",
                "is empty",
                "set it, or remove the credentials section to use the environment or the default chain",
            )
        return AccessKey(config.access_key_id, secret, origin="configuration")
    access_key_id = environ.get(ENV_ACCESS_KEY_ID, "")
    secret = environ.get(ENV_ACCESS_KEY_SECRET, "")
    if access_key_id and secret:
        token = environ.get(ENV_SECURITY_TOKEN) or None
        return AccessKey(access_key_id, secret, security_token=token, origin="environment")
    if access_key_id or secret:
        missing, present = (
            (ENV_ACCESS_KEY_SECRET, ENV_ACCESS_KEY_ID) if access_key_id else (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET)
        )
        raise ConfigError("environment", missing, f"is not set while {present} is", "set both, or neither")
    return DefaultCredentialChain()
