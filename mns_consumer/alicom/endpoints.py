"""Which hosts serve Dybaseapi, Dysmsapi and the receipt queues for a region, and how to reach them.

Receipt queues live in one of two Alibaba-owned MNS accounts, chosen by site, not by the customer's
region (reference 2.7), and the Python Dybaseapi client ignores ``region_id`` (reference 2.1, pitfall
4). So the region becomes explicit endpoints here, once, with the proxy of every call
(:meth:`Endpoints.proxy_for`), so MNS, Dybaseapi and Dysmsapi follow the same proxy rules.
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
"""The regions whose Dysmsapi host differs from :data:`DEFAULT_DYSMSAPI`: the endpoint map of
``alibabacloud_dysmsapi20170525`` 4.6.0 (reference 6.3), so an explicit endpoint is the SDK's own."""


@dataclass(frozen=True)
class Endpoints:
    """Where the Alibaba APIs are, in the form each client takes.

    ``dybaseapi`` and ``dysmsapi`` are ``host[:port]`` without a scheme (it becomes the Tea client's
    Host header, reference 6.3), reached by ``protocol``; ``mns`` is a URL with its scheme and no
    trailing slash, as ``mns.account.Account`` takes it. ``ca_file`` replaces the system's CA bundle.
    The proxies are ``endpoints.proxy``, else ``HTTP(S)_PROXY``; ``no_proxy`` is ``NO_PROXY``.
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
    """The endpoints for a region, each override in ``endpoints`` winning over the region's.

    Mainland regions (``cn-*`` except ``cn-hongkong``) use the mainland Dybaseapi host and MNS account;
    ``cn-hongkong``, ``ap-*``, ``eu-*``, ``us-*`` and ``me-*`` the international ones; Dysmsapi follows
    :data:`DYSMSAPI_REGION_HOSTS`. The proxy variables are read from ``environ``, lower case winning.

    Raises:
        ConfigError: If the region belongs to no known site while an endpoint it decides is not
            overridden, if the MNS override lacks its ``http://``/``https://`` scheme, if a Dybaseapi
            or Dysmsapi override carries one, or if HTTPS calls to MNS would go through an ``https://`` proxy.
    """
    name = region.strip().lower()
    international = name == "cn-hongkong" or name.startswith(("ap-", "eu-", "us-", "me-"))
    if not international and not name.startswith("cn-") and (not overrides.dybaseapi or not overrides.mns):
        raise ConfigError(
            "config",
            "region",
            f"{region!r} is neither a mainland region (cn-*) nor an international one "
            "(cn-hongkong, ap-*, eu-*, us-*, me-*)",
            "fix the region, or set endpoints.dybaseapi and endpoints.mns explicitly",
        )
    dybaseapi = overrides.dybaseapi or (INTERNATIONAL_DYBASEAPI if international else MAINLAND_DYBASEAPI)
    dysmsapi = overrides.dysmsapi or DYSMSAPI_REGION_HOSTS.get(name, DEFAULT_DYSMSAPI)
    mns = overrides.mns or (INTERNATIONAL_MNS if international else MAINLAND_MNS)
    _check_host("endpoints.dybaseapi", dybaseapi)
    _check_host("endpoints.dysmsapi", dysmsapi)
    if not mns.startswith(("http://", "https://")):
        raise ConfigError(
            "config",
            "endpoints.mns",
            f"{mns!r} has no scheme",
            f"write https://{mns} (the MNS SDK refuses an endpoint without http:// or https://)",
        )
    endpoints = Endpoints(
        dybaseapi=dybaseapi,
        dysmsapi=dysmsapi,
        mns=mns.rstrip("/"),
        protocol=overrides.protocol,
        ca_file=overrides.ca_file,
        http_proxy=overrides.proxy or _variable(environ, "http_proxy"),
        https_proxy=overrides.proxy or _variable(environ, "https_proxy"),
        no_proxy=_variable(environ, "no_proxy"),
    )
    proxy = endpoints.proxy_for(endpoints.mns)
    if endpoints.mns.startswith("https://") and proxy is not None and proxy.lower().startswith("https://"):
        # MNS calls go over http.client, which tunnels HTTPS only through a proxy it speaks plain HTTP to.
        raise ConfigError(
            *(("config", "endpoints.proxy") if overrides.proxy else ("environment", "HTTPS_PROXY")),
            "an https:// proxy cannot tunnel the HTTPS calls to MNS",
            "give the proxy as http://host:port (the tunnel still carries TLS from end to end)",
        )
    return endpoints


def _variable(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(name) or environ.get(name.upper()) or None


def _check_host(key_path: str, value: str) -> None:
    """Raise ConfigError for a Tea endpoint with a scheme or a path: the Tea client copies it into the Host
    header verbatim (reference 6.3), which strict servers and proxies refuse."""
    if "://" in value or "/" in value:
        raise ConfigError(
            "config", key_path, f"{value!r} is not host[:port]", "drop the scheme and path; set endpoints.protocol"
        )
