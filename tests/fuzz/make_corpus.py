"""Write the seed corpus of every fuzz target into tests/fuzz/corpus/<target>/ (``python -m tests.fuzz.make_corpus``).

The seeds are the reference's examples (alicom-receipts.md, sections 4 and 5) and odd real-world variants
of them: full-width digits, nulls, huge numbers, NaN and Infinity, lone surrogates, byte order marks,
deep nesting, other encodings. The files are checked in; this script says where each one came from and
makes them again byte for byte. Inputs that fail their check today are not seeds but crashers
(tests/fuzz/crashers/), so that a fuzz run starts from a corpus that passes.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from mns_consumer.sinks.base import DeadLetter
from mns_consumer.sinks.dead_letter import dead_letter_to_json_dict
from mns_consumer.sinks.file import encode_json_line
from tests.fuzz.checks import GOOD_RECEIPTS, ROUTES, SECRET

ROOT = Path(__file__).parent / "corpus"
CRASHER_ROOT = Path(__file__).parent / "crashers"
DEEP = 5000


def _variants(message_type: str, good: bytes) -> dict[str, bytes]:
    """Odd spellings of one good receipt: each a seed of its own."""
    obj = json.loads(good)
    text = good.decode()
    fields = list(obj)
    out: dict[str, bytes] = {
        "reference": good,
        "base64": base64.b64encode(good),
        "base64-wrapped": base64.encodebytes(good),
        "bom": b"\xef\xbb\xbf" + good,
        "base64-of-bom": base64.b64encode(b"\xef\xbb\xbf" + good),
        "pretty": json.dumps(obj, indent=2, ensure_ascii=True).encode(),
        "nulls": json.dumps(dict.fromkeys(fields)).encode(),
        "fullwidth-digits": re.sub("[0-9]", lambda m: chr(0xFF10 + int(m.group())), text).encode(),
        "lone-surrogate": json.dumps({**obj, fields[0]: "\ud800x"}).encode("utf-8", "surrogatepass"),
        "lone-surrogate-escape": text.replace('"', '"\\udc80', 1).encode(),
        "nan": text.replace(f'"{fields[-1]}":', f'"{fields[-1]}":NaN,"was":', 1).encode(),
        "infinity": text.replace(f'"{fields[-1]}":', f'"{fields[-1]}":-Infinity,"was":', 1).encode(),
        "huge-float": text.replace(f'"{fields[-1]}":', f'"{fields[-1]}":1e400,"was":', 1).encode(),
        "huge-integer": text[:-1].encode() + b',"extra_number":' + b"9" * 5000 + b"}",
        "deep": text[:-1].encode() + b',"deep":' + b"[" * DEEP + b"]" * DEEP + b"}",
        "gbk": text.encode("gbk", "replace"),
        "utf16": text.encode("utf-16"),
        "truncated": good[: len(good) // 2],
        "array": b"[" + good + b"]",
        "empty": b"",
        "numbers-as-strings": json.dumps({k: str(v) if isinstance(v, int) else v for k, v in obj.items()}).encode(),
    }
    return {name: message_type.encode() + b"\n" + body for name, body in out.items()}


def mns_body() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    for message_type, good in GOOD_RECEIPTS.items():
        for name, data in _variants(message_type, good).items():
            seeds[f"{message_type}-{name}"] = data
    international = (
        b'{"To":"6591234567","Status":"1","MessageId":"1008030300000000","SmsSize":"1","TaskId":"67890",'
        b'"SendDate":"Wed, 01 May 2024 10:00:00 +0800","ReceiveDate":"Wed, 01 May 2024 10:00:06 +0800",'
        b'"ErrorCode":"success","ErrorDescription":"success"}'
    )
    seeds["SmsReport-international"] = b"SmsReport\n" + international
    seeds["SmsReport-international-base64"] = b"SmsReport\n" + base64.b64encode(international)
    seeds["SmsUp-compact-time"] = b"SmsUp\n" + GOOD_RECEIPTS["SmsUp"].replace(b"2024-05-01 10:05:00", b"20240501100500")
    seeds["SmsUp-string-sequence"] = b"SmsUp\n" + GOOD_RECEIPTS["SmsUp"].replace(b"1234567890", b'"0001234567890"')
    seeds["SmsUp-year-1"] = b"SmsUp\n" + GOOD_RECEIPTS["SmsUp"].replace(b"2024-05-01 10:05:00", b"0001-01-01 00:00:00")
    seeds["SmsReport-number-in-flag"] = b"SmsReport\n" + GOOD_RECEIPTS["SmsReport"].replace(b"true", b'"13900001111"')
    seeds["SmsReport-success-string"] = b"SmsReport\n" + GOOD_RECEIPTS["SmsReport"].replace(b"true", b'"TRUE"')
    seeds["unknown-type"] = b"VoiceReport\n" + GOOD_RECEIPTS["SmsReport"]
    return seeds


def push_body() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    for message_type, good in GOOD_RECEIPTS.items():
        prefix = message_type.encode() + b"\n"
        seeds[f"{message_type}-one"] = prefix + b"[" + good + b"]"
        seeds[f"{message_type}-two"] = prefix + b"[" + good + b"," + good + b"]"
        seeds[f"{message_type}-element"] = prefix + good
        seeds[f"{message_type}-good-and-bad"] = prefix + b"[" + good + b',{"nonsense":true},17,null,"text"]'
    seeds["SmsReport-empty-array"] = b"SmsReport\n[]"
    seeds["SmsReport-bom"] = b"SmsReport\n\xef\xbb\xbf[" + GOOD_RECEIPTS["SmsReport"] + b"]"
    seeds["SmsReport-deep-element"] = (
        b"SmsReport\n[" + GOOD_RECEIPTS["SmsReport"] + b"," + b"[" * DEEP + b"]" * DEEP + b"]"
    )
    seeds["SmsReport-huge-float-element"] = b"SmsReport\n[" + GOOD_RECEIPTS["SmsReport"] + b',{"x":1e400}]'
    seeds["SmsReport-surrogate-element"] = b"SmsReport\n[" + GOOD_RECEIPTS["SmsReport"] + b',{"biz_id":"\\ud800"}]'
    seeds["SmsReport-huge-integer-element"] = b"SmsReport\n[" + GOOD_RECEIPTS["SmsReport"] + b"," + b"9" * 5000 + b"]"
    seeds["SmsUp-fullwidth-element"] = (
        b'SmsUp\n[{"phone_number":"\xef\xbc\x91\xef\xbc\x93","sequence_id":"\xef\xbc\x91"}]'
    )
    seeds["SmsReport-nan-element"] = b"SmsReport\n[" + GOOD_RECEIPTS["SmsReport"] + b',{"x":NaN}]'
    seeds["SmsReport-not-json"] = b"SmsReport\n[{"
    seeds["SmsReport-number"] = b"SmsReport\n42"
    return seeds


def _request(path: str, body: bytes, content_type: bytes = b"application/json;charset=utf-8") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + b"Content-Type: "
        + content_type
        + b"\r\nContent-Length: *\r\n\r\n"
        + body
    )


def _raw(path: str, headers: str, body: bytes, version: str = "1.1") -> bytes:
    """A JSON POST with the headers given as they are (no ``Content-Length: *`` framing)."""
    return f"POST {path} HTTP/{version}\r\nContent-Type: application/json\r\n{headers}\r\n".encode() + body


def push_http() -> dict[str, bytes]:
    sms = f"{ROUTES['SmsReport']}/{SECRET}"
    up = f"{ROUTES['SmsUp']}/{SECRET}"
    good = b"[" + GOOD_RECEIPTS["SmsReport"] + b"]"
    return {
        # The reference's example exchange (section 5), and the same with the content type Alibaba may omit.
        "reference": _request(sms, good),
        "plain-json-type": _request(sms, good, b"application/json"),
        "smsup": _request(up, b"[" + GOOD_RECEIPTS["SmsUp"] + b"]"),
        "good-and-bad": _request(sms, b"[" + GOOD_RECEIPTS["SmsReport"] + b',{"biz_id":null},[[]]]'),
        "nan-element": _request(sms, b"[" + GOOD_RECEIPTS["SmsReport"] + b',{"x":NaN}]'),
        "huge-float": _request(sms, b"[" + GOOD_RECEIPTS["SmsReport"] + b',{"x":1e400}]'),
        "deep": _request(sms, b"[" + b"[" * DEEP + b"]" * DEEP + b"]"),
        "empty-array": _request(sms, b"[]"),
        "object": _request(sms, GOOD_RECEIPTS["SmsReport"]),
        "not-utf8": _request(sms, b'["\xff\xfe"]'),
        "latin1-type": _request(sms, good, b"application/json; charset=latin-1"),
        "text-type": _request(sms, good, b"text/plain"),
        "wrong-secret": _request(f"{ROUTES['SmsReport']}/not-the-secret-000000", good),
        "no-secret": _request(ROUTES["SmsReport"], good),
        "query-string": _request(sms + "?a=1", good),
        "get": f"GET {sms} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "head": f"HEAD {sms} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "no-length": _raw(sms, "", good),
        "chunked": _raw(sms, "Transfer-Encoding: chunked\r\n", b"5\r\n[1,2]\r\n0\r\n\r\n"),
        "short-body": _raw(sms, "Content-Length: 999\r\n", good),
        "too-long": _raw(sms, "Content-Length: 99999999999\r\n", b""),
        "negative-length": _raw(sms, "Content-Length: -1\r\n", b""),
        "pipelined": _request(sms, good).replace(b"*", str(len(good)).encode()) + _request(up, b"[]"),
        "http10": _raw(sms, f"Content-Length: {len(good)}\r\n", good, version="1.0"),
        "garbage": b"\x00\xff\r\n\r\n",
        "nan-in-header": _raw(sms, "Content-Length: NaN\r\n", b""),
    }


def config() -> dict[str, bytes]:
    example = (Path(__file__).parents[2] / "config.example.yaml").read_bytes()
    minimal = (
        b"credentials: {access_key_id: AKID, access_key_secret: SECRET}\n"
        b"sinks:\n  file: {type: file, path: /tmp/receipts.jsonl}\n"
        b"dead_letter: {type: file, path: /tmp/dead-letter.jsonl}\n"
        b"queues:\n  - {message_type: SmsReport, queue_name: Alicom-Queue-1-SmsReport, sinks: [file]}\n"
    )
    push = (
        b"sinks: {db: {type: database, url: 'sqlite:////tmp/r.db'}}\n"
        b"dead_letter: {type: file, path: /tmp/dl.jsonl}\n"
        b"push:\n  listen: 127.0.0.1:8080\n  spool_path: /tmp/spool.db\n"
        b"  routes:\n    - {path: /alicom/SmsReport, secret: '${PUSH_SECRET:-abcdefghijklmnop}', "
        b"message_type: SmsReport, sinks: [db]}\n"
    )
    return {
        "example": example,
        "minimal": minimal,
        "push": push,
        "empty": b"",
        "null": b"null\n",
        "list": b"- a\n- b\n",
        "bom": b"\xef\xbb\xbf" + minimal,
        "fullwidth-port": push.replace(b"8080", "\uff18\uff10\uff18\uff10".encode()),
        "unset-variable": minimal.replace(b"SECRET}", b"${NOT_SET_ANYWHERE}}"),
        "escaped-variable": minimal.replace(b"SECRET}", b"$${NOT_SET}}"),
        "unknown-key": minimal + b"colour: blue\n",
        "bad-yaml": b"queues: [\n",
        "tab-indent": b"queues:\n\t- x\n",
        "nan-timeout": minimal + b"drain_timeout_seconds: .nan\n",
        "null-section": minimal + b"push: ~\n",
        "wrong-type": minimal.replace(b"queues:", b"queues: 3\nx:"),
    }


def replay() -> dict[str, bytes]:
    at = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)

    def line(message_type: str, raw: bytes, **extra: object) -> bytes:
        letter = DeadLetter(message_type, "mns", f"Alicom-Queue-1-{message_type}", raw, "body is not JSON", at)
        return encode_json_line({**dead_letter_to_json_dict(letter), **extra})

    good = line("SmsReport", base64.b64encode(GOOD_RECEIPTS["SmsReport"]))
    return {
        "good": good,
        "all-types": b"".join(line(t, g) for t, g in GOOD_RECEIPTS.items() if t != "MnsCardTemplate"),
        "unrouted-type": line("MnsCardTemplate", GOOD_RECEIPTS["MnsCardTemplate"]),
        "still-bad": line("SmsReport", b"{not json"),
        "raw-base64": line("SmsUp", b"\xff\xfe" + GOOD_RECEIPTS["SmsUp"]),
        "torn-tail": good + good[:-10],
        "blank-lines": b"\n\n" + good + b"\n  \n",
        "push-source": line("SmsReport", GOOD_RECEIPTS["SmsReport"], source="push", queue="push:SmsReport"),
        "no-offset": good.replace(b"+00:00", b""),
        "nan-count": good.replace(b'"dequeue_count":null', b'"dequeue_count":NaN'),
        "float-count": good.replace(b'"dequeue_count":null', b'"dequeue_count":1.0'),
        "huge-count": good.replace(b'"dequeue_count":null', b'"dequeue_count":' + b"9" * 4000),
        "surrogate-raw": good.replace(b'"raw":"', b'"raw":"\\ud800', 1),
        "bad-base64": b'{"raw_base64":"!!!","failed_at":"2024-05-01T00:00:00+00:00"}\n',
        "array-line": b"[1,2]\n",
        "bom": b"\xef\xbb\xbf" + good,
    }


CRASHERS: dict[str, set[str]] = {
    # Seeds that failed their check when they were written: kept as crashers (see the module docstring).
    "mns_body": {
        "SmsReport-fullwidth-digits",
        "DypnsSmsVerifyReport-fullwidth-digits",
        "SignSmsReport-fullwidth-digits",
        "TemplateSmsReport-fullwidth-digits",
        "SmsReport-number-in-flag",
        "SmsUp-year-1",
    },
    "push_http": {"nan-element"},
}


def crashers() -> dict[str, dict[str, bytes]]:
    """Inputs that failed a check when they were written, beyond the diverted seeds."""
    sms = f"{ROUTES['SmsReport']}/{SECRET}".encode()
    good = b"[" + GOOD_RECEIPTS["SmsReport"] + b"]"
    minimal = config()["minimal"]
    return {
        # Found by atheris (make fuzz), as it minimized them.
        "mns_body": {
            "GlobeSmsReport-status-word": b'GlobeSmsReport\n{"to":"634567","status":"SI6IjIn2","message_id":"12r"}',
        },
        "push_body": {
            "MnsCardVender-render-status-word": b'MnsCardVender\n{"mobile":"1-90000m111","outId":"card-7",'
            b'"render_status":"066!!!!!ok"}',
        },
        "push_http": {
            # str.isdigit() takes the Latin-1 superscripts; int() does not.
            "superscript-length": b"POST " + sms + b" HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: \xb2\r\n\r\n" + good,
            "superscript-one-in-length": b"POST " + sms + b" HTTP/1.1\r\nConenttpe: ap\x9e\x9cation/json\r\n"
            b"Content-Length: 99999999\xb999\r\n\r\n",
        },
        "config": {
            "port-99999": minimal + b"http: {listen: '127.0.0.1:99999'}\n",
            "huge-integer": minimal + b"drain_timeout_seconds: " + b"9" * 5000 + b"\n",
            "not-utf8": minimal + b"# \xff\xfe\n",
            "recursive-anchor": minimal + b"x: &a [*a]\n",
            "deep": b"a: " + b"[" * 3000 + b"]" * 3000 + b"\n",
            "duplicate-keys": minimal + b"region: cn-hangzhou\nregion: ap-southeast-1\n",
        },
        "replay": {
            "deep-line": b"[" * 3000 + b"]" * 3000 + b"\n",
        },
    }


def main() -> None:
    """Write every seed and crasher, replacing what the folders held."""
    extra = crashers()
    for target, make in {
        "mns_body": mns_body,
        "push_body": push_body,
        "push_http": push_http,
        "config": config,
        "replay": replay,
    }.items():
        seeds = make()
        diverted = {name: seeds.pop(name) for name in CRASHERS.get(target, set())}
        for root, files in ((ROOT, seeds), (CRASHER_ROOT, {**diverted, **extra.get(target, {})})):
            folder = root / target
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (folder / name).write_bytes(data)


if __name__ == "__main__":
    main()
