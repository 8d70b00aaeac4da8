"""The audit log says what the answer said: a key the request's deadline cut off is audited as
refused, and its worker's late decision is not audited (red team: the log showed an "allow"
for a key the answer had refused)."""

from __future__ import annotations

import threading
import time

import requests

from opk_sign.admission.decision import Decision
from opk_sign.admission.server import ServiceLimits, VerificationServer

KEY = "ghcr.io/octo-org/app@sha256:" + "ab" * 32


class _SlowEngine:
    """Decides "allow", but only after the request's deadline and its grace have passed (a step
    that does not honour the deadline: a slow resolver, a slow disk)."""

    def __init__(self) -> None:
        self.audited: list[tuple[str, bool]] = []
        self.done = threading.Event()

    def decide(self, name: str, digest: str | None = None) -> Decision:
        time.sleep(2.5)
        self.done.set()
        return Decision(
            image=name, allowed=True, outcome="verified", exit_code=0, required="x", found="y"
        )

    def audit(self, decision: Decision) -> None:
        self.audited.append((decision.image, decision.allowed))


def test_a_key_the_deadline_cut_off_is_audited_as_refused() -> None:
    engine = _SlowEngine()
    limits = ServiceLimits(request_timeout=0.5)
    server = VerificationServer(("127.0.0.1", 0), engine, limits)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        body = {"request": {"keys": [KEY]}}
        answer = requests.post(server.url, json=body, timeout=30).json()
        (item,) = answer["response"]["items"]
        assert "error" in item
        assert engine.audited == [(KEY, False)]
        assert engine.done.wait(10)
        time.sleep(0.2)  # the worker's decision has come back by now
        assert engine.audited == [(KEY, False)]
    finally:
        server.shutdown()
        server.server_close()


def test_a_content_length_is_ascii_digits_only() -> None:
    """int() takes "+10", "1_0" and other scripts' digits: a proxy in front may read them
    otherwise (red team)."""
    import socket

    server = VerificationServer(("127.0.0.1", 0), _SlowEngine(), ServiceLimits())  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    try:
        body = b'{"request":{"keys":[]}}'  # 23 bytes: a valid request when read
        for length in ("+23", "2_3", "\u0662\u0663", "23 "):
            with socket.create_connection((str(host), int(port)), timeout=10) as conn:
                conn.sendall(
                    f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {length}\r\n\r\n".encode()
                    + body
                )
                answer = conn.recv(4096).decode("latin-1")
            assert answer.startswith("HTTP/1.1 400"), (length, answer[:80])
    finally:
        server.shutdown()
        server.server_close()
