"""A real S3 API on 127.0.0.1 (moto's ThreadedMotoServer) behind a fault-injecting HTTP proxy.

Test modules import the fixtures from here (``from s3_fixtures import moto_server, ...``). Clients
under test reach S3 through the proxy (``AWS_ENDPOINT_URL_S3``), so every request is real HTTP
and botocore's own retries run for real; faults are set per test on ``S3Env.proxy``:

* ``status``   answer with an S3 error (default 503 ServiceUnavailable) instead of forwarding;
* ``truncate`` send the full ``Content-Length`` header but only ``keep`` bytes, then hang up;
* ``corrupt``  send the whole body with some bytes flipped (same length);
* ``drop``     close the connection without any answer.

Each fault applies ``times`` times (``-1``: always) to requests whose method matches and whose
URL path contains ``path`` (and query contains ``query``).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailers", "transfer-encoding", "upgrade", "content-length"}


@dataclass
class Fault:
    """One injected failure; see the module docstring for the kinds."""

    kind: str
    method: str = "GET"
    path: str = ""
    query: str = ""
    times: int = 1
    status: int = 503
    code: str = "ServiceUnavailable"
    keep: int = 16
    #: Match only unsigned (True) or only signed (False) requests; None: both.
    anonymous: Optional[bool] = None
    hits: int = 0

    def matches(self, method: str, path: str, query: str, signed: bool) -> bool:
        return (self.method in (method, "*") and self.path in path and self.query in query
                and (self.anonymous is None or self.anonymous != signed)
                and (self.times < 0 or self.hits < self.times))


@dataclass
class FaultProxy:
    """A reverse proxy in front of ``upstream`` (``host``, ``port``) that injects ``faults``."""

    upstream: Tuple[str, int]
    faults: List[Fault] = field(default_factory=list)
    #: (method, path?query, fault kind or "") of every request seen, in order.
    requests: List[Tuple[str, str, str]] = field(default_factory=list)
    #: Whether each of those requests carried an AWS signature.
    signed: List[bool] = field(default_factory=list)
    server: Optional[ThreadingHTTPServer] = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, kind: str, **options) -> Fault:
        """Inject a fault (see ``Fault``) for the following requests."""
        fault = Fault(kind, **options)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault and forget the requests seen."""
        with self.lock:
            self.faults.clear()
            self.requests.clear()
            self.signed.clear()

    def count(self, method: str, path: str) -> int:
        """How many requests with ``method`` had ``path`` in their URL."""
        return sum(1 for m, p, _ in self.requests if m == method and path in p.split("?")[0])

    def _take(self, method: str, target: str, signed: bool) -> Optional[Fault]:
        parts = urlsplit(target)
        with self.lock:
            fault = next((f for f in self.faults if f.matches(method, parts.path, parts.query, signed)), None)
            if fault:
                fault.hits += 1
            self.requests.append((method, target, fault.kind if fault else ""))
            self.signed.append(signed)
            return fault

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._take(self.command, self.path, "Authorization" in self.headers)
                if fault and fault.kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault and fault.kind == "status":
                    payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{fault.code}</Code>'
                               f"<Message>injected by the test proxy</Message><RequestId>test</RequestId>"
                               f"</Error>").encode()
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body:
                    headers["Content-Length"] = str(len(body))
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() not in ("server", "date"):
                        self.send_header(key, value)
                full = response.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", full or "0")
                self.end_headers()
                if self.command == "HEAD":
                    return
                if fault and fault.kind == "truncate" and len(data) > fault.keep:
                    self.wfile.write(data[: fault.keep])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault and fault.kind == "corrupt" and data:
                    flipped = bytearray(data)
                    for i in range(len(flipped) // 2, min(len(flipped), len(flipped) // 2 + 8)):
                        flipped[i] ^= 0xFF
                    data = bytes(flipped)
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto S3 server on 127.0.0.1 (one per test session)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def fault_proxy(moto_server: str) -> Iterator[FaultProxy]:
    """The fault-injecting proxy in front of ``moto_server`` (one per session; cleared per test)."""
    parts = urlsplit(moto_server)
    proxy = FaultProxy((parts.hostname, parts.port)).start()
    yield proxy
    proxy.stop()


@dataclass
class S3Env:
    """What a test needs: a fresh bucket, a setup client straight to moto, and the proxy."""

    bucket: str
    client: object
    proxy: FaultProxy
    moto_url: str

    def put(self, key: str, data: bytes, checksum: bool = False) -> None:
        """Upload ``data`` as one single-part object (its ETag is its MD5); ``checksum=True`` also
        stores a SHA256 checksum that S3 returns (and botocore validates) on download."""
        extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)

    def make_public(self) -> None:
        """Let anyone list and read the bucket (as the reference's public weight buckets do)."""
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
             "Resource": [f"arn:aws:s3:::{self.bucket}", f"arn:aws:s3:::{self.bucket}/*"]}]}
        self.client.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(policy))

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


def aws_test_env(endpoint: str) -> dict:
    """Environment for clients under test: dummy credentials, us-east-1, ``endpoint`` for S3."""
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    }


@pytest.fixture
def s3env(moto_server: str, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Env]:
    """A fresh bucket; clients under test go through the proxy with fast, bounded retries."""
    import boto3

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_test_env(fault_proxy.url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CZB_FETCH_BACKOFF", "0.01")
    monkeypatch.setenv("CZB_FETCH_ATTEMPTS", "3")
    monkeypatch.setenv("CZB_S3_MAX_ATTEMPTS", "3")
    from botocore.config import Config

    # No default CRC on uploads: objects then carry only their ETag, unless a test asks otherwise.
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test",
                          config=Config(request_checksum_calculation="when_required"))
    bucket = f"czb-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    fault_proxy.clear()
    yield S3Env(bucket, client, fault_proxy, moto_server)
    fault_proxy.clear()
