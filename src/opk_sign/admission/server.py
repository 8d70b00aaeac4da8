"""``opk-sign serve``: the verification service for Kubernetes admission.

The standard library's threading HTTP server (one thread per connection), with bounds on
everything a caller controls:

- at most ``max_connections`` connections (so threads) at once: past them a connection is
  answered 503 and closed at once; each request's line, headers and body must arrive within
  ``read_timeout`` in all (one deadline per request, not per read): a slower client gets 408 and
  its connection closed, so slow clients cannot hold threads or buffers without bound;
- ``POST /`` (also ``/verify``): an external data ``ProviderRequest`` (:mod:`.external_data`);
  a body over ``max_body`` bytes is refused (413) before it is read, one that is not a request
  is 400, more than ``max_concurrency`` requests at once are refused at once (429, Retry-After)
  rather than queued past the admission webhook's timeout;
- every request is decided within ``request_timeout`` (its keys in parallel, ``jobs`` at once);
  a key the deadline cut off is refused, saying so;
- ``GET /healthz``: 200 when the service can answer; ``GET /metrics``: Prometheus text format.

The engine (:class:`~opk_sign.admission.engine.Engine`) and its cache are shared by all requests.
"""

from __future__ import annotations

import io
import json
import socket
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from opk_sign import deadline
from opk_sign._version import __version__
from opk_sign.admission import external_data
from opk_sign.admission.decision import Decision, one_line
from opk_sign.admission.engine import Engine
from opk_sign.admission.settings import (
    SERVICE_JOBS,
    SERVICE_MAX_BODY,
    SERVICE_MAX_CONCURRENCY,
    SERVICE_REQUEST_TIMEOUT,
)
from opk_sign.errors import UsageError

DEFAULT_MAX_BODY: Final = SERVICE_MAX_BODY
DEFAULT_MAX_CONCURRENCY: Final = SERVICE_MAX_CONCURRENCY
DEFAULT_REQUEST_TIMEOUT: Final = SERVICE_REQUEST_TIMEOUT
DEFAULT_JOBS: Final = SERVICE_JOBS
#: Seconds a client may take to send its request line, headers and body (all of them).
READ_TIMEOUT: Final = 10.0
#: Connections (each its own thread) open at once; past them, 503 and closed.
DEFAULT_MAX_CONNECTIONS: Final = 4 * SERVICE_MAX_CONCURRENCY
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
    b"Connection: close\r\n\r\n"
)


@dataclass(frozen=True)
class ServiceLimits:
    max_body: int = DEFAULT_MAX_BODY
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    jobs: int = DEFAULT_JOBS
    max_keys: int = external_data.MAX_KEYS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    read_timeout: float = READ_TIMEOUT


class _DeadlineReader(io.RawIOBase):
    """The connection's bytes, each read within what is left of the request's deadline
    (``handler.read_deadline``): a client sending a byte now and then cannot stretch a request
    past ``read_timeout``, as a per-read socket timeout would let it."""

    def __init__(self, sock: socket.socket, handler: _Handler) -> None:
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._handler.read_deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request was not received within its deadline")
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv_into(buffer)
        finally:  # writing the answer is bounded by the read timeout, not what was left here
            self._sock.settimeout(self._handler.server.limits.read_timeout)


