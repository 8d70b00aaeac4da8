"""A loopback HTTP server that answers slowly on purpose: a tarpit for deadline tests.

Each request gets the :class:`Reply` that ``answer`` gives for it, sent in one of four ways:

- ``"all"``: status line, headers and body, one byte every ``interval`` seconds;
- ``"body"``: status line and headers at once, then the body one byte every ``interval``;
- ``"headers"``: the status line, then header bytes one every ``interval``, never ending them;
- ``"none"``: everything at once (an ordinary answer, e.g. the 401 challenge of a registry
  whose token endpoint is the slow part).

With ``greeting``, the server instead trickles those bytes as soon as a client connects, without
reading anything (a TLS server stalling its handshake). Every byte arrives well within any read
timeout, so only an overall deadline stops a client. Plain sockets and threads; ``close()`` ends
every trickle at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["all", "body", "headers", "none"]

#: A body long enough to outlast any deadline a test sets, at any sensible interval.
LONG_BODY = b'{"schemaVersion": 2' + b" " * 4096 + b"}"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = LONG_BODY
    mode: Mode = "all"

    def head(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} Trickle"]
        headers = {"Content-Length": str(len(self.body)), **self.headers}
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


Answer = Callable[[Request], Reply]


class TrickleServer:
    """Serve ``answer`` (a Reply, or a function of the request) on 127.0.0.1."""

    def __init__(
        self,
        answer: Reply | Answer | None = None,
        *,
        interval: float = 0.5,
        greeting: bytes | None = None,
    ) -> None:
        reply = answer if isinstance(answer, Reply) else Reply()
        self._answer: Answer = answer if callable(answer) else (lambda _request: reply)
        self.interval = interval
        self.greeting = greeting
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._requests: list[Request] = []
        #: Bytes sent so far, over all connections.
        self.sent = 0

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def start(self) -> TrickleServer:
        self._spawn(self._accept)
        return self

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            connections, threads = list(self._connections), list(self._threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=2)
        self._listener.close()

    def __enter__(self) -> TrickleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._connections.append(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            if self.greeting is not None:
                self._trickle(conn, self.greeting)
                return
            buffered = b""
            while not self._stop.is_set():
                request, buffered = self._read_request(conn, buffered)
                if request is None:
                    return
                with self._lock:
                    self._requests.append(request)
                if not self._reply(conn, self._answer(request), request.method):
                    return

    def _read_request(self, conn: socket.socket, data: bytes) -> tuple[Request | None, bytes]:
        conn.settimeout(0.05)
        while b"\r\n\r\n" not in data:
            if self._stop.is_set():
                return None, b""
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None, b""
            if not chunk:
                return None, b""
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        first, *lines = head.decode("latin-1").split("\r\n")
        method, path, *_ = first.split(" ")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(rest) < length:  # the request body: read and ignored
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                if self._stop.is_set():
                    return None, b""
                continue
            except OSError:
                return None, b""
            if not chunk:
                return None, b""
            rest += chunk
        return Request(method, path, headers), rest[length:]

    def _reply(self, conn: socket.socket, reply: Reply, method: str) -> bool:
        """Send ``reply``; whether the connection can take another request."""
        body = b"" if method == "HEAD" else reply.body
        if reply.mode == "none":
            return self._send(conn, reply.head() + body)
        if reply.mode == "body":
            return self._send(conn, reply.head()) and self._trickle(conn, body)
        if reply.mode == "headers":
            status = reply.head().split(b"\r\n", 1)[0] + b"\r\n"
            return self._send(conn, status) and self._trickle(conn, b"X-Trickle: " + b"a" * 60000)
        return self._trickle(conn, reply.head() + body)

    def _send(self, conn: socket.socket, data: bytes) -> bool:
        try:
            conn.sendall(data)
        except OSError:
            return False
        with self._lock:
            self.sent += len(data)
        return True

    def _trickle(self, conn: socket.socket, data: bytes) -> bool:
        for index in range(len(data)):
            if not self._send(conn, data[index : index + 1]):
                return False
            if self._stop.wait(self.interval):
                return False
        return True


@contextlib.contextmanager
def trickle_server(
    answer: Reply | Answer | None = None,
    *,
    interval: float = 0.5,
    greeting: bytes | None = None,
) -> Iterator[TrickleServer]:
    with TrickleServer(answer, interval=interval, greeting=greeting) as server:
        yield server
