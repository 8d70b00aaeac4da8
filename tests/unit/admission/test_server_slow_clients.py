"""Red-team F7: ``opk-sign serve`` bounds what slow clients hold. Connections (one thread each)
are capped, past the cap a connection is answered 503 and closed; a request must arrive, line,
headers and body, within one deadline in all, however steadily its bytes trickle in (408)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from opk_sign.admission.engine import Engine
from opk_sign.admission.server import ServiceLimits, VerificationServer, serve
from opk_sign.admission.settings import Settings

SLOW_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"
CAP = 4
READ_TIMEOUT = 1.0


@pytest.fixture
def server() -> Iterator[VerificationServer]:
    limits = ServiceLimits(max_connections=CAP, read_timeout=READ_TIMEOUT, max_concurrency=2)
    running = serve(Engine(Settings(), notice=lambda _: None), "127.0.0.1", 0, limits)
    thread = threading.Thread(target=running.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield running
    running.shutdown()
    running.server_close()
    thread.join()


def connection_threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def answer(sock: socket.socket) -> bytes:
    """What the server said before closing (b"" when it closed saying nothing); a server that
    neither answers nor closes within the socket's timeout fails the test (TimeoutError)."""
    try:
        return sock.recv(200)
    except TimeoutError:
        raise
    except OSError:  # reset: closed without an answer
        return b""


def test_slow_clients_hold_a_bounded_number_of_threads_for_a_bounded_time(
    server: VerificationServer,
) -> None:
    host, port = server.server_address[:2]
    clients = []
    for _ in range(3 * CAP):
        sock = socket.create_connection((str(host), port))
        sock.sendall(SLOW_HEAD)
        clients.append(sock)
        time.sleep(0.02)
    started, most = time.monotonic(), 0
    open_ = list(clients)
    answers: dict[socket.socket, bytes] = {}
    # A byte every 0.1 s: each read comes well within any per-read timeout.
    while open_ and time.monotonic() - started < 4 * READ_TIMEOUT:
        most = max(most, connection_threads())
        for sock in list(open_):
            sock.setblocking(False)
            try:
                data: bytes | None = sock.recv(200)  # an answer (or the close) first
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            sock.setblocking(True)
            if data is None:
                try:
                    sock.sendall(b" ")
                except OSError:  # closed (reset: any answer in flight is lost)
                    data = b""
            if data is not None:
                answers[sock] = data
                open_.remove(sock)
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    assert not open_, f"{len(open_)} slow clients still held after {elapsed:.1f} s"
    assert most <= CAP, f"{most} connection threads at once, cap {CAP}"
    timed_out = [a for a in answers.values() if a.startswith(b"HTTP/1.1 408")]
    busy = [a for a in answers.values() if a.startswith(b"HTTP/1.1 503")]
    closed = [a for a in answers.values() if a == b""]  # a reset can swallow the answer
    assert len(timed_out) + len(busy) + len(closed) == 3 * CAP, answers.values()
    assert 1 <= len(timed_out) <= CAP and len(busy) <= 2 * CAP
    assert elapsed < 3 * READ_TIMEOUT
    for sock in clients:
        sock.close()
    # The service answers again at once.
    deadline = time.monotonic() + 2
    while connection_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    with socket.create_connection((str(host), port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer(sock).startswith(b"HTTP/1.1 200")


def test_a_slow_request_line_and_headers_are_cut_off_too(server: VerificationServer) -> None:
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST / HTTP/1.1\r\n")
        closed = False
        for _ in range(40):
            try:
                sock.sendall(b"X-A: b\r\n")
            except OSError:
                closed = True
                break
            time.sleep(0.1)
        sock.settimeout(1.0)
        assert closed or answer(sock) == b""  # closed, not waiting for more headers
        assert time.monotonic() - started < 3 * READ_TIMEOUT