class Metrics:
    """Counters for /metrics (thread safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.cache: Counter[str] = Counter()
        self.seconds_sum = 0.0
        self.seconds_count = 0
        self.inflight = 0

    def request(self, code: int) -> None:
        with self._lock:
            self.requests[str(code)] += 1

    def decision(self, decision: Decision) -> None:
        with self._lock:
            self.decisions[("allow" if decision.allowed else "refuse", decision.outcome)] += 1
            if decision.cache is not None:
                self.cache[decision.cache] += 1

    def timed(self, seconds: float) -> None:
        with self._lock:
            self.seconds_sum += seconds
            self.seconds_count += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP opk_sign_build_info The running opk-sign.",
                "# TYPE opk_sign_build_info gauge",
                f'opk_sign_build_info{{version="{__version__}"}} 1',
                "# HELP opk_sign_http_requests_total Verification requests answered, by status.",
                "# TYPE opk_sign_http_requests_total counter",
                *(
                    f'opk_sign_http_requests_total{{code="{code}"}} {count}'
                    for code, count in sorted(self.requests.items())
                ),
                "# HELP opk_sign_decisions_total Images decided, by decision and outcome.",
                "# TYPE opk_sign_decisions_total counter",
                *(
                    f'opk_sign_decisions_total{{decision="{d}",outcome="{o}"}} {count}'
                    for (d, o), count in sorted(self.decisions.items())
                ),
                "# HELP opk_sign_cache_total Verified-digest cache lookups of mapped images.",
                "# TYPE opk_sign_cache_total counter",
                *(
                    f'opk_sign_cache_total{{result="{r}"}} {self.cache.get(r, 0)}'
                    for r in ("hit", "miss")
                ),
                "# HELP opk_sign_request_seconds Time to answer a verification request.",
                "# TYPE opk_sign_request_seconds summary",
                f"opk_sign_request_seconds_sum {self.seconds_sum:.6f}",
                f"opk_sign_request_seconds_count {self.seconds_count}",
                "# HELP opk_sign_inflight_requests Verification requests being decided.",
                "# TYPE opk_sign_inflight_requests gauge",
                f"opk_sign_inflight_requests {self.inflight}",
            ]
        return "\n".join(lines) + "\n"


class VerificationServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        engine: Engine,
        limits: ServiceLimits = ServiceLimits(),
        *,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.engine = engine
        self.limits = limits
        self.metrics = Metrics()
        self.slots = threading.BoundedSemaphore(limits.max_concurrency)
        self.connections = threading.BoundedSemaphore(limits.max_connections)
        self.pool = ThreadPoolExecutor(max_workers=limits.jobs, thread_name_prefix="decide")
        self.tls: ssl.SSLContext | None = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                context.load_cert_chain(str(tls[0]), str(tls[1]))
            except (OSError, ssl.SSLError) as err:
                self.server_close()
                raise UsageError(f"cannot load the TLS certificate and key: {err}") from None
            self.tls = context

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection while fewer than ``max_connections`` are open; else 503
        and closed, from the accepting loop without waiting (a full socket buffer drops it)."""
        if not self.connections.acquire(blocking=False):
            if self.tls is None:
                try:
                    request.setblocking(False)
                    request.send(_BUSY)
                except OSError:
                    pass
            self.metrics.request(503)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS is set up here, in the connection's own thread (a slow handshake holds only
        its own connection, never the accepting loop), within the read timeout."""
        if self.tls is not None:
            request.settimeout(self.limits.read_timeout)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host!s}:{port}"

    def server_close(self) -> None:
        super().server_close()
        if hasattr(self, "pool"):
            self.pool.shutdown(wait=False, cancel_futures=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-answer, or a bad TLS handshake: not worth a traceback."""

    def decide_all(self, keys: list[str]) -> list[Decision]:
        engine = self.engine
        limit = self.limits.request_timeout
        # The audit log says what the answer said: a key refused for the deadline is audited
        # as refused, and its worker's late decision is not audited at all.
        refused: set[int] = set()
        lock = threading.Lock()
        with deadline.within(limit, "deciding the request's images") as bound:

            def one(index: int, key: str) -> Decision:
                with deadline.within(bound):
                    decision = engine.decide(key)
                with lock:
                    if index not in refused:
                        engine.audit(decision)
                return decision

            futures = [self.pool.submit(one, index, key) for index, key in enumerate(keys)]
            decisions = []
            for index, (key, future) in enumerate(zip(keys, futures, strict=True)):
                remaining = bound.remaining() if bound is not None else None
                try:
                    decisions.append(future.result(timeout=(remaining or 0) + 1.0))
                except Exception as err:  # a key the deadline cut off, or a bug: refused
                    future.cancel()
                    refusal = Decision(
                        image=key,
                        allowed=False,
                        outcome="registry-error",
                        exit_code=13,
                        required="a decision within the request's deadline",
                        found=f"not decided within {limit:g} s ({type(err).__name__})",
                    )
                    with lock:
                        refused.add(index)
                        engine.audit(refusal)
                    decisions.append(refusal)
        for decision in decisions:
            self.metrics.decision(decision)
        return decisions


