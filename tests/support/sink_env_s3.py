"""The S3 sink's environment: moto's standalone server over real HTTP, behind a cuttable TCP proxy.

moto keeps its buckets in process-global state and its server's ``stop()`` does not free the port, so
"the destination is gone" is played by stopping a :class:`~tests.support.tcp_proxy.TcpProxy` in front
of it: connections are refused while the stored objects stay. Every environment uses its own bucket,
since moto's state is shared by every server in the process.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from mns_consumer.receipt_model import Receipt
from mns_consumer.sinks.s3 import S3Sink, S3SinkConfig, decode_object_keys
from tests.support.tcp_proxy import TcpProxy

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing-secret-access-key"


class S3Env:
    """A moto server with a fresh bucket; the sink reaches it through a proxy that tests can cut."""

    def __init__(self) -> None:
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.proxy = TcpProxy(host, port).start()
        self.bucket = f"receipts-{uuid.uuid4().hex[:12]}"
        self.admin: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        self.admin.create_bucket(Bucket=self.bucket)

    @property
    def endpoint_url(self) -> str:
        """The sink's endpoint: the proxy in front of moto."""
        return f"http://127.0.0.1:{self.proxy.port}"

    def config(self, **overrides: Any) -> S3SinkConfig:
        """The sink's configuration for this environment's bucket."""
        settings: dict[str, Any] = {
            "bucket": self.bucket,
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            "addressing_style": "path",
            "connect_timeout_seconds": 2,
            "read_timeout_seconds": 5,
        }
        return S3SinkConfig.model_validate({**settings, **overrides})

    def make_sink(self, clock: Any = None, **overrides: Any) -> S3Sink:
        """A new, unopened sink writing to the bucket."""
        return S3Sink("s3", self.config(**overrides), clock=clock)

    def object_keys(self) -> list[str]:
        """Every object key in the bucket, sorted."""
        keys: list[str] = []
        for page in self.admin.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys += [entry["Key"] for entry in page.get("Contents", [])]
        return sorted(keys)

    def get(self, key: str) -> dict[str, Any]:
        """GetObject on moto directly: the response with the body read into ``"Bytes"``."""
        response: dict[str, Any] = self.admin.get_object(Bucket=self.bucket, Key=key)
        with response["Body"] as stream:
            response["Bytes"] = stream.read()
        return response

    def put_raw(self, key: str, body: bytes) -> None:
        """Put an object as another writer would."""
        self.admin.put_object(Bucket=self.bucket, Key=key, Body=body)

    def stored_keys(self) -> list[str]:
        """Every line's dedupe key in every object, repeats included."""
        keys: list[str] = []
        for key in self.object_keys():
            keys += decode_object_keys(self.get(key)["Bytes"])
        return keys

    def rejectable(self, base: Receipt) -> Receipt | None:
        """None: the S3 sink never rejects a receipt."""
        del base
        return None

    def make_unavailable(self) -> None:
        """Cut the proxy: connections to the sink's endpoint are refused or reset."""
        self.proxy.stop()

    def restore(self) -> None:
        """Reopen the proxy on the same port; moto kept every object."""
        self.proxy.start()

    def close(self) -> None:
        """Stop the proxy and the moto server, and free its port."""
        self.proxy.stop()
        self.admin.close()
        self.moto.stop()
        # ThreadedMotoServer.stop() leaves the listening socket open; close it to free the port.
        server = getattr(self.moto, "_server", None)
        if server is not None:
            with contextlib.suppress(OSError):
                server.server_close()


def make_env(kind: str, tmp_path: Path) -> S3Env:
    """The contract suite's S3 environment (``kind`` is always ``s3``)."""
    del kind, tmp_path
    return S3Env()
