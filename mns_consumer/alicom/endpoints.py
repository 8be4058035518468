"""Which hosts serve Dybaseapi, Dysmsapi and the receipt queues for a region, and how to reach them.

Alibaba keeps receipt queues in one of two Alibaba-owned MNS accounts, chosen by site, not by the
customer's region (reference 2.7), and the Python Dybaseapi client ignores ``region_id`` altogether
(reference 2.1, pitfall 4). So the region is turned into explicit endpoints here, once, and every
client is aimed with them. The proxy of every call is decided here too (:meth:`Endpoints.proxy_for`),
so MNS, Dybaseapi and Dysmsapi calls follow the same ``proxy``/``HTTP(S)_PROXY``/``NO_PROXY`` rules.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from mns_consumer.config import EndpointsConfig
from mns_consumer.errors import ConfigError

MAINLAND_DYBASEAPI = "dybaseapi.aliyuncs.com"
"""Dybaseapi host of every mainland region (reference 2.1)."""

INTERNATIONAL_DYBASEAPI = "dybaseapi.ap-southeast-1.aliyuncs.com"
"""Dybaseapi host of the international site: Hong Kong and every overseas region (reference 2.1)."""

MAINLAND_MNS = "https://1943695596114318.mns.cn-hangzhou.aliyuncs.com"
"""Endpoint of the Alibaba-owned MNS account holding mainland receipt queues (reference 2.7)."""

INTERNATIONAL_MNS = "https://1493622401794734.mns.ap-southeast-1.aliyuncs.com"
"""Endpoint of the Alibaba-owned MNS account holding international receipt queues (reference 2.7)."""

DEFAULT_DYSMSAPI = "dysmsapi.aliyuncs.com"
"""Dysmsapi host for regions the SDK's map does not list (its ``central`` endpoint rule)."""

DYSMSAPI_REGION_HOSTS: dict[str, str] = {
    "ap-southeast-1": "dysmsapi.ap-southeast-1.aliyuncs.com",
    "ap-southeast-5": "dysmsapi.ap-southeast-5.aliyuncs.com",
    "cn-beijing": "dysmsapi-proxy.cn-beijing.aliyuncs.com",
    "cn-hongkong": "dysmsapi-xman.cn-hongkong.aliyuncs.com",
    "eu-central-1": "dysmsapi.eu-central-1.aliyuncs.com",
    "us-east-1": "dysmsapi.us-east-1.aliyuncs.com",
}
"""The regions whose Dysmsapi host differs from :data:`DEFAULT_DYSMSAPI`.

Copied from the endpoint map of ``alibabacloud_dysmsapi20170525`` 4.6.0 (reference 6.3), so that an
explicit endpoint picks the host the SDK itself would have picked.
"""

_INTERNATIONAL_PREFIXES = ("ap-", "eu-", "us-", "me-")
_SCHEMES = ("http://", "https://")


@dataclass(frozen=True)
class Endpoints:
    """Where the Alibaba APIs are, in the form each client takes.

    Attributes:
        dybaseapi: ``host[:port]`` of Dybaseapi (QueryTokenForMnsQueue); no scheme, as it becomes the
            Host header of the Tea client (reference 6.3).
        dysmsapi: ``host[:port]`` of Dysmsapi (QuerySendDetails).
        mns: MNS endpoint URL with its scheme and without a trailing slash, as ``mns.account.Account``
            takes it.
        protocol: ``https`` or ``http``, for Dybaseapi and Dysmsapi.
        ca_file: A CA bundle to trust instead of the system's (e.g. the emulator's in TLS mode).
        http_proxy: Proxy URL for ``http://`` endpoints (``endpoints.proxy``, else ``HTTP_PROXY``).
        https_proxy: Proxy URL for ``https://`` endpoints (``endpoints.proxy``, else ``HTTPS_PROXY``).
        no_proxy: ``NO_PROXY``: comma-separated hosts (and domain suffixes) reached directly.
    """

    dybaseapi: str
    dysmsapi: str
    mns: str
    protocol: str = "https"
    ca_file: str | None = None
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in ("http", "https"):
            raise ValueError(f"protocol must be 'http' or 'https', not {self.protocol!r}")

    def proxy_for(self, address: str) -> str | None:
        """The proxy URL for an endpoint URL (or ``host[:port]`` reached by ``protocol``); None: directly.

        ``NO_PROXY`` is read as curl and Python's ``urllib`` read it: ``*``, hosts, ``host:port`` and
        domain suffixes (``.example.com`` or ``example.com``).
        """
        parts = urlsplit(address if "://" in address else f"{self.protocol}://{address}")
        proxy = self.https_proxy if parts.scheme == "https" else self.http_proxy
        host, port = (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)
        for entry in (self.no_proxy or "").lower().split(","):
            name, _, only_port = entry.strip().lstrip(".").partition(":")
            if name == "*" or (name and (host == name or host.endswith(f".{name}")) and only_port in ("", str(port))):
                return None
        return proxy


