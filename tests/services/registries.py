"""Real OCI registries on loopback for the tests, each in its own temporary directory.

- ``distribution``: Debian's ``docker-registry`` (CNCF distribution 2.8): no referrers API, so
  referrers go through the tag-schema fallback. Optionally with htpasswd basic auth, or with
  bearer-token auth against ``token_server``.
- ``olareg``: a registry with the OCI 1.1 referrers API, built by scripts/setup/10-registries.sh.
- ``token_server``: distribution's reference token server (contrib/token-server), htpasswd users,
  issuing ES256 JWTs that distribution verifies against a certificate we generate.

Each is a context manager that starts the process on a free port, waits until it answers, and
stops it on exit. Users may only touch repositories under ``<username>/`` on the token server.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.services.tools import tool_path

STARTUP_TIMEOUT = 20.0
TOKEN_SERVICE = "opk-test-registry"
TOKEN_ISSUER = "opk-test-token-issuer"


@dataclass(frozen=True)
class Registry:
    """A running registry: where it is and what it can do."""

    kind: str
    host: str
    referrers_api: bool
    workdir: Path
    users: Mapping[str, str] = field(default_factory=dict)

    def ref(self, repository: str, tag: str | None = None) -> str:
        return f"{self.host}/{repository}" + (f":{tag}" if tag else "")


@dataclass(frozen=True)
class TokenServer:
    host: str
    realm: str
    certificate: Path
    users: Mapping[str, str]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    """A bcrypt htpasswd file (the only hash distribution accepts), made by Apache's htpasswd."""
    lines = []
    for user, password in users.items():
        out = subprocess.run(
            [str(tool_path("htpasswd")), "-nbB", "-C", "4", user, password],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        lines.append(out.strip())
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def _process(
    argv: list[str], workdir: Path, name: str, ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    log = (workdir / f"{name}.log").open("ab")
    process = subprocess.Popen(argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(process, ready_url, workdir / f"{name}.log")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with requests.Session() as session:
        session.trust_env = False
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: exited with {process.returncode}:\n{log.read_text()}")
            try:
                session.get(url, timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready in {STARTUP_TIMEOUT} s:\n{log.read_text()}")


@contextlib.contextmanager
def olareg(workdir: Path) -> Iterator[Registry]:
    """olareg with the referrers API on, storing in ``workdir``."""
    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        str(tool_path("olareg")),
        "serve",
        "--addr",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(store),
        "--api-referrer=true",
        "--api-delete=true",
        "--api-blob-delete=true",
        "--gc-frequency=-1s",
    ]
    host = f"127.0.0.1:{port}"
    with _process(argv, workdir, "olareg", f"http://{host}/v2/"):
        yield Registry("olareg", host, True, workdir)


@contextlib.contextmanager
def distribution(
    workdir: Path,
    *,
    htpasswd_users: Mapping[str, str] | None = None,
    token: TokenServer | None = None,
) -> Iterator[Registry]:
    """Debian's docker-registry; anonymous, htpasswd basic auth, or token auth."""
    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    auth = ""
    users: Mapping[str, str] = {}
    if htpasswd_users:
        users = htpasswd_users
        htpasswd = write_htpasswd(workdir / "htpasswd", htpasswd_users)
        auth = f"auth:\n  htpasswd:\n    realm: opk-test\n    path: {htpasswd}\n"
    elif token is not None:
        users = token.users
        auth = (
            "auth:\n  token:\n"
            f"    realm: {token.realm}\n    service: {TOKEN_SERVICE}\n"
            f"    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {token.certificate}\n"
        )
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {store}\n"
        "  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: {host}\n  secret: opk-sign-tests\n" + auth
    )
    argv = [str(tool_path("docker-registry")), "serve", str(config)]
    with _process(argv, workdir, "distribution", f"http://{host}/v2/"):
        yield Registry("distribution", host, False, workdir, users)


@contextlib.contextmanager
def token_server(workdir: Path, users: Mapping[str, str]) -> Iterator[TokenServer]:
    """distribution's token server for ``users``; its signing certificate for the registry."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = workdir / "token-key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opk-sign test token issuer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file = workdir / "token-cert.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    htpasswd = write_htpasswd(workdir / "token-htpasswd", users)
    port = free_port()
    host = f"127.0.0.1:{port}"
    argv = [
        str(tool_path("token-server")),
        "-addr",
        host,
        "-realm",
        "opk-test-token",
        "-passwd",
        str(htpasswd),
        "-key",
        str(key_file),
        "-issuer",
        TOKEN_ISSUER,
    ]
    with _process(argv, workdir, "token-server", f"http://{host}/token/"):
        yield TokenServer(host, f"http://{host}/token/", cert_file, users)
