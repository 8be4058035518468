"""MNS request authentication, as the service checks it (reference 3.1, 3.2, 3.3).

The signature is HMAC-SHA1 over ``METHOD, Content-MD5, Content-Type, Date (or x-mns-date), x-mns-*
headers, request target``, where the target is the path and raw query exactly as sent: the SDK does
not URL-encode receipt handles, so nothing here decodes or re-encodes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.credentials import CredentialStore, TemporaryCredential
from mns_consumer.emulator.queues import MnsFault
from mns_consumer.emulator.settings import EmulatorSettings


@dataclass(frozen=True)
class Caller:
    """Who sent an authenticated request: a master key, or a temporary queue credential."""

    access_key_id: str
    temporary: TemporaryCredential | None = None

    @property
    def is_master(self) -> bool:
        """Whether the request was signed with a master AccessKey."""
        return self.temporary is None


def string_to_sign(method: str, headers: Mapping[str, str], raw_target: str) -> str:
    """The MNS canonical string for a request; ``headers`` have lower-case names."""
    date = headers.get("x-mns-date") or headers.get("date", "")
    mns_headers = "".join(f"{name}:{headers[name]}\n" for name in sorted(headers) if name.startswith("x-mns-"))
    return "\n".join(
        (method, headers.get("content-md5", ""), headers.get("content-type", ""), date, mns_headers + raw_target)
    )


def sign(secret: str, text: str) -> str:
    """Base64 HMAC-SHA1 of ``text`` keyed with an AccessKey secret."""
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def content_md5(body: bytes) -> str:
    """The Content-MD5 value MNS expects: base64 of the *hex* MD5 string (reference 3.1)."""
    hex_digest = hashlib.md5(body, usedforsecurity=False).hexdigest()
    return base64.b64encode(hex_digest.encode("ascii")).decode("ascii")


class MnsAuthenticator:
    """Checks the Authorization, Date, Content-MD5 and security-token headers of MNS requests."""

    def __init__(self, settings: EmulatorSettings, clock: Clock, credentials: CredentialStore) -> None:
        self._settings = settings
        self._clock = clock
        self._credentials = credentials

    def authenticate(self, method: str, raw_target: str, headers: Mapping[str, str], body: bytes) -> Caller:
        """Identify the caller of a request, or refuse it with the error MNS gives.

        Raises:
            MnsFault: ``MissingAuthorizationHeader``/``InvalidAuthorizationHeader`` (400),
                ``MissingDateHeader``/``InvalidDateHeader`` (400), ``TimeExpired`` (408),
                ``InvalidDegist`` (400), ``InvalidAccessKeyId`` (403), ``SignatureDoesNotMatch``
                (403), or the configured expired-token error.
        """
        access_key_id, signature = self._parse_authorization(headers.get("authorization"))
        self._check_date(headers)
        if body and "content-md5" in headers and headers["content-md5"] != content_md5(body):
            raise MnsFault("InvalidDegist", 400, "The Content-MD5 you specified is not valid.")

        temporary = self._credentials.temporary(access_key_id)
        secret = temporary.access_key_secret if temporary else self._credentials.master_secret(access_key_id)
        if secret is None:
            raise MnsFault("InvalidAccessKeyId", 403, "The AccessKeyId you provided does not exist.")
        if self._settings.verify_signatures:
            expected = sign(secret, string_to_sign(method, headers, raw_target))
            if not hmac.compare_digest(expected, signature):
                raise MnsFault("SignatureDoesNotMatch", 403, "The request signature we calculated does not match.")
        if temporary is None:
            return Caller(access_key_id)
        # A temporary id is only half a credential: the security-token header must come with it.
        if not hmac.compare_digest(headers.get("security-token", ""), temporary.security_token):
            raise MnsFault(
                "InvalidAccessKeyId", 403, "The security token is missing or does not belong to this AccessKeyId."
            )
        if self._clock.now() >= temporary.expires_at:
            raise MnsFault(
                self._settings.expired_token_code,
                self._settings.expired_token_status,
                "The security token you provided has expired.",
            )
        return Caller(access_key_id, temporary)

    @staticmethod
    def _parse_authorization(value: str | None) -> tuple[str, str]:
        if not value:
            raise MnsFault("MissingAuthorizationHeader", 400, "The Authorization header is missing.")
        scheme, _, credential = value.partition(" ")
        access_key_id, colon, signature = credential.partition(":")
        if scheme != "MNS" or not colon or not access_key_id or not signature:
            raise MnsFault(
                "InvalidAuthorizationHeader", 400, "The Authorization header must be 'MNS <AccessKeyId>:<Signature>'."
            )
        return access_key_id, signature

    def _check_date(self, headers: Mapping[str, str]) -> None:
        value = headers.get("x-mns-date") or headers.get("date")
        if not value:
            raise MnsFault("MissingDateHeader", 400, "The Date header is missing.")
        try:
            sent = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError) as exc:
            raise MnsFault("InvalidDateHeader", 400, "The Date header is not an RFC 1123 GMT date.") from exc
        # Against the wall clock: clients sign with real time, and moving the emulator clock (to expire
        # tokens or messages) stands for time passing on both sides.
        if abs(time.time() - sent) > self._settings.max_clock_skew_seconds:
            raise MnsFault("TimeExpired", 408, "The http request you sent is expired (Date too far from server time).")
