"""POP request verification: V3 (ACS3-HMAC-SHA256) and V1 (HMAC-SHA1) exactly as reference 2.3 describes.

Requests are signed with the Tea SDK's own helpers (``alibabacloud_tea_openapi.utils``), and the captured
requests of reference 2.3 serve as golden checks of the emulator's canonicalisation.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
from alibabacloud_tea_openapi.utils import Utils

from mns_consumer.emulator.clock import Clock
from mns_consumer.emulator.credentials import CredentialStore
from mns_consumer.emulator.http_reply import Reply
from mns_consumer.emulator.pop import PopApi, acs3_signature, rpc_signature
from mns_consumer.emulator.send_log import SendLog
from mns_consumer.emulator.settings import EmulatorSettings

AKID = "AKID"
SECRET = "SECRET"
QUEUE = "Alicom-Queue-123-SmsReport"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# The V3 request of reference 2.3, captured from the Tea SDK.
CAPTURED_V3_QUERY = {"MessageType": "SmsReport", "QueueName": QUEUE}
CAPTURED_V3_HEADERS = {
    "host": "127.0.0.1:18080",
    "x-acs-version": "2017-05-25",
    "x-acs-action": "QueryTokenForMnsQueue",
    "x-acs-date": "2026-11-22T01:29:11Z",
    "x-acs-signature-nonce": "0e86232e998f4388740f61149169c25a",
    "x-acs-content-sha256": EMPTY_SHA256,
    "x-acs-credentials-provider": "static_ak",
    "accept": "application/json",
    "user-agent": "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2",
    "authorization": (
        "ACS3-HMAC-SHA256 Credential=AKID,SignedHeaders=accept;host;user-agent;x-acs-action;"
        "x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=f4921e9dab247e9e032df20b5443ad65cde4cc35fdef09656ec8aaa9a16fd20b"
    ),
}
# The V1 request of reference 2.3 (signature_algorithm="v2"), with its captured Signature.
CAPTURED_V1_PARAMS = {
    "Action": "QueryTokenForMnsQueue",
    "Format": "json",
    "Version": "2017-05-25",
    "Timestamp": "2026-11-22T01:29:11Z",
    "SignatureNonce": "0e67f5a69362c551e08ca4444bd7876d",
    "MessageType": "SmsReport",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureVersion": "1.0",
    "AccessKeyId": AKID,
}
CAPTURED_V1_SIGNATURE = "SwrsjHAOtkZwL7YvXSUJmNBwjwg="
CAPTURED_EPOCH = datetime(2026, 11, 22, 1, 29, 11, tzinfo=UTC).timestamp()


def make_api(clock: Clock, **overrides: Any) -> PopApi:
    """A PopApi that knows the AKID/SECRET master key and one SmsReport queue."""
    settings = EmulatorSettings(
        access_key_id=AKID, access_key_secret=SECRET, queues={"SmsReport": QUEUE, "SmsUp": "Alicom-Queue-123-SmsUp"}
    )
    if overrides:
        settings = EmulatorSettings(**{**settings.__dict__, **overrides})
    credentials = CredentialStore(clock, settings.token_ttl_seconds)
    credentials.add_master_key(AKID, SECRET)
    return PopApi(settings, clock, credentials, SendLog())


@pytest.fixture
def clock() -> Clock:
    """The emulator clock, at real time."""
    return Clock()


@pytest.fixture
def api(clock: Clock) -> PopApi:
    """The POP front end under test."""
    return make_api(clock)


REPLAY_SKEW_SECONDS = 100 * 365 * 86400.0


def at_capture_time() -> Clock:
    """An emulator clock standing at the instant the reference's requests were captured."""
    return Clock(offset_seconds=CAPTURED_EPOCH - time.time())