class _Handler(BaseHTTPRequestHandler):
    server: VerificationServer
    protocol_version = "HTTP/1.1"
    server_version = f"opk-sign/{__version__}"
    timeout = READ_TIMEOUT
    #: When the request being read must have arrived (time.monotonic()).
    read_deadline = 0.0

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.limits.read_timeout)
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self))

    def handle_one_request(self) -> None:
        # One deadline for the request line, the headers and the body, from when the handler
        # starts waiting for it (an idle kept-alive connection is closed within it too).
        self.read_deadline = time.monotonic() + self.server.limits.read_timeout
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/healthz", "/readyz", "/livez"):
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/metrics":
            body = self.server.metrics.render().encode()
            self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/", "/verify"):
            self._drain_or_close()
            self._send(404, b"not found\n", "text/plain; charset=utf-8")
            return
        limits = self.server.limits
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_text is None:
            self.close_connection = True
            self._error(411, "a Content-Length is required (no chunked bodies)")
            return
        try:
            # ASCII digits only: int() also takes "+10", "1_0" and other scripts' digits.
            if not (length_text.isascii() and length_text.isdigit()):
                raise ValueError
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            self._error(400, "bad Content-Length")
            return
        if length > limits.max_body:
            # Refused before reading: the connection is closed, the body never read.
            self.close_connection = True
            self._error(413, f"the request body is {length} bytes; at most {limits.max_body}")
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            self._error(408, f"the request was not received within {limits.read_timeout:g} s")
            return
        if len(body) != length:  # the client closed the connection early
            self.close_connection = True
            return
        if not self.server.slots.acquire(blocking=False):
            self._error(
                429,
                f"more than {limits.max_concurrency} requests at once; retry shortly",
                retry_after="1",
            )
            return
        started = time.monotonic()
        metrics = self.server.metrics
        with metrics._lock:
            metrics.inflight += 1
        try:
            try:
                api_version, keys = external_data.parse_request(body, limits.max_keys)
            except UsageError as err:
                self._error(400, err.message)
                return
            decisions = self.server.decide_all(keys)
            items = [external_data.item(k, d) for k, d in zip(keys, decisions, strict=True)]
            document = external_data.response(items, api_version=api_version)
            self._send(200, json.dumps(document).encode(), "application/json")
        finally:
            with metrics._lock:
                metrics.inflight -= 1
            metrics.timed(time.monotonic() - started)
            self.server.slots.release()

    def _drain_or_close(self) -> None:
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= self.server.limits.max_body:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _error(self, status: int, message: str, *, retry_after: str | None = None) -> None:
        document = external_data.response([], system_error=one_line(message, 500))
        headers = {"Retry-After": retry_after} if retry_after else {}
        self._send(status, json.dumps(document).encode(), "application/json", headers)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        if self.command == "POST":
            self.server.metrics.request(status)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


def serve(
    engine: Engine,
    host: str,
    port: int,
    limits: ServiceLimits = ServiceLimits(),
    *,
    tls: tuple[Path, Path] | None = None,
) -> VerificationServer:
    """A server bound to ``host:port`` (0: any free port), not yet serving."""
    try:
        return VerificationServer((host, port), engine, limits, tls=tls)
    except OSError as err:
        raise UsageError(f"cannot listen on {host}:{port}: {err.strerror}") from None


__all__ = ["Metrics", "ServiceLimits", "VerificationServer", "serve"]
