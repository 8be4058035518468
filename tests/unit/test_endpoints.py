"""Endpoints chosen from the region (reference 2.1, 2.7, 6.3) and the overrides that replace them."""

from __future__ import annotations

import pytest

from mns_consumer.alicom.endpoints import Endpoints, resolve_endpoints
from mns_consumer.config import EndpointsConfig
from mns_consumer.errors import ConfigError

MAINLAND_MNS = "https://1943695596114318.mns.cn-hangzhou.aliyuncs.com"
INTERNATIONAL_MNS = "https://1493622401794734.mns.ap-southeast-1.aliyuncs.com"


@pytest.mark.parametrize("region", ["cn-hangzhou", "cn-shanghai", "cn-shenzhen", "cn-qingdao", "cn-chengdu"])
def test_mainland_regions_use_the_mainland_dybaseapi_host_and_mns_account(region: str) -> None:
    """Every mainland region shares one Dybaseapi host and the mainland receipt account."""
    endpoints = resolve_endpoints(region, EndpointsConfig())
    assert endpoints == Endpoints(
        dybaseapi="dybaseapi.aliyuncs.com",
        dysmsapi="dysmsapi.aliyuncs.com",
        mns=MAINLAND_MNS,
        protocol="https",
        ca_file=None,
    )


@pytest.mark.parametrize(
    ("region", "dysmsapi"),
    [
        ("cn-hongkong", "dysmsapi-xman.cn-hongkong.aliyuncs.com"),
        ("ap-southeast-1", "dysmsapi.ap-southeast-1.aliyuncs.com"),
        ("ap-southeast-5", "dysmsapi.ap-southeast-5.aliyuncs.com"),
        ("eu-central-1", "dysmsapi.eu-central-1.aliyuncs.com"),
        ("us-east-1", "dysmsapi.us-east-1.aliyuncs.com"),
        ("me-east-1", "dysmsapi.aliyuncs.com"),
        ("ap-northeast-1", "dysmsapi.aliyuncs.com"),
    ],
)
def test_hong_kong_and_overseas_regions_use_the_international_site(region: str, dysmsapi: str) -> None:
    """Hong Kong and overseas regions get the Singapore Dybaseapi host and the international account."""
    endpoints = resolve_endpoints(region, EndpointsConfig())
    assert endpoints.dybaseapi == "dybaseapi.ap-southeast-1.aliyuncs.com"
    assert endpoints.mns == INTERNATIONAL_MNS
    assert endpoints.dysmsapi == dysmsapi


def test_dysmsapi_follows_the_sdk_region_map_for_beijing() -> None:
    """cn-beijing has its own Dysmsapi host in the SDK's map, while Dybaseapi stays the mainland one."""
    endpoints = resolve_endpoints("cn-beijing", EndpointsConfig())
    assert endpoints.dysmsapi == "dysmsapi-proxy.cn-beijing.aliyuncs.com"
    assert endpoints.dybaseapi == "dybaseapi.aliyuncs.com"


def test_overrides_win_and_carry_protocol_and_ca_file() -> None:
    """An emulator-style override replaces every host; the MNS URL loses its trailing slash."""
    overrides = EndpointsConfig(
        dybaseapi="127.0.0.1:9100",
        dysmsapi="127.0.0.1:9100",
        mns="http://127.0.0.1:9100/",
        protocol="http",
        ca_file="/etc/mns-consumer/ca.pem",
    )
    assert resolve_endpoints("ap-southeast-1", overrides) == Endpoints(
        dybaseapi="127.0.0.1:9100",
        dysmsapi="127.0.0.1:9100",
        mns="http://127.0.0.1:9100",
        protocol="http",
        ca_file="/etc/mns-consumer/ca.pem",
    )


def test_a_single_override_leaves_the_other_endpoints_to_the_region() -> None:
    """Overriding only MNS (say, a VPC endpoint) keeps the region's Dybaseapi and Dysmsapi hosts."""
    endpoints = resolve_endpoints("cn-hangzhou", EndpointsConfig(mns="http://1943695596114318.mns.vpc.example"))
    assert endpoints.mns == "http://1943695596114318.mns.vpc.example"
    assert endpoints.dybaseapi == "dybaseapi.aliyuncs.com"


def test_mns_override_without_a_scheme_is_a_config_error() -> None:
    """The MNS SDK needs http:// or https://, so a bare host is refused with the key to fix."""
    with pytest.raises(ConfigError) as caught:
        resolve_endpoints("cn-hangzhou", EndpointsConfig(mns="1943695596114318.mns.cn-hangzhou.aliyuncs.com"))
    assert caught.value.key_path == "endpoints.mns"
    assert "https://1943695596114318" in caught.value.hint


@pytest.mark.parametrize("key", ["dybaseapi", "dysmsapi"])
def test_tea_endpoint_override_with_a_scheme_is_a_config_error(key: str) -> None:
    """A Tea endpoint is host[:port]: a scheme would end up in the Host header (reference 6.3)."""
    with pytest.raises(ConfigError) as caught:
        resolve_endpoints("cn-hangzhou", EndpointsConfig(**{key: "http://127.0.0.1:9100"}))
    assert caught.value.key_path == f"endpoints.{key}"