def timestamp(clock: Clock, shift_seconds: float = 0.0) -> str:
    """A POP timestamp (UTC, second resolution) of the emulator clock, optionally shifted."""
    return datetime.fromtimestamp(clock.now() + shift_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def v3_request(
    clock: Clock,
    query: dict[str, str] | None = None,
    *,
    action: str = "QueryTokenForMnsQueue",
    secret: str = SECRET,
    access_key_id: str = AKID,
    body: bytes = b"",
    date_shift_seconds: float = 0.0,
) -> tuple[str, dict[str, str]]:
    """A request target and headers signed by the Tea SDK's own V3 helper."""
    query = {"MessageType": "SmsReport", "QueueName": QUEUE} if query is None else query
    headers = {
        "host": "127.0.0.1:18080",
        "x-acs-version": "2017-05-25",
        "x-acs-action": action,
        "user-agent": "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2",
        "x-acs-date": timestamp(clock, date_shift_seconds),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "accept": "application/json",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    request = SimpleNamespace(method="POST", pathname="/", query=query, headers=headers)
    headers["authorization"] = Utils.get_authorization(
        request, "ACS3-HMAC-SHA256", hashlib.sha256(body).hexdigest(), access_key_id, secret
    )
    return "/?" + urlencode(query), headers


def v1_params(
    clock: Clock,
    extra: dict[str, str] | None = None,
    *,
    secret: str = SECRET,
    form: dict[str, str] | None = None,
    timestamp_shift_seconds: float = 0.0,
) -> dict[str, str]:
    """V1 query parameters signed by the Tea SDK's own V1 helper (over query and form parameters)."""
    params = {
        "Action": "QueryTokenForMnsQueue",
        "Format": "json",
        "Version": "2017-05-25",
        "Timestamp": timestamp(clock, timestamp_shift_seconds),
        "SignatureNonce": uuid.uuid4().hex,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": AKID,
        **({"MessageType": "SmsReport"} if extra is None else extra),
    }
    params["Signature"] = Utils.get_rpcsignature({**params, **(form or {})}, "POST", secret)
    return params


def body_of(reply: Reply) -> dict[str, Any]:
    """The JSON body of a reply."""
    decoded: dict[str, Any] = json.loads(reply.body)
    return decoded


def test_captured_v3_signature_is_reproduced_byte_for_byte() -> None:
    """The emulator's V3 canonicalisation yields the signature the Tea SDK sent in reference 2.3."""
    signed = CAPTURED_V3_HEADERS["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    signature = acs3_signature(SECRET, "POST", "/", CAPTURED_V3_QUERY, CAPTURED_V3_HEADERS, signed, EMPTY_SHA256)
    assert signature == "f4921e9dab247e9e032df20b5443ad65cde4cc35fdef09656ec8aaa9a16fd20b"


def test_captured_v3_request_is_accepted_at_its_capture_time() -> None:
    """The captured V3 request, replayed against a clock at its capture time, gets a token."""
    # Timestamps are checked against the wall clock; the capture is older than the 15-minute window.
    api = make_api(at_capture_time(), max_clock_skew_seconds=REPLAY_SKEW_SECONDS)
    reply = api.handle("POST", "/?" + urlencode(CAPTURED_V3_QUERY), CAPTURED_V3_HEADERS, b"")
    assert reply.status == 200
    assert body_of(reply)["Code"] == "OK"


def test_captured_v1_signature_is_reproduced_and_agrees_with_the_sdk() -> None:
    """The emulator's V1 signature matches both the captured one and the SDK helper's."""
    assert rpc_signature(SECRET, "POST", CAPTURED_V1_PARAMS) == CAPTURED_V1_SIGNATURE
    assert Utils.get_rpcsignature(CAPTURED_V1_PARAMS, "POST", SECRET) == CAPTURED_V1_SIGNATURE


def test_captured_v1_request_is_accepted_at_its_capture_time() -> None:
    """The captured V1 request, replayed against a clock at its capture time, gets a token."""
    # Timestamps are checked against the wall clock; the capture is older than the 15-minute window.
    api = make_api(at_capture_time(), max_clock_skew_seconds=REPLAY_SKEW_SECONDS)
    params = {**CAPTURED_V1_PARAMS, "Signature": CAPTURED_V1_SIGNATURE}
    reply = api.handle("POST", "/?" + urlencode(params), {"host": "127.0.0.1:18080"}, b"")
    assert reply.status == 200
    assert body_of(reply)["MessageTokenDTO"]["AccessKeyId"].startswith("STS.")


def test_sdk_signed_v3_request_is_accepted(api: PopApi, clock: Clock) -> None:
    """A V3 request signed by the SDK helper passes verification."""
    target, headers = v3_request(clock)
    reply = api.handle("POST", target, headers, b"")
    assert reply.status == 200, reply.body


def test_sdk_signed_v3_request_with_non_ascii_query_is_accepted(api: PopApi, clock: Clock) -> None:
    """Percent-encoded UTF-8 and reserved characters canonicalise the same on both sides."""
    target, headers = v3_request(clock, {"MessageType": "SmsReport", "QueueName": QUEUE, "Remark": "回执 a+b/c~"})
    assert api.handle("POST", target, headers, b"").status == 200


def test_sdk_signed_v1_request_is_accepted(api: PopApi, clock: Clock) -> None:
    """A V1 request signed by the SDK helper passes verification."""
    reply = api.handle("POST", "/?" + urlencode(v1_params(clock)), {}, b"")
    assert reply.status == 200, reply.body


def test_v1_form_body_parameters_are_signed_and_used(api: PopApi, clock: Clock) -> None:
    """Form-encoded body parameters count like query parameters, in the signature and the operation."""
    form = {"MessageType": "SmsUp"}
    params = v1_params(clock, {}, form=form)
    reply = api.handle(
        "POST",
        "/?" + urlencode(params),
        {"content-type": "application/x-www-form-urlencoded"},
        urlencode(form).encode(),
    )
    assert reply.status == 200, reply.body


@pytest.mark.parametrize("style", ["v3", "v1"])
def test_wrong_secret_is_signature_does_not_match_without_leaking_anything(
    api: PopApi, clock: Clock, style: str
) -> None:
    """A signature made with another secret is refused with 400, and no secret or string-to-sign is echoed."""
    if style == "v3":
        target, headers = v3_request(clock, secret="not-the-secret")
    else:
        target, headers = "/?" + urlencode(v1_params(clock, secret="not-the-secret")), {}
    reply = api.handle("POST", target, headers, b"")
    body = body_of(reply)
    assert reply.status == 400
    assert body["Code"] == "SignatureDoesNotMatch"
    assert "does not reveal its string-to-sign" in body["Message"]
    assert SECRET not in reply.body.decode()


def test_tampered_query_is_signature_does_not_match(api: PopApi, clock: Clock) -> None:
    """Changing a parameter after signing breaks the V3 signature."""
    _, headers = v3_request(clock)
    target = "/?" + urlencode({"MessageType": "SmsUp", "QueueName": QUEUE})
    assert body_of(api.handle("POST", target, headers, b""))["Code"] == "SignatureDoesNotMatch"


def test_body_not_matching_its_content_sha256_is_refused(api: PopApi, clock: Clock) -> None:
    """x-acs-content-sha256 must be the hash of the body actually sent."""
    target, headers = v3_request(clock, body=b"MessageType=SmsReport")
    reply = api.handle("POST", target, headers, b"MessageType=SmsUp")
    assert reply.status == 400
    assert "x-acs-content-sha256" in body_of(reply)["Message"]


@pytest.mark.parametrize("style", ["v3", "v1"])
def test_unknown_access_key_is_404_not_found(clock: Clock, style: str) -> None:
    """An AccessKey id the emulator does not know is 404 InvalidAccessKeyId.NotFound."""
    api = PopApi(EmulatorSettings(queues={"SmsReport": QUEUE}), clock, CredentialStore(clock, 60), SendLog())
    if style == "v3":
        target, headers = v3_request(clock)
    else:
        target, headers = "/?" + urlencode(v1_params(clock)), {}
    reply = api.handle("POST", target, headers, b"")
    assert reply.status == 404
    assert body_of(reply)["Code"] == "InvalidAccessKeyId.NotFound"
    assert body_of(reply)["Message"] == "Specified access key is not found."


def test_reused_nonce_is_signature_nonce_used(api: PopApi, clock: Clock) -> None:
    """Replaying a verified request is refused the second time."""
    target, headers = v3_request(clock)
    assert api.handle("POST", target, headers, b"").status == 200
    reply = api.handle("POST", target, headers, b"")
    assert reply.status == 400
    assert body_of(reply)["Code"] == "SignatureNonceUsed"


def test_failed_request_does_not_burn_its_nonce(api: PopApi, clock: Clock) -> None:
    """Only verified requests consume a nonce, so a retry with a fixed secret still works."""
    target, headers = v3_request(clock)
    tampered = {**headers, "authorization": headers["authorization"].replace("Signature=", "Signature=0")}
    assert body_of(api.handle("POST", target, tampered, b""))["Code"] == "SignatureDoesNotMatch"
    assert api.handle("POST", target, headers, b"").status == 200


@pytest.mark.parametrize("shift_seconds", [-16 * 60, 16 * 60])
def test_timestamp_more_than_15_minutes_off_is_expired(api: PopApi, clock: Clock, shift_seconds: float) -> None:
    """x-acs-date and Timestamp must be within 15 minutes of the emulator clock."""
    target, headers = v3_request(clock, date_shift_seconds=shift_seconds)
    assert body_of(api.handle("POST", target, headers, b""))["Code"] == "InvalidTimeStamp.Expired"
    v1_target = "/?" + urlencode(v1_params(clock, timestamp_shift_seconds=shift_seconds))
    assert body_of(api.handle("POST", v1_target, {}, b""))["Code"] == "InvalidTimeStamp.Expired"


def test_timestamp_within_15_minutes_is_accepted(api: PopApi, clock: Clock) -> None:
    """A client clock a few minutes off is tolerated."""
    target, headers = v3_request(clock, date_shift_seconds=-14 * 60)
    assert api.handle("POST", target, headers, b"").status == 200


def test_malformed_timestamp_is_refused(api: PopApi, clock: Clock) -> None:
    """A Timestamp that is not yyyy-MM-ddTHH:mm:ssZ is InvalidTimeStamp.Format."""
    params = v1_params(clock)
    params["Timestamp"] = "22/11/2026 01:29"
    params["Signature"] = rpc_signature(SECRET, "POST", params)
    assert body_of(api.handle("POST", "/?" + urlencode(params), {}, b""))["Code"] == "InvalidTimeStamp.Format"


def test_request_without_any_signature_is_missing_authorization(api: PopApi) -> None:
    """An unsigned V3-style request is a 400 MissingParameter naming Authorization."""
    headers = {"x-acs-action": "QueryTokenForMnsQueue", "x-acs-version": "2017-05-25"}
    reply = api.handle("POST", "/?MessageType=SmsReport", headers, b"")
    assert reply.status == 400
    assert body_of(reply)["Code"] == "MissingParameter"
    assert "Authorization" in body_of(reply)["Message"]


def test_v1_request_without_nonce_is_missing_parameter(api: PopApi, clock: Clock) -> None:
    """Every V1 signing parameter is required."""
    params = v1_params(clock)
    del params["SignatureNonce"]
    reply = api.handle("POST", "/?" + urlencode(params), {}, b"")
    assert (reply.status, body_of(reply)["Code"]) == (400, "MissingParameter")
    assert "SignatureNonce" in body_of(reply)["Message"]


def test_garbled_authorization_is_incomplete_signature(api: PopApi, clock: Clock) -> None:
    """An ACS3 Authorization header without its fields is IncompleteSignature."""
    target, headers = v3_request(clock)
    headers["authorization"] = "ACS3-HMAC-SHA256 Credential=AKID"
    assert body_of(api.handle("POST", target, headers, b""))["Code"] == "IncompleteSignature"


def test_unsigned_acs_header_is_incomplete_signature(api: PopApi, clock: Clock) -> None:
    """An x-acs-* header added after signing is refused, so none can be swapped in transit."""
    target, headers = v3_request(clock)
    headers["x-acs-security-token"] = "CAISinjected"
    assert body_of(api.handle("POST", target, headers, b""))["Code"] == "IncompleteSignature"


def test_other_signature_algorithms_are_refused(api: PopApi, clock: Clock) -> None:
    """Only ACS3-HMAC-SHA256 and HMAC-SHA1 are served."""
    target, headers = v3_request(clock)
    headers["authorization"] = headers["authorization"].replace("ACS3-HMAC-SHA256", "ACS3-HMAC-SM3", 1)
    assert body_of(api.handle("POST", target, headers, b""))["Code"] == "InvalidSignatureMethod"


def test_signature_checks_can_be_switched_off(clock: Clock) -> None:
    """With verify_signatures off, an unsigned request is served."""
    api = make_api(clock, verify_signatures=False)
    headers = {"x-acs-action": "QueryTokenForMnsQueue", "x-acs-version": "2017-05-25"}
    reply = api.handle("POST", "/?MessageType=SmsReport", headers, b"")
    assert reply.status == 200


def test_unknown_action_is_404_invalid_action(api: PopApi, clock: Clock) -> None:
    """An action the emulator does not serve is 404 InvalidAction.NotFound."""
    target, headers = v3_request(clock, action="SendSms")
    reply = api.handle("POST", target, headers, b"")
    assert (reply.status, body_of(reply)["Code"]) == (404, "InvalidAction.NotFound")


def test_wrong_version_is_400_invalid_version(api: PopApi, clock: Clock) -> None:
    """Only version 2017-05-25 is served."""
    params = v1_params(clock)
    params["Version"] = "2018-05-01"
    params["Signature"] = rpc_signature(SECRET, "POST", params)
    reply = api.handle("POST", "/?" + urlencode(params), {}, b"")
    assert (reply.status, body_of(reply)["Code"]) == (400, "InvalidVersion")


def test_every_reply_is_json_with_a_request_id_header(api: PopApi, clock: Clock) -> None:
    """Successes and errors alike carry x-acs-request-id, equal to the body's RequestId."""
    target, headers = v3_request(clock)
    for reply in (api.handle("POST", target, headers, b""), api.handle("PUT", target, headers, b"")):
        assert reply.headers["Content-Type"] == "application/json;charset=utf-8"
        assert reply.headers["x-acs-request-id"] == body_of(reply)["RequestId"]


def test_operation_prefers_the_v3_header_over_the_v1_query(api: PopApi) -> None:
    """The action comes from x-acs-action, else from Action, else there is none."""
    assert (
        api.operation("Action=QuerySendDetails", {"x-acs-action": "QueryTokenForMnsQueue"}) == "QueryTokenForMnsQueue"
    )
    assert api.operation("Action=QuerySendDetails&PhoneNumber=1", {}) == "QuerySendDetails"
    assert api.operation("MessageType=SmsReport", {}) is None


def test_service_of_names_the_product_of_an_operation() -> None:
    """Tokens are Dybaseapi's, send details Dysmsapi's."""
    assert PopApi.service_of("QueryTokenForMnsQueue") == "dybaseapi"
    assert PopApi.service_of("QuerySendDetails") == "dysmsapi"


def test_error_with_status_200_is_a_business_failure(api: PopApi) -> None:
    """A 200 error is HTTP 200 whose Code is not OK, as Dysmsapi reports business failures."""
    reply = api.error(200, "isp.SYSTEM_ERROR", "系统错误")
    assert reply.status == 200
    assert body_of(reply) == {
        "RequestId": reply.headers["x-acs-request-id"],
        "Code": "isp.SYSTEM_ERROR",
        "Message": "系统错误",
    }


def test_error_with_4xx_has_the_full_pop_error_body(api: PopApi) -> None:
    """A 4xx/5xx error carries RequestId, HostId, Code, Message and Recommend."""
    reply = api.error(503, "ServiceUnavailable", "Injected fault.", service="dybaseapi")
    body = body_of(reply)
    assert reply.status == 503
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert body["HostId"] == "dybaseapi.aliyuncs.com"
    assert (body["Code"], body["Message"]) == ("ServiceUnavailable", "Injected fault.")