def resolve_endpoints(region: str, overrides: EndpointsConfig, environ: Mapping[str, str] = os.environ) -> Endpoints:
    """The endpoints for a region, with the configured overrides applied.

    Mainland regions (``cn-*`` except ``cn-hongkong``) use the mainland Dybaseapi host and MNS account;
    ``cn-hongkong``, ``ap-*``, ``eu-*``, ``us-*`` and ``me-*`` use the international ones. Dysmsapi
    follows the SDK's own region map (:data:`DYSMSAPI_REGION_HOSTS`).

    Args:
        region: The configured region, e.g. ``cn-hangzhou`` or ``ap-southeast-1``.
        overrides: The ``endpoints`` section; each value given wins over the region's.
        environ: Where ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``NO_PROXY`` (or their lower-case forms, which
            win) are read; ``endpoints.proxy`` replaces the first two.

    Returns:
        The endpoints to aim every client with.

    Raises:
        ConfigError: If the region belongs to no known site while an endpoint it decides is not
            overridden, if the MNS override lacks its ``http://``/``https://`` scheme, or if a Dybaseapi
            or Dysmsapi override carries one.
    """
    site = _site(region)
    needs_site = not overrides.dybaseapi or not overrides.mns
    if site is None and needs_site:
        raise ConfigError(
            "config",
            "region",
            f"{region!r} is neither a mainland region (cn-*) nor an international one "
            "(cn-hongkong, ap-*, eu-*, us-*, me-*)",
            "fix the region, or set endpoints.dybaseapi and endpoints.mns explicitly",
        )
    international = site == "international"
    dybaseapi = overrides.dybaseapi or (INTERNATIONAL_DYBASEAPI if international else MAINLAND_DYBASEAPI)
    dysmsapi = overrides.dysmsapi or DYSMSAPI_REGION_HOSTS.get(region.strip().lower(), DEFAULT_DYSMSAPI)
    mns = overrides.mns or (INTERNATIONAL_MNS if international else MAINLAND_MNS)
    _check_host("endpoints.dybaseapi", dybaseapi)
    _check_host("endpoints.dysmsapi", dysmsapi)
    if not mns.startswith(_SCHEMES):
        raise ConfigError(
            "config",
            "endpoints.mns",
            f"{mns!r} has no scheme",
            f"write https://{mns} (the MNS SDK refuses an endpoint without http:// or https://)",
        )
    return Endpoints(
        dybaseapi=dybaseapi,
        dysmsapi=dysmsapi,
        mns=mns.rstrip("/"),
        protocol=overrides.protocol,
        ca_file=overrides.ca_file,
        http_proxy=overrides.proxy or _variable(environ, "http_proxy"),
        https_proxy=overrides.proxy or _variable(environ, "https_proxy"),
        no_proxy=_variable(environ, "no_proxy"),
    )


def _variable(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(name) or environ.get(name.upper()) or None


def _site(region: str) -> str | None:
    """``mainland``, ``international``, or None for a region of neither form."""
    name = region.strip().lower()
    if name == "cn-hongkong" or name.startswith(_INTERNATIONAL_PREFIXES):
        return "international"
    if name.startswith("cn-"):
        return "mainland"
    return None


def _check_host(key_path: str, value: str) -> None:
    """Refuse a Tea endpoint that is a URL rather than ``host[:port]``.

    Raises:
        ConfigError: If the value carries a scheme or a path.
    """
    # The Tea client copies the endpoint into the Host header verbatim (reference 6.3): a scheme there
    # reaches the server but is refused by strict servers and proxies.
    if "://" in value or "/" in value:
        raise ConfigError(
            "config", key_path, f"{value!r} is not host[:port]", "drop the scheme and path; set endpoints.protocol"
        )
