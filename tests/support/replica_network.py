"""Separate network namespaces on one bridge: replicas that reach the emulator and the database as hosts do.

Each replica gets its own network namespace (``ip netns``) with its own address, joined by a veth pair
to a bridge in the root namespace. The bridge holds the "server" address: the emulator listens on it,
and so does a forwarder to the database, since the machine's PostgreSQL and MariaDB listen on
127.0.0.1 only. Every byte a replica exchanges with MNS or its database therefore crosses its own
link, and :meth:`ReplicaNetwork.cut` takes that link down at the bridge end (a cable pulled at the
switch): packets are dropped silently, as in a partition, rather than refused.

The namespaces, veths and bridge carry a random tag, so parallel runs never meet, and
:meth:`ReplicaNetwork.close` removes whatever was made, also after a half-finished set-up. Plain
code (no pytest), so ``bench/replicas_bench.py`` builds the same network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import uuid

from tests.support.tcp_proxy import TcpProxy


class NetworkUnavailable(Exception):  # noqa: N818  (a state, named as one: see STYLE.md)
    """Namespaces, veths or a bridge cannot be made here (not root, no ``ip``, no capability)."""


def ip_binary() -> str:
    """The path of ``ip`` (iproute2).

    Raises:
        NetworkUnavailable: Without root, or when ``ip`` is not installed.
    """
    if os.geteuid() != 0:
        raise NetworkUnavailable("network namespaces need root (ip netns add)")
    found = shutil.which("ip")
    if found is None:
        raise NetworkUnavailable("iproute2's `ip` is not installed")
    return found


def _taken_networks(ip: str) -> list[ipaddress.IPv4Network]:
    """IPv4 networks already routed in the root namespace (every table, so local ones too)."""
    listing = subprocess.run(
        [ip, "-j", "-4", "route", "show", "table", "all"], check=True, capture_output=True, text=True
    ).stdout
    taken: list[ipaddress.IPv4Network] = []
    for route in json.loads(listing or "[]"):
        with contextlib.suppress(ValueError):
            taken.append(ipaddress.IPv4Network(route.get("dst", "default"), strict=False))
    return taken


def _free_subnet(ip: str) -> ipaddress.IPv4Network:
    """A random /24 in 10.200.0.0/13 that overlaps nothing routed here."""
    taken = _taken_networks(ip)
    chooser = random.Random()  # not seeded: two runs at once should pick different subnets
    for _ in range(100):
        candidate = ipaddress.IPv4Network(f"10.{chooser.randint(200, 207)}.{chooser.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(network) for network in taken):
            return candidate
    raise NetworkUnavailable("no free 10.200.0.0/13 subnet for the replica bridge")


class ReplicaNetwork:
    """A bridge holding the server address and ``count`` namespaces, one per replica.

    Attributes:
        server_address: The bridge's address, where the emulator and the database forwarder listen.
        namespaces: The namespace of each replica, in order.
        addresses: Each replica's address inside its namespace.
    """

    def __init__(self, count: int) -> None:
        self._ip = ip_binary()
        tag = uuid.uuid4().hex[:6]
        subnet = _free_subnet(self._ip)
        hosts = list(subnet.hosts())
        self.prefix_length = subnet.prefixlen
        self.server_address = str(hosts[0])
        self.bridge = f"mnsb{tag}"
        self.namespaces = [f"mns-{tag}-r{index}" for index in range(count)]
        self.addresses = [str(hosts[10 + index]) for index in range(count)]
        self._host_ends = [f"mnsh{tag}{index}" for index in range(count)]
        self._made_bridge = False
        self._made_namespaces: list[str] = []
        try:
            self._build(tag)
        except BaseException:
            self.close()
            raise

    def _run(self, *args: str) -> None:
        result = subprocess.run([self._ip, *args], check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise NetworkUnavailable(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")

    def _build(self, tag: str) -> None:
        self._run("link", "add", self.bridge, "type", "bridge")
        self._made_bridge = True
        self._run("addr", "add", f"{self.server_address}/{self.prefix_length}", "dev", self.bridge)
        self._run("link", "set", self.bridge, "up")
        for index, (namespace, host_end, address) in enumerate(
            zip(self.namespaces, self._host_ends, self.addresses, strict=True)
        ):
            self._run("netns", "add", namespace)
            self._made_namespaces.append(namespace)
            inner = f"mnsn{tag}{index}"
            self._run("link", "add", host_end, "type", "veth", "peer", "name", inner, "netns", namespace)
            self._run("link", "set", host_end, "master", self.bridge)
            self._run("link", "set", host_end, "up")
            self._run("-n", namespace, "link", "set", "lo", "up")
            self._run("-n", namespace, "addr", "add", f"{address}/{self.prefix_length}", "dev", inner)
            self._run("-n", namespace, "link", "set", inner, "up")

    def command(self, index: int, argv: list[str]) -> list[str]:
        """``argv`` run inside replica ``index``'s namespace (``ip netns exec`` execs it: same pid)."""
        return [self._ip, "netns", "exec", self.namespaces[index], *argv]

    def cut(self, index: int) -> None:
        """Take replica ``index``'s link down at the bridge: its packets are dropped from now on."""
        self._run("link", "set", self._host_ends[index], "down")

    def restore(self, index: int) -> None:
        """Bring replica ``index``'s link back up."""
        self._run("link", "set", self._host_ends[index], "up")

    def close(self) -> None:
        """Delete the namespaces (and with them the veth pairs) and the bridge; ignore what is gone."""
        for namespace in self._made_namespaces:
            subprocess.run([self._ip, "netns", "del", namespace], check=False, capture_output=True)
        self._made_namespaces = []
        if self._made_bridge:
            subprocess.run([self._ip, "link", "del", self.bridge], check=False, capture_output=True)
            self._made_bridge = False

    def __enter__(self) -> ReplicaNetwork:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class BoundTcpProxy(TcpProxy):
    """A :class:`TcpProxy` listening on a given address (the bridge's) instead of loopback.

    The database servers listen on 127.0.0.1 only, which a namespace cannot reach: this forwards the
    bridge address to them, so a replica's database traffic crosses its own link like its MNS traffic.
    """

    def __init__(self, listen_host: str, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self.listen_host = listen_host
        with socket.socket() as probe:
            probe.bind((listen_host, 0))
            self.port = int(probe.getsockname()[1])

    def start(self) -> BoundTcpProxy:
        """Listen on ``listen_host`` at the proxy port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(256)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()
        return self
