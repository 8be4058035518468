"""A throwaway certificate so the emulator can serve HTTPS.

The emulator's ``--tls`` mode exists to exercise the MNS SDK's HTTPS path, which opens connections
without a timeout (reference 3.7 and pitfall 9). At start it generates one self-signed certificate
that is its own trust anchor: clients trust it through ``cafile=`` or the ``SSL_CERT_FILE`` variable,
which :func:`ssl.create_default_context` reads each time it is called. That is how the
``aliyun-mns-sdk``, whose ``HTTPSConnection(host)`` uses the default context, is made to trust the
emulator without patching it.

The certificate covers ``localhost``, ``127.0.0.1`` and ``::1`` plus any host names or addresses the
caller adds, and is valid from a day ago (tolerating skewed clocks) to thirty days from now.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mns_consumer.errors import EmulatorError

COMMON_NAME = "mns-consumer emulator"
"""Subject and issuer common name of every generated certificate."""

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
"""Names and addresses every generated certificate is valid for."""

CERT_FILE_NAME = "cert.pem"
KEY_FILE_NAME = "key.pem"

_VALID_BEFORE_NOW = datetime.timedelta(days=1)
_VALID_AFTER_NOW = datetime.timedelta(days=30)

_SubjectName: TypeAlias = x509.DNSName | x509.IPAddress


@dataclass(frozen=True)
class TlsMaterial:
    """Where a generated certificate and its private key were written.

    Attributes:
        cert_path: PEM certificate (mode 0644); also the trust anchor clients load.
        key_path: PEM private key, unencrypted PKCS #8 (mode 0600).
    """

    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting this certificate, refusing anything older than TLS 1.2.

        Returns:
            A new context, ready for ``wrap_socket(..., server_side=True)``.

        Raises:
            EmulatorError: If the certificate or key cannot be read or do not match.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(certfile=self.cert_path, keyfile=self.key_path)
        except (OSError, ssl.SSLError) as exc:
            raise EmulatorError(f"cannot load the emulator TLS certificate {self.cert_path}: {exc}") from exc
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this certificate and nothing else.

        Host names are checked, so connect with one of the names the certificate covers.

        Returns:
            A new context, e.g. for ``httpx.Client(verify=...)`` or ``http.client.HTTPSConnection``.

        Raises:
            EmulatorError: If the certificate cannot be read.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_verify_locations(cafile=self.cert_path)
        except (OSError, ssl.SSLError) as exc:
            raise EmulatorError(f"cannot load the emulator TLS certificate {self.cert_path}: {exc}") from exc
        return context


def generate_tls_material(directory: Path, hosts: Sequence[str] = ()) -> TlsMaterial:
    """Generate a self-signed EC P-256 certificate and key into ``directory``.

    Existing ``cert.pem`` and ``key.pem`` files there are replaced. The key is written with mode 0600
    from its first byte, so it is never readable by others, whatever the umask.

    Args:
        directory: Folder to write ``cert.pem`` and ``key.pem`` into; created if missing.
        hosts: Extra DNS names or IP addresses (IPv6 with or without brackets) the certificate must
            cover besides ``localhost``, ``127.0.0.1`` and ``::1``.

    Returns:
        The paths of the written files.

    Raises:
        EmulatorError: If a host is empty or not a valid DNS name, or the files cannot be written.
    """
    names = _subject_alternative_names([*DEFAULT_HOSTS, *hosts])
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)])
    key_identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    # CA=True lets the certificate be its own trust anchor. The key usages and identifiers keep it
    # acceptable under VERIFY_X509_STRICT, which Python 3.13 turns on in create_default_context().
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _VALID_BEFORE_NOW)
        .not_valid_after(now + _VALID_AFTER_NOW)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(key_identifier, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_identifier), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    material = TlsMaterial(cert_path=directory / CERT_FILE_NAME, key_path=directory / KEY_FILE_NAME)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write_file(material.key_path, key_pem, 0o600)
        _write_file(material.cert_path, cert_pem, 0o644)
    except OSError as exc:
        raise EmulatorError(f"cannot write the emulator TLS certificate into {directory}: {exc}") from exc
    return material


def _subject_alternative_names(hosts: Sequence[str]) -> list[_SubjectName]:
    """Turn host strings into SAN entries, IP addresses as such, without duplicates."""
    names: list[_SubjectName] = []
    for host in hosts:
        text = host.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        if not text:
            raise EmulatorError(f"invalid TLS host {host!r}: empty")
        name: _SubjectName
        try:
            name = x509.IPAddress(ipaddress.ip_address(text))
        except ValueError:
            try:
                name = x509.DNSName(text.encode("idna").decode("ascii").lower())
            except UnicodeError as exc:
                raise EmulatorError(f"invalid TLS host {host!r}: not a DNS name or IP address") from exc
        if name not in names:
            names.append(name)
    return names


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``, the new file having exactly ``mode`` from its creation."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    # O_EXCL and O_NOFOLLOW: never write the key through a file or link someone else planted.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(descriptor, "wb") as handle:
        # fchmod undoes the umask, which os.open applied to ``mode``.
        os.fchmod(handle.fileno(), mode)
        handle.write(data)
    os.replace(temporary, path)