def test_unknown_region_is_a_config_error_unless_every_endpoint_it_decides_is_overridden() -> None:
    """A region of no known site is refused, but not when Dybaseapi and MNS are both given."""
    with pytest.raises(ConfigError) as caught:
        resolve_endpoints("mars-north-1", EndpointsConfig())
    assert caught.value.key_path == "region"
    endpoints = resolve_endpoints("mars-north-1", EndpointsConfig(dybaseapi="127.0.0.1:1", mns="http://127.0.0.1:1"))
    assert endpoints.dysmsapi == "dysmsapi.aliyuncs.com"


def test_endpoints_refuse_a_protocol_other_than_http_or_https() -> None:
    """The protocol is the Tea client's scheme; anything else is a programming error."""
    with pytest.raises(ValueError, match="protocol"):
        Endpoints(dybaseapi="a", dysmsapi="b", mns="https://c", protocol="ftp")


def test_proxy_variables_apply_per_scheme_and_no_proxy_exempts_hosts_and_domains() -> None:
    """HTTP_PROXY for http://, HTTPS_PROXY for https://, and NO_PROXY names hosts, host:port and suffixes."""
    environ = {"HTTP_PROXY": "http://plain:3128", "https_proxy": "http://tls:3128", "NO_PROXY": ".internal,127.0.0.1"}
    endpoints = resolve_endpoints("cn-hangzhou", EndpointsConfig(), environ)

    assert endpoints.proxy_for("http://mns.example:80") == "http://plain:3128"
    assert endpoints.proxy_for(endpoints.mns) == "http://tls:3128"
    assert endpoints.proxy_for("dybaseapi.aliyuncs.com") == "http://tls:3128"  # host[:port] takes protocol
    assert endpoints.proxy_for("https://mns.vpc.internal") is None
    assert endpoints.proxy_for("http://127.0.0.1:9100") is None


def test_the_proxy_setting_replaces_the_proxy_variables_and_no_proxy_still_applies() -> None:
    """``endpoints.proxy`` wins over HTTP(S)_PROXY for both schemes; without any, calls go direct."""
    environ = {"HTTPS_PROXY": "http://env:3128", "NO_PROXY": "127.0.0.1"}
    endpoints = resolve_endpoints("cn-hangzhou", EndpointsConfig(proxy="http://configured:8080"), environ)

    assert endpoints.proxy_for(endpoints.mns) == "http://configured:8080"
    assert endpoints.proxy_for("http://mns.example") == "http://configured:8080"
    assert endpoints.proxy_for("http://127.0.0.1:9100") is None
    assert resolve_endpoints("cn-hangzhou", EndpointsConfig(), {}).proxy_for(endpoints.mns) is None


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("*", True),
        ("mns.example", True),
        ("example", True),
        (".example", True),
        ("mns.example:443", True),
        ("mns.example:8443", False),
        ("ns.example", False),
        ("other.example, ", False),
        ("", False),
    ],
)
def test_no_proxy_entries_match_hosts_suffixes_and_ports(no_proxy: str, bypassed: bool) -> None:
    """Each NO_PROXY entry is ``*``, a host or domain suffix, optionally with the port it applies to."""
    environ = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy}
    endpoints = resolve_endpoints("cn-hangzhou", EndpointsConfig(), environ)

    assert (endpoints.proxy_for("https://mns.example") is None) is bypassed


@pytest.mark.parametrize(
    ("setting", "environ", "where"),
    [
        ("https://configured:8443", {}, "config: endpoints.proxy"),
        (None, {"HTTPS_PROXY": "HTTPS://env:8443"}, "environment: HTTPS_PROXY"),
    ],
)
def test_an_https_proxy_for_the_https_mns_endpoint_stops_startup_with_the_fix(
    setting: str | None, environ: dict[str, str], where: str
) -> None:
    """MNS calls tunnel HTTPS through a proxy spoken to in plain HTTP; a proxy URL asking for TLS to the
    proxy itself is refused at start, naming where it came from and what to write instead."""
    with pytest.raises(ConfigError) as caught:
        resolve_endpoints("cn-hangzhou", EndpointsConfig(proxy=setting), environ)

    assert str(caught.value).startswith(f"{where}: an https:// proxy cannot tunnel")
    assert "http://host:port" in str(caught.value)


def test_an_https_proxy_is_accepted_where_mns_is_not_reached_over_https_through_it() -> None:
    """Plain-HTTP MNS through an https:// proxy, and an MNS host NO_PROXY exempts, need no tunnel."""
    plain = EndpointsConfig(mns="http://mns.example", proxy="https://configured:8443")
    assert resolve_endpoints("cn-hangzhou", plain, {}).proxy_for("http://mns.example") == "https://configured:8443"

    exempt = {"HTTPS_PROXY": "https://env:8443", "NO_PROXY": "aliyuncs.com"}
    endpoints = resolve_endpoints("cn-hangzhou", EndpointsConfig(), exempt)
    assert endpoints.proxy_for(endpoints.mns) is None
