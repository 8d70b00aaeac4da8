"""A registry on loopback whose every answer is scripted: the hostile registry of issue 11, class 4.

Routes are keyed by what is asked (``base`` for ``/v2/``, ``manifest:<tag or digest>``,
``referrers:<digest>``, ``blob:<digest>``, ``token``); each answer is a status, headers and a
body, optionally with a ``Content-Length`` that lies (the connection is then closed early, a
truncated body). Anything not scripted is an OCI 404.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opk_sign.oci import mediatypes

#: The empty JSON config blob of artifact and sample manifests.
EMPTY = b"{}"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def image_manifest(**annotations: str) -> bytes:
    """A small image manifest (no layers) for a scripted registry to serve."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": sha(EMPTY), "size": 2},
        "layers": [],
    }
    if annotations:
        doc["annotations"] = annotations
    return canonical(doc)


NOT_FOUND = json.dumps({"errors": [{"code": "NAME_UNKNOWN", "message": "not scripted"}]}).encode()


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    #: A Content-Length other than the body's (longer: the body is cut short by a close).
    declared_length: int | None = None


class HostileRegistry:
    """``with HostileRegistry() as registry:`` then ``registry.script({...})`` per case."""

    def __init__(self) -> None:
        self._answers: dict[str, Answer] = {}
        self._lock = threading.Lock()
        self.requests = 0
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _answer(self, *, head: bool) -> None:
                answer = registry.answer_for(self.path)
                body = b"" if head else answer.body
                self.send_response(answer.status)
                if answer.content_type is not None:
                    self.send_header("Content-Type", answer.content_type)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                length = answer.declared_length
                self.send_header(
                    "Content-Length", str(len(answer.body) if length is None else length)
                )
                if length is not None:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                try:
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def script(self, answers: Mapping[str, Answer]) -> None:
        with self._lock:
            self._answers = dict(answers)

    def answer_for(self, path: str) -> Answer:
        with self._lock:
            self.requests += 1
            key = route(path)
            return self._answers.get(key, Answer(404, NOT_FOUND))

    def __enter__(self) -> HostileRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def route(path: str) -> str:
    """The key of a request path: what the client asked for, whatever the repository."""
    path = path.split("?", 1)[0]
    if path in ("/v2/", "/v2"):
        return "base"
    if path.startswith("/token"):
        return "token"
    for kind, marker in (("manifest", "/manifests/"), ("referrers", "/referrers/")):
        if marker in path:
            return f"{kind}:{path.rsplit(marker, 1)[1]}"
    if "/blobs/" in path:
        return f"blob:{path.rsplit('/blobs/', 1)[1]}"
    return path


@contextmanager
def hostile_registry() -> Iterator[HostileRegistry]:
    with HostileRegistry() as registry:
        yield registry
