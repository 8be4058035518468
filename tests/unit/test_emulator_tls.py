"""The emulator's self-signed certificate: trusted by our contexts, by SSL_CERT_FILE, and nothing wider."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from mns_consumer.emulator.tls import TlsMaterial, generate_tls_material
from mns_consumer.errors import EmulatorError

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@pytest.fixture
def material(tmp_path: Path) -> TlsMaterial:
    """A freshly generated certificate and key."""
    return generate_tls_material(tmp_path / "tls", hosts=["emulator.internal", "10.1.2.3"])


@pytest.fixture
def tls_port(material: TlsMaterial) -> Iterator[int]:
    """A TLS server on 127.0.0.1 answering every request with a tiny HTTP 200, in a thread."""
    context = material.server_context()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            with raw:
                raw.settimeout(5.0)
                try:
                    with context.wrap_socket(raw, server_side=True) as conn:
                        request = b""
                        while b"\r\n\r\n" not in request:
                            chunk = conn.recv(4096)
                            if not chunk:
                                break
                            request += chunk
                        conn.sendall(RESPONSE)
                except (ssl.SSLError, OSError):
                    # A client that refuses the certificate aborts the handshake; serve the next one.
                    continue

    thread = threading.Thread(target=serve, name="tls-test-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        thread.join(timeout=5.0)
        listener.close()


def _get(context: ssl.SSLContext, port: int, server_hostname: str) -> bytes:
    """Open a TLS connection to the test server, send a GET and return the whole answer."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5.0) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as conn,
    ):
        conn.sendall(b"GET / HTTP/1.1\r\nHost: emulator\r\n\r\n")
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
        return answer


@pytest.mark.parametrize("server_hostname", ["127.0.0.1", "localhost", "emulator.internal"])
def test_client_context_verifies_the_certificate_for_every_name_it_covers(
    material: TlsMaterial, tls_port: int, server_hostname: str
) -> None:
    """A hostname-checking client context built from the material completes the handshake."""
    context = material.client_context()
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED

    assert _get(context, tls_port, server_hostname).endswith(b"ok")


def test_client_context_rejects_a_name_the_certificate_does_not_cover(material: TlsMaterial, tls_port: int) -> None:
    """Hostname checking stays on: a name outside the SAN list fails verification."""
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(material.client_context(), tls_port, "example.com")


def test_certificate_passes_strict_x509_verification(material: TlsMaterial, tls_port: int) -> None:
    """The certificate is accepted under VERIFY_X509_STRICT, the default of Python 3.13 contexts."""
    context = ssl.create_default_context(cafile=material.cert_path)
    context.verify_flags |= ssl.VERIFY_X509_STRICT

    assert _get(context, tls_port, "localhost").endswith(b"ok")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_default_https_connection_trusts_the_emulator_through_ssl_cert_file(
    material: TlsMaterial, tls_port: int, host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http.client's default context, as the MNS SDK builds it, trusts the emulator once SSL_CERT_FILE names it."""
    monkeypatch.setenv("SSL_CERT_FILE", str(material.cert_path))
    connection = http.client.HTTPSConnection(host, tls_port, timeout=5.0)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status == 200
    assert body == b"ok"


def test_default_https_connection_refuses_the_emulator_without_ssl_cert_file(
    tls_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without SSL_CERT_FILE the self-signed certificate is not trusted: the trust comes from the variable."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    connection = http.client.HTTPSConnection("localhost", tls_port, timeout=5.0)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            connection.request("GET", "/")
    finally:
        connection.close()


def test_key_file_is_readable_by_its_owner_only(material: TlsMaterial) -> None:
    """key.pem is written with mode 0600 and cert.pem with 0644."""
    assert stat.S_IMODE(material.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(material.cert_path.stat().st_mode) == 0o644
    assert material.cert_path.name == "cert.pem"
    assert material.key_path.name == "key.pem"


def test_regenerating_replaces_the_files_and_keeps_the_key_private(material: TlsMaterial) -> None:
    """A second generation into the same folder overwrites both files, with the same modes."""
    material.key_path.chmod(0o644)
    first = material.cert_path.read_bytes()

    again = generate_tls_material(material.cert_path.parent)

    assert again == material
    assert again.cert_path.read_bytes() != first
    assert stat.S_IMODE(again.key_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in again.cert_path.parent.iterdir()) == ["cert.pem", "key.pem"]


def test_certificate_is_a_self_signed_ca_for_loopback_and_extra_hosts(material: TlsMaterial) -> None:
    """Subject, SANs, CA flag and a validity window around now are as documented."""
    certificate = x509.load_pem_x509_certificate(material.cert_path.read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)

    assert certificate.subject.rfc4514_string() == "CN=mns-consumer emulator"
    assert certificate.issuer == certificate.subject
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "emulator.internal"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.1.2.3"),
    ]
    assert constraints.critical
    assert constraints.value.ca
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime.days == 31


def test_server_context_refuses_protocols_older_than_tls_1_2(material: TlsMaterial) -> None:
    """The server context's floor is TLS 1.2."""
    assert material.server_context().minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("host", ["", "[]", "bad..name"])
def test_generating_with_an_invalid_host_is_an_emulator_error(tmp_path: Path, host: str) -> None:
    """Hosts that are neither an IP address nor a DNS name are refused before anything is written."""
    with pytest.raises(EmulatorError, match="invalid TLS host"):
        generate_tls_material(tmp_path / "tls", hosts=[host])

    assert not (tmp_path / "tls").exists()
