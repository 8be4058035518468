"""Which AccessKey signs QueryTokenForMnsQueue (and QuerySendDetails), in the documented order: the
``credentials`` section of the configuration; ``ALIBABA_CLOUD_ACCESS_KEY_ID`` and
``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` (plus ``ALIBABA_CLOUD_SECURITY_TOKEN`` for an STS key); the
``alibabacloud-credentials`` default chain (ECS RAM role, RRSA/OIDC, the credentials file).

An :data:`AccessKeySource` knows how to appear in a Tea ``Config`` (``tea_config_fields()``) and in a
log line (``describe()``, which never shows a secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from mns_consumer.config import CredentialsConfig
from mns_consumer.errors import ConfigError

# The environment variables every Alibaba SDK reads (names, not secrets).
ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105


@dataclass(frozen=True)
class AccessKey:
    """An explicit AccessKey pair (optionally an STS one); ``origin`` (``configuration`` or
    ``environment``) is for logs, the secret and the token are never logged nor in ``repr``."""

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
        fields: dict[str, object] = {"access_key_id": self.access_key_id, "access_key_secret": self.access_key_secret}
        return fields | ({"security_token": self.security_token} if self.security_token else {})


@dataclass(frozen=True)
class DefaultCredentialChain:
    """The ``alibabacloud-credentials`` default chain, resolved lazily by the Tea client on each call.

    Building it does nothing: :meth:`tea_config_fields` creates the chain's client (which starts the
    library's refresh thread for ECS RAM roles), asked for a key on the first request.
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
    """The configured key, else the key in ``environ``, else the default credential chain.

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
