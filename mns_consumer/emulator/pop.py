"""The POP (RPC-style OpenAPI) front end: Dybaseapi ``QueryTokenForMnsQueue``, Dysmsapi ``QuerySendDetails`` and
``QuerySendStatistics``.

Both products answer ``POST /`` (and ``GET /``) with version 2017-05-25. A request names its operation in
the ``x-acs-action`` header when it is signed with ACS3-HMAC-SHA256 (V3, the Tea SDK default) or in the
``Action`` query parameter when it carries a classic HMAC-SHA1 ``Signature`` (V1); the emulator verifies
both exactly as reference 2.3 describes, against the master AccessKeys of the
:class:`~mns_consumer.emulator.credentials.CredentialStore`.

Errors follow Alibaba's two channels (reference 2.5, 6.2): gateway and authentication failures are HTTP
4xx with a JSON body carrying ``Code``/``Message``/``RequestId`` (the Tea SDK raises ``ClientException``),
while QuerySendDetails and QuerySendStatistics report invalid values as HTTP 200 with ``Code`` other than
``"OK"``. Codes and messages are Alibaba's own where public code quotes them (``SignatureDoesNotMatch``,
``InvalidAccessKeyId.NotFound``, ``InvalidTimeStamp.Expired``, ``SignatureNonceUsed``, ``InvalidVersion``,
``InvalidAction.NotFound``, ``Missing<Parameter>``, ``isv.INVALID_PARAMETERS``,
``isv.MOBILE_NUMBER_ILLEGAL``); the others are marked unconfirmed where they are chosen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from base64 import b64encode
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from mns_consumer.emulator.clock import Clock, format_beijing
from mns_consumer.emulator.credentials import CredentialStore
from mns_consumer.emulator.http_reply import Reply
from mns_consumer.emulator.send_log import SendLog, SendRecord
from mns_consumer.emulator.settings import EmulatorSettings

API_VERSION = "2017-05-25"
"""The one version both Dybaseapi and Dysmsapi are served at."""

OPERATION_SERVICES: dict[str, str] = {
    "QueryTokenForMnsQueue": "dybaseapi",
    "QuerySendDetails": "dysmsapi",
    "QuerySendStatistics": "dysmsapi",
}
"""The operations the front end serves, and the product each belongs to."""

ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
"""The V3 signature algorithm the Tea SDK uses by default (reference 2.3)."""

QUERY_WINDOW_DAYS = 30
"""QuerySendDetails answers for send days at most this many Beijing days back (reference 6.1)."""

MAX_PAGE_SIZE = 50
"""The largest QuerySendDetails and QuerySendStatistics PageSize (reference 6.1; Alibaba's API reference)."""

IS_GLOBE_MAINLAND = 1
"""QuerySendStatistics ``IsGlobe`` of messages to mainland China numbers."""
IS_GLOBE_INTERNATIONAL = 2
"""QuerySendStatistics ``IsGlobe`` of international (and Hong Kong, Macao, Taiwan) messages."""

TEMPLATE_TYPES = frozenset({0, 1, 2, 3, 7})
"""QuerySendStatistics ``TemplateType`` values: code, notice, promotion, international, digital."""

NONCE_MEMORY = 100_000
"""How many recent signature nonces are remembered for replay detection, at most."""

_PRODUCTS = {"dybaseapi": "Dybaseapi", "dysmsapi": "Dysmsapi"}
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# One number: mainland 11 digits starting with 1, or an international number with its country code and
# no "+" (reference 6.1); E.164 allows at most 15 digits.
_PHONE_NUMBER = re.compile(r"[1-9][0-9]{6,14}")
_SEND_DATE = re.compile(r"[0-9]{8}")
_V1_AUTH_PARAMETERS = ("AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce", "Timestamp")


class _PopError(Exception):
    """A failed request, rendered as Alibaba's JSON error (HTTP 200 for business errors)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _missing(name: str) -> _PopError:
    """HTTP 400 ``MissingParameter`` for an absent common or signing parameter."""
    # The gateway's wording for a missing common parameter.
    return _PopError(
        400,
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
    )


def _incomplete(detail: str) -> _PopError:
    """HTTP 400 ``IncompleteSignature``: the signing material is malformed or incomplete."""
    return _PopError(
        400, "IncompleteSignature", f"The request signature does not conform to Aliyun standards: {detail}"
    )


def _not_matched(detail: str) -> _PopError:
    """HTTP 400 ``SignatureDoesNotMatch``, with a hint but neither secret nor string-to-sign."""
    # Alibaba appends "server string to sign is:..." here; the emulator keeps it to itself.
    return _PopError(
        400,
        "SignatureDoesNotMatch",
        f"Specified signature is not matched with our calculation. {detail} "
        "(The emulator does not reveal its string-to-sign; recompute yours per reference 2.3.)",
    )


def _business(code: str, message: str) -> _PopError:
    """A business failure: HTTP 200 whose ``Code`` is not ``OK`` (reference 6.2)."""
    return _PopError(200, code, message)


def percent_encode(value: str) -> str:
    """POP percent-encoding: RFC 3986 unreserved characters stay, everything else is ``%XX`` of UTF-8."""
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The query part of a V3 canonical request: ``key=percentEncode(value)`` sorted by key, joined by ``&``."""
    return "&".join(f"{percent_encode(key)}={percent_encode(params[key])}" for key in sorted(params))


def acs3_signature(
    secret: str,
    method: str,
    pathname: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    signed_headers: list[str],
    payload_sha256: str,
) -> str:
    """The ACS3-HMAC-SHA256 signature of a request, as in reference 2.3 steps 1-5.

    Args:
        secret: The AccessKey secret.
        method: HTTP method, e.g. ``POST``.
        pathname: The request path, ``/`` for RPC.
        query: Decoded query parameters.
        headers: Request headers with lower-case names.
        signed_headers: Lower-case names of the headers the signature covers.
        payload_sha256: Lower-case hex SHA-256 of the request body.

    Returns:
        The lower-case hex signature.

    Raises:
        KeyError: If a signed header is absent from ``headers``.
    """
    names = sorted(signed_headers)
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in names)
    canonical_request = "\n".join(
        (method, pathname, canonical_query(query), canonical_headers, ";".join(names), payload_sha256)
    )
    string_to_sign = f"{ACS3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def rpc_signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    """The classic V1 (HMAC-SHA1) signature over every parameter except ``Signature`` (reference 2.3)."""
    canonical = "&".join(
        f"{percent_encode(key)}={percent_encode(params[key])}" for key in sorted(params) if key != "Signature"
    )
    string_to_sign = f"{method}&%2F&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return b64encode(digest).decode("ascii")


class PopApi:
    """Answers Dybaseapi and Dysmsapi RPC requests; one instance serves every connection thread."""

    def __init__(
        self, settings: EmulatorSettings, clock: Clock, credentials: CredentialStore, send_log: SendLog
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._credentials = credentials
        self._send_log = send_log
        self._nonce_lock = threading.Lock()
        self._nonces: OrderedDict[tuple[str, str], float] = OrderedDict()

    def operation(self, raw_query: str, headers: Mapping[str, str]) -> str | None:
        """The action a request names: header ``x-acs-action`` (V3) or query ``Action`` (V1).

        Args:
            raw_query: The query string, without ``?``.
            headers: Request headers with lower-case names.

        Returns:
            The action, or None when the request names none.
        """
        action = headers.get("x-acs-action")
        if action:
            return action
        return dict(parse_qsl(raw_query, keep_blank_values=True)).get("Action") or None

    @staticmethod
    def service_of(operation: str) -> str:
        """The product an operation belongs to: ``dybaseapi`` or ``dysmsapi``.

        Unknown operations count as ``dysmsapi``, the larger API; they are answered
        ``InvalidAction.NotFound`` either way.
        """
        return OPERATION_SERVICES.get(operation, "dysmsapi")

    def handle(self, method: str, raw_target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Answer one POP request.

        Args:
            method: HTTP method.
            raw_target: The request target as sent, path and query.
            headers: Request headers with lower-case names.
            body: The request body; form-urlencoded parameters in it count like query parameters.

        Returns:
            The reply, always JSON with an ``x-acs-request-id`` header.
        """
        request_id = _request_id()
        path, _, raw_query = raw_target.partition("?")
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        params = dict(query)
        if body and headers.get("content-type", "").lower().startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            params = {**form, **query}
        action = headers.get("x-acs-action") or params.get("Action") or ""
        service = self.service_of(action)
        try:
            self._route(method, path, action, params, headers)
            if self._settings.verify_signatures:
                if "Signature" in params:
                    self._verify_rpc(method, params)
                else:
                    self._verify_acs3(method, path, query, headers, body)
            if action == "QueryTokenForMnsQueue":
                answer = self._query_token(params)
            elif action == "QuerySendStatistics":
                answer = self._query_send_statistics(params)
            else:
                answer = self._query_send_details(params)
        except _PopError as error:
            return self._error_reply(error.status, error.code, error.message, request_id, service)
        return _json_reply(200, {"RequestId": request_id, **answer}, request_id)

    def error(self, status: int, code: str, message: str, *, service: str | None = None) -> Reply:
        """An error reply in POP's format, e.g. for fault injection.

        Args:
            status: HTTP status; 200 gives HTTP 200 with ``Code`` other than ``"OK"``, the way business
                failures are reported.
            code: The ``Code`` field, e.g. ``Throttling.User`` or ``isp.SYSTEM_ERROR``.
            message: The ``Message`` field.
            service: ``dybaseapi`` or ``dysmsapi``, for ``HostId``; Dysmsapi's when None.
        """
        return self._error_reply(status, code, message, _request_id(), service or "dysmsapi")

    # -- routing and authentication ---------------------------------------------------------------

    def _route(
        self, method: str, path: str, action: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> None:
        """Check method, path, action and version before anything else.

        Raises:
            _PopError: 404 ``InvalidAction.NotFound`` (wrong method or path, unknown action), 400
                ``MissingParameter`` (no action or version) or 400 ``InvalidVersion``.
        """
        if method not in ("GET", "POST") or path != "/" or (action and action not in OPERATION_SERVICES):
            raise _PopError(
                404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."
            )
        if not action:
            raise _missing("Action")
        version = headers.get("x-acs-version") or params.get("Version")
        if not version:
            raise _missing("Version")
        if version != API_VERSION:
            raise _PopError(400, "InvalidVersion", "Specified parameter Version is not valid.")

    def _verify_rpc(self, method: str, params: Mapping[str, str]) -> None:
        """Verify a V1 request: signing parameters, key, timestamp, HMAC-SHA1 signature, then nonce.

        Raises:
            _PopError: On the first check that fails, in that order.
        """
        for name in _V1_AUTH_PARAMETERS:
            if not params.get(name):
                raise _missing(name)
        if params["SignatureMethod"] != "HMAC-SHA1":
            # Code unconfirmed; Alibaba's SDKs list it among the 400 signing errors.
            raise _PopError(400, "InvalidSignatureMethod", "Specified signature method is not valid.")
        if params.get("SignatureVersion", "1.0") != "1.0":
            raise _incomplete("SignatureVersion must be 1.0.")
        access_key_id = params["AccessKeyId"]
        secret = self._secret(access_key_id)
        self._check_timestamp(params["Timestamp"])
        expected = rpc_signature(secret, method, params)
        if not hmac.compare_digest(expected, params["Signature"]):
            raise _not_matched("Check your AccessKey secret.")
        self._use_nonce(access_key_id, params["SignatureNonce"])

    def _verify_acs3(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> None:
        """Verify a V3 request: Authorization, date and nonce headers, key, timestamp, body hash, signature.

        Raises:
            _PopError: On the first check that fails, in that order; see reference 2.3 for the algorithm.
        """
        access_key_id, signed_headers, signature = _parse_authorization(headers)
        for name in ("x-acs-date", "x-acs-signature-nonce"):
            if not headers.get(name):
                raise _missing(name)
        secret = self._secret(access_key_id)
        self._check_timestamp(headers["x-acs-date"])
        payload_sha256 = hashlib.sha256(body).hexdigest()
        declared = headers.get("x-acs-content-sha256")
        if declared is not None and declared.strip().lower() != payload_sha256:
            # Alibaba's code for this case is unconfirmed; it is a signing error either way.
            raise _not_matched("The x-acs-content-sha256 header does not match the request body.")
        expected = acs3_signature(secret, method, path, query, headers, signed_headers, payload_sha256)
        if not hmac.compare_digest(expected, signature.lower()):
            raise _not_matched("Check your AccessKey secret.")
        self._use_nonce(access_key_id, headers["x-acs-signature-nonce"])

    def _secret(self, access_key_id: str) -> str:
        """The master secret of an AccessKey id.

        Raises:
            _PopError: 404 ``InvalidAccessKeyId.NotFound`` for an unknown id (temporary ids included).
        """
        secret = self._credentials.master_secret(access_key_id)
        if secret is None:
            raise _PopError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        return secret

    def _check_timestamp(self, value: str) -> None:
        """Check a ``yyyy-MM-ddTHH:mm:ssZ`` request time against the wall clock.

        Raises:
            _PopError: 400 ``InvalidTimeStamp.Format`` if unparsable, ``InvalidTimeStamp.Expired`` if more than
                ``max_clock_skew_seconds`` away (15 minutes by default, reference 3.5).
        """
        try:
            sent = datetime.strptime(value, _TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise _PopError(
                400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted."
            ) from None
        # Against the wall clock, like the MNS Date check: clients sign with real time, and moving the
        # emulator clock (to expire tokens, say) stands for time passing on both sides.
        if abs(time.time() - sent) > self._settings.max_clock_skew_seconds:
            raise _PopError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")

    def _use_nonce(self, access_key_id: str, nonce: str) -> None:
        """Remember a verified request's nonce, in a memory bounded by age and by :data:`NONCE_MEMORY`.

        Raises:
            _PopError: 400 ``SignatureNonceUsed`` if this key already used the nonce.
        """
        now = time.time()
        # A nonce older than twice the skew window can never be replayed: its timestamp would be rejected.
        horizon = now - 2 * self._settings.max_clock_skew_seconds
        key = (access_key_id, nonce)
        with self._nonce_lock:
            while self._nonces and (len(self._nonces) >= NONCE_MEMORY or next(iter(self._nonces.values())) < horizon):
                self._nonces.popitem(last=False)
            if key in self._nonces:
                raise _PopError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
            self._nonces[key] = now

    # -- operations -------------------------------------------------------------------------------

    def _query_token(self, params: Mapping[str, str]) -> dict[str, Any]:
        """QueryTokenForMnsQueue: mint a queue credential for MessageType (reference 2.2, 2.4, 8.3).

        Raises:
            _PopError: 400 ``MissingMessageType``, ``InvalidMessageType.NotFound`` (no configured queue) or
                ``InvalidQueueName.NotFound`` (QueueName given but not that type's queue).
        """
        message_type = params.get("MessageType", "")
        if not message_type:
            raise _PopError(400, "MissingMessageType", "MessageType is mandatory for this action.")
        queue_name = self._settings.queues.get(message_type)
        if queue_name is None:
            # Alibaba's code for a type without MNS consumption is unconfirmed (reference 2.5, 10).
            known = ", ".join(sorted(self._settings.queues)) or "none"
            raise _PopError(
                400,
                "InvalidMessageType.NotFound",
                f"Specified message type {message_type} has no receipt queue; enabled types: {known}.",
            )
        requested = params.get("QueueName", "")
        if requested and requested != queue_name:
            # Unconfirmed code as well: the real service's answer to a mismatched QueueName is unpublished.
            raise _PopError(
                400,
                "InvalidQueueName.NotFound",
                f"Specified queue {requested} is not the receipt queue of message type {message_type}.",
            )
        credential = self._credentials.mint(message_type, queue_name)
        return {
            "Code": "OK",
            "Message": "OK",
            "MessageTokenDTO": {
                "AccessKeyId": credential.access_key_id,
                "AccessKeySecret": credential.access_key_secret,
                "SecurityToken": credential.security_token,
                "CreateTime": format_beijing(credential.created_at),
                "ExpireTime": format_beijing(credential.expires_at),
            },
        }

    def _query_send_details(self, params: Mapping[str, str]) -> dict[str, Any]:
        """QuerySendDetails: one page of a number's sends on one Beijing day (reference 6).

        Raises:
            _PopError: 400 ``Missing<Parameter>`` for an absent required parameter; HTTP 200 with
                ``isv.MOBILE_NUMBER_ILLEGAL`` or ``isv.INVALID_PARAMETERS`` for a bad value.
        """
        # Required parameters are enforced by the gateway (HTTP 400), value checks by the service (HTTP 200).
        for name in ("PhoneNumber", "SendDate", "PageSize", "CurrentPage"):
            if not params.get(name):
                raise _PopError(400, f"Missing{name}", f"{name} is mandatory for this action.")
        phone_number = params["PhoneNumber"]
        if not _PHONE_NUMBER.fullmatch(phone_number):
            raise _business(
                "isv.MOBILE_NUMBER_ILLEGAL", f"非法手机号: PhoneNumber {phone_number!r} is not one valid number."
            )
        send_date = self._send_date(params["SendDate"])
        page_size = _positive_int(params["PageSize"], "PageSize")
        current_page = _positive_int(params["CurrentPage"], "CurrentPage")
        if page_size > MAX_PAGE_SIZE:
            raise _business("isv.INVALID_PARAMETERS", f"参数异常: PageSize must be between 1 and {MAX_PAGE_SIZE}.")
        total, records = self._send_log.query(
            phone_number, send_date, params.get("BizId") or None, page_size, current_page
        )
        return {
            "Code": "OK",
            "Message": "OK",
            "TotalCount": total,
            "SmsSendDetailDTOs": {"SmsSendDetailDTO": [_detail(record) for record in records]},
        }

    def _query_send_statistics(self, params: Mapping[str, str]) -> dict[str, Any]:
        """QuerySendStatistics: one page of daily counts of the send log, one entry per Beijing send day.

        A send counts by its report as QuerySendDetails shows it (:meth:`SendLog.statistics`), so a
        receipt a ``lose`` fault kept out of MNS still counts as responded, as Alibaba's own counts do.
        Days are listed oldest first, only days with sends; ``TotalSize`` counts them on all pages. The
        emulator's sends are all mainland ones (IsGlobe 1); IsGlobe 2 finds none. ``SignName`` narrows to
        messages whose content starts with ``【SignName】``; the send log does not know template types, so
        ``TemplateType`` is checked but does not narrow.

        Raises:
            _PopError: 400 ``Missing<Parameter>`` for an absent required parameter; HTTP 200 with
                ``isv.INVALID_PARAMETERS`` for a bad IsGlobe, date, date order, page or template type.
        """
        for name in ("IsGlobe", "StartDate", "EndDate", "PageIndex", "PageSize"):
            if not params.get(name):
                raise _PopError(400, f"Missing{name}", f"{name} is mandatory for this action.")
        is_globe = _positive_int(params["IsGlobe"], "IsGlobe")
        if is_globe not in (IS_GLOBE_MAINLAND, IS_GLOBE_INTERNATIONAL):
            raise _business("isv.INVALID_PARAMETERS", "参数异常: IsGlobe must be 1 (mainland) or 2 (international).")
        start = _statistics_date(params["StartDate"], "StartDate")
        end = _statistics_date(params["EndDate"], "EndDate")
        if end < start:
            raise _business("isv.INVALID_PARAMETERS", "参数异常: EndDate must not be before StartDate.")
        page_index = _positive_int(params["PageIndex"], "PageIndex")
        page_size = _positive_int(params["PageSize"], "PageSize")
        if page_size > MAX_PAGE_SIZE:
            raise _business("isv.INVALID_PARAMETERS", f"参数异常: PageSize must be between 1 and {MAX_PAGE_SIZE}.")
        template_type = params.get("TemplateType")
        if template_type and (not template_type.isdigit() or int(template_type) not in TEMPLATE_TYPES):
            raise _business("isv.INVALID_PARAMETERS", "参数异常: TemplateType must be 0, 1, 2, 3 or 7.")
        sign_name = params.get("SignName") or None
        days = self._send_log.statistics(start, end, sign_name=sign_name) if is_globe == IS_GLOBE_MAINLAND else []
        first = (page_index - 1) * page_size
        return {
            "Code": "OK",
            "Message": "OK",
            "Data": {
                "TotalSize": len(days),
                "TargetList": [
                    {
                        "SendDate": day.send_date.strftime("%Y%m%d"),
                        "TotalCount": day.total,
                        "RespondedSuccessCount": day.responded_success,
                        "RespondedFailCount": day.responded_fail,
                        "NoRespondedCount": day.no_response,
                    }
                    for day in days[first : first + page_size]
                ],
            },
        }

    def _send_date(self, value: str) -> date:
        """Parse SendDate and check that it lies in the 30-day window before the emulator's Beijing day.

        Raises:
            _PopError: HTTP 200 ``isv.INVALID_PARAMETERS`` if malformed, in the future or too old.
        """
        try:
            if not _SEND_DATE.fullmatch(value):
                raise ValueError(value)
            send_date = datetime.strptime(value, "%Y%m%d").date()
        except ValueError:
            raise _business("isv.INVALID_PARAMETERS", "参数异常: SendDate must be yyyyMMdd.") from None
        days_back = (self._clock.now_beijing().date() - send_date).days
        if not 0 <= days_back <= QUERY_WINDOW_DAYS:
            # The real answer to a day outside the window is unpublished; isv.INVALID_PARAMETERS is our choice.
            raise _business(
                "isv.INVALID_PARAMETERS",
                f"参数异常: SendDate must be a Beijing day of the last {QUERY_WINDOW_DAYS} days.",
            )
        return send_date

    # -- rendering --------------------------------------------------------------------------------

    def _error_reply(self, status: int, code: str, message: str, request_id: str, service: str) -> Reply:
        """Render an error: the three business fields for HTTP 200, the full POP error body otherwise."""
        if status == 200:
            return _json_reply(200, {"RequestId": request_id, "Code": code, "Message": message}, request_id)
        product = _PRODUCTS.get(service, "Dysmsapi")
        payload = {
            "RequestId": request_id,
            "HostId": f"{product.lower()}.aliyuncs.com",
            "Code": code,
            "Message": message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product={product}",
        }
        return _json_reply(status, payload, request_id)


def _parse_authorization(headers: Mapping[str, str]) -> tuple[str, list[str], str]:
    """The AccessKey id, signed header names and signature of a V3 ``Authorization`` header.

    Raises:
        _PopError: 400 ``MissingParameter`` without the header, ``InvalidSignatureMethod`` for another
            algorithm, ``IncompleteSignature`` if a field is missing or a header is signed but absent, or
            ``host``/``x-acs-*`` present but unsigned.
    """
    authorization = headers.get("authorization", "").strip()
    if not authorization:
        raise _missing("Authorization")
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != ACS3_ALGORITHM:
        # Code unconfirmed; Alibaba's SDKs list it among the 400 signing errors.
        raise _PopError(400, "InvalidSignatureMethod", "Specified signature method is not valid.")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, separator, value = part.strip().partition("=")
        if not separator:
            raise _incomplete("Authorization must be Credential=...,SignedHeaders=...,Signature=....")
        fields[key] = value
    access_key_id = fields.get("Credential", "")
    signature = fields.get("Signature", "")
    signed_headers = [name.strip().lower() for name in fields.get("SignedHeaders", "").split(";") if name.strip()]
    if not (access_key_id and signature and signed_headers):
        raise _incomplete("Authorization must name a Credential, SignedHeaders and a Signature.")
    # The V3 rules require host and every x-acs-* header to be signed, so none can be swapped in transit.
    for name in headers:
        if (name == "host" or name.startswith("x-acs-")) and name not in signed_headers:
            raise _incomplete(f"header {name} is not among the SignedHeaders.")
    for name in signed_headers:
        if name not in headers:
            raise _incomplete(f"signed header {name} is not in the request.")
    return access_key_id, signed_headers, signature


def _statistics_date(value: str, name: str) -> date:
    """A QuerySendStatistics ``yyyyMMdd`` day (no window: Alibaba publishes none for this API).

    Raises:
        _PopError: HTTP 200 ``isv.INVALID_PARAMETERS`` if it is not a calendar day written yyyyMMdd.
    """
    try:
        if not _SEND_DATE.fullmatch(value):
            raise ValueError(value)
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise _business("isv.INVALID_PARAMETERS", f"参数异常: {name} must be yyyyMMdd.") from None


def _positive_int(value: str, name: str) -> int:
    """A paging parameter as a whole number of at least 1.

    Raises:
        _PopError: HTTP 200 ``isv.INVALID_PARAMETERS`` otherwise.
    """
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise _business("isv.INVALID_PARAMETERS", f"参数异常: {name} must be a whole number of at least 1.")
    return number


def _detail(record: SendRecord) -> dict[str, Any]:
    """A send record as one ``SmsSendDetailDTO`` of the QuerySendDetails answer."""
    detail: dict[str, Any] = {
        "PhoneNum": record.phone_number,
        "SendStatus": record.send_status,
        "ErrCode": record.err_code,
        "TemplateCode": record.template_code,
        "Content": record.content,
        "SendDate": format_beijing(record.send_time),
        "ReceiveDate": None if record.receive_time is None else format_beijing(record.receive_time),
        "OutId": record.out_id,
    }
    # POP leaves null fields out of its JSON rather than sending null.
    return {key: value for key, value in detail.items() if value is not None}


def _request_id() -> str:
    """A fresh RequestId in Alibaba's upper-case UUID form."""
    return str(uuid.uuid4()).upper()


def _json_reply(status: int, payload: Mapping[str, Any], request_id: str) -> Reply:
    """Compact UTF-8 JSON with the ``x-acs-request-id`` header the Tea SDK reads."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Reply.json(status, text, {"x-acs-request-id": request_id})
