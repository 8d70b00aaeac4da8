"""A real Rekor v2 transparency log and a real witness on loopback (docs/transparency.md).

``rekor_log(workdir)`` runs sigstore's rekor-tiles POSIX server (``rekor-server-posix``, built by
scripts/setup/50-rekor.sh) with every port explicit (HTTP, gRPC, metrics: the metrics default
2112 would collide between workers), a fresh storage directory, a fresh Ed25519 checkpoint key,
``--hostname`` as the checkpoint origin and a 1 s checkpoint interval; the storage directory's
C2SP tlog-tiles files are served by a static file server (what a CDN does in production) for the
monitor. ``witness(workdir, log)`` runs transparency-dev's omniwitness (cosignature/v1) that
follows the log; ``rekor_log(..., witnesses=[...])`` makes the log ask it to cosign every
checkpoint (``--witness-policy-path``).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from opk_sign.tlog.checkpoint import TlogTrust
from opk_sign.tlog.note import SIG_ECDSA, SIG_ED25519, VerifierKey
from tests.services.registries import _process, free_port
from tests.services.tools import tool_path


@dataclass(frozen=True)
class Witness:
    url: str
    key: VerifierKey


@dataclass(frozen=True)
class RekorLog:
    url: str  # the write API's base: POST {url}/api/v2/log/entries
    tiles_url: str  # the C2SP tlog-tiles files (checkpoint, tile/...)
    origin: str
    key: VerifierKey  # the checkpoint key as a note verifier key (0x01 Ed25519)
    storage: Path
    witnesses: tuple[Witness, ...] = ()

    def trust(self, quorum: int | None = None) -> TlogTrust:
        witnesses = tuple(w.key for w in self.witnesses)
        return TlogTrust((self.key,), witnesses, len(witnesses) if quorum is None else quorum)

    def keys_file(self, path: Path, quorum: int | None = None) -> Path:
        path.write_text(self.trust(quorum).encode())
        return path


def new_log_key(origin: str, path: Path, *, ecdsa: bool = False) -> VerifierKey:
    """A fresh checkpoint key, Ed25519 (or ECDSA P-256), written as PKCS#8 PEM to ``path``."""
    private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey = (
        ec.generate_private_key(ec.SECP256R1()) if ecdsa else ed25519.Ed25519PrivateKey.generate()
    )
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    if isinstance(private, ec.EllipticCurvePrivateKey):
        spki = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return VerifierKey(origin, SIG_ECDSA, spki)
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return VerifierKey(origin, SIG_ED25519, public)


@contextlib.contextmanager
def static_files(root: Path) -> Iterator[str]:
    """A threaded static file server for ``root`` on a free loopback port; yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def rekor_log(
    workdir: Path,
    *,
    origin: str = "rekor.test",
    witnesses: Sequence[Witness] = (),
    key: VerifierKey | None = None,
) -> Iterator[RekorLog]:
    """The log; ``key``: its checkpoint key made before with :func:`new_log_key` (written to
    ``workdir / "log-key.pem"``), for a witness that must know it before the log starts."""
    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "storage"
    storage.mkdir()
    if key is None:
        key = new_log_key(origin, workdir / "log-key.pem")
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    argv = [
        str(tool_path("rekor-server-posix")),
        "serve",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        f"--http-metrics-port={metrics_port}",
        f"--storage-dir={storage}",
        f"--signer-filepath={workdir / 'log-key.pem'}",
        f"--hostname={origin}",
        "--checkpoint-interval=1s",
        "--batch-max-age=50ms",
    ]
    if witnesses:
        policy = workdir / "witness-policy"
        lines = [f"witness w{i} {w.key.encode()} {w.url}" for i, w in enumerate(witnesses)]
        members = " ".join(f"w{i}" for i in range(len(witnesses)))
        lines += [f"group all-witnesses all {members}", "quorum all-witnesses"]
        policy.write_text("\n".join(lines) + "\n")
        argv.append(f"--witness-policy-path={policy}")
    url = f"http://127.0.0.1:{http_port}"
    with _process(argv, workdir, "rekor", f"{url}/healthz"), static_files(storage) as tiles:
        yield RekorLog(url, tiles, origin, key, storage, tuple(witnesses))


@contextlib.contextmanager
def witness(
    workdir: Path, log_origin: str, log_key: VerifierKey, log_url: str
) -> Iterator[Witness]:
    """omniwitness following one log (added with --additional_logs), with a fresh key."""
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"witness.test/{workdir.name}"
    subprocess.run(
        [
            str(tool_path("witness-keys")),
            f"--origin={name}",
            f"--out_priv={workdir / 'witness.sec'}",
            f"--out_pub={workdir / 'witness.pub'}",
        ],
        check=True,
        capture_output=True,
    )
    key = VerifierKey.parse((workdir / "witness.pub").read_text())
    logs = workdir / "logs.yaml"
    logs.write_text(
        "Logs:\n"
        f"  - Origin: {log_origin}\n"
        f"    URL: {log_url}\n"
        f"    PublicKey: {log_key.encode()}\n"
        "    Feeder: none\n"
    )
    port, metrics = free_port(), free_port()
    argv = [
        str(tool_path("omniwitness")),
        f"--listen=127.0.0.1:{port}",
        f"--metrics_listen=127.0.0.1:{metrics}",
        f"--private_key_path={workdir / 'witness.sec'}",
        f"--additional_logs={logs}",
        "--logtostderr",
    ]
    url = f"http://127.0.0.1:{port}"
    with _process(argv, workdir, "omniwitness", f"{url}/"):
        yield Witness(url, key)
