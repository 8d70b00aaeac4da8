"""A fault-injecting, request-counting HTTP reverse proxy on loopback.

Put it between a client and a registry (the client talks to ``proxy.host`` as if it were the
registry; the Host header is passed through, so absolute Location URLs come back to the proxy).
Every request is recorded (method, path, status, which fault hit it). Faults apply to chosen
requests, picked by method and a path regex, after ``skip`` matching requests, for ``times``, on
every ``every``-th of them:

- ``reset``: the connection is reset (RST) instead of answering;
- ``status``: an error status (500, 503, 429 with ``retry_after``...) without asking upstream;
- ``delay_request``: wait, then forward (a slow registry, or a writer stalled mid-update);
- ``delay_response``: forward, then wait before answering (a read timeout on the client);
- ``corrupt``: forward, then flip a byte of the response body (a registry serving bad content).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

FaultKind = Literal["reset", "status", "delay_request", "delay_response", "corrupt"]
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass
class Fault:
    kind: FaultKind
    method: str | None = None
    path: str | None = None  # regex, searched in the path with its query
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    skip: int = 0
    times: int = 1  # -1: no limit
    every: int = 1
    seen: int = 0
    applied: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method:
            return False
        return not (self.path and not re.search(self.path, path))

    def take(self, method: str, path: str) -> bool:
        """Whether this fault hits this request (and count it)."""
        if not self.matches(method, path):
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times >= 0 and self.applied >= self.times):
            return False
        if (self.seen - self.skip - 1) % self.every:
            return False
        self.applied += 1
        return True


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int | None  # None: the connection was reset
    fault: FaultKind | None
    headers: Mapping[str, str] = field(default_factory=dict)  # request headers, lowercase names
    response_headers: Mapping[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._faults: list[Fault] = []
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self._seen.clear()

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        return sum(
            1
            for s in self.requests
            if (method is None or s.method == method) and (path is None or re.search(path, s.path))
        )

    def describe(self) -> str:
        return "\n".join(
            f"{s.method} {s.path} -> {s.status} {s.fault or ''}" for s in self.requests
        )

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.take(method, path):
                    return fault
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)


@contextlib.contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients closing kept-alive connections are normal here, not worth a traceback."""


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm on, each kept-alive request
    # after the first would stall ~40 ms on the client's delayed ACK (as Go servers, turn it off).
    disable_nagle_algorithm = True
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: object) -> None:
        return

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        if self._upstream is not None:
            self._upstream.close()

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _seen(
        self, status: int | None, kind: FaultKind | None, response: Mapping[str, str] | None = None
    ) -> None:
        request = {k.lower(): v for k, v in self.headers.items()}
        self.owner._record(Seen(self.command, self.path, status, kind, request, response or {}))

    def _handle(self) -> None:
        body = self._read_body()
        fault = self.owner._fault_for(self.command, self.path)
        kind = fault.kind if fault else None
        if fault and fault.kind == "reset":
            self._seen(None, kind)
            self._reset()
            return
        if fault and fault.kind == "status":
            self._seen(fault.status, kind)
            self._error(fault.status, fault.retry_after)
            return
        if fault and fault.kind == "delay_request":
            time.sleep(fault.delay)
        try:
            status, reason, headers, payload = self._forward(body)
        except OSError:
            self._seen(502, kind)
            self._error(502, None)
            return
        self._seen(status, kind, {k.lower(): v for k, v in headers})
        if fault and fault.kind == "delay_response":
            time.sleep(fault.delay)
        if fault and fault.kind == "corrupt" and payload:
            payload = bytes([payload[0] ^ 0x01]) + payload[1:]
        with contextlib.suppress(OSError):
            self.send_response(status, reason)
            for name, value in headers:
                self.send_header(name, value)
            if self.command != "HEAD" and status not in (204, 304):
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        if self._upstream is None:
            self._upstream = http.client.HTTPConnection(self.owner.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        try:
            self._upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = self._upstream.getresponse()
        except (http.client.HTTPException, OSError):
            # A kept-alive upstream connection the registry closed: one fresh try.
            self._upstream.close()
            self._upstream = http.client.HTTPConnection(self.owner.upstream, timeout=60)
            self._upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = self._upstream.getresponse()
        payload = response.read()
        kept = [
            (k, v)
            for k, v in response.getheaders()
            if k.lower() not in _HOP_BY_HOP
            and (self.command == "HEAD" or k.lower() != "content-length")
        ]
        return response.status, response.reason, kept, payload

    def _error(self, status: int, retry_after: str | None) -> None:
        payload = json.dumps(
            {"errors": [{"code": "UNAVAILABLE", "message": f"injected fault {status}"}]}
        ).encode()
        with contextlib.suppress(OSError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(payload)

    def _reset(self) -> None:
        """Close with SO_LINGER 0: the client gets a TCP RST, not an orderly close."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # the RST goes out when finish() closes rfile and wfile
