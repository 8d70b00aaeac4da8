"""A TUF repository served over HTTP on loopback, built with the maintainer commands.

``StaticServer`` is a threaded ``http.server`` serving one directory, which a test can switch
(serve an older copy of the repository to stage a rollback). ``build_repository`` makes the
repository most tests share, through the CLI exactly as a maintainer would.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opk_sign.cli.main import main
from opk_sign.pktoken import GITHUB_ISSUER
from opk_sign.trust.client import TrustClient, TrustConfig
from opk_sign.trust.repository import TrustRepository
from tests.helpers import op_key

POLICY = {"repository": "docker-library/official-images", "ref": "refs/heads/main"}
TEAM_POLICY = {"owner": "octo-org", "signer-workflow-regex": "octo-org/.+@refs/tags/v.+"}
#: The issuer whose JWKS the shared repository archives, seen at this time (UTC seconds).
ARCHIVED_ISSUER = GITHUB_ISSUER
ARCHIVED_AT = 1_700_000_000


class _Server(http.server.ThreadingHTTPServer):
    directory: Path | None = None
    requests: list[str]


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server

    def translate_path(self, path: str) -> str:
        # The served directory is the server's current one, read per request.
        if self.server.directory is None:
            return "/nonexistent"
        self.directory = str(self.server.directory)
        self.server.requests.append(path)
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticServer:
    """A directory over HTTP on 127.0.0.1, from a daemon thread, switchable with ``serve()``."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.requests = []
        self._thread: threading.Thread | None = None
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def serve(self, directory: Path) -> None:
        self._server.directory = directory

    @property
    def requests(self) -> list[str]:
        """Paths asked for so far."""
        return self._server.requests

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> StaticServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class Maintained:
    """A working repository, its keys, and where it was last published."""

    dir: Path
    keys: Path
    published: Path

    @property
    def root(self) -> bytes:
        return (self.published / "metadata" / "1.root.json").read_bytes()

    def repository(self, **kwargs: Any) -> TrustRepository:
        return TrustRepository(self.dir, self.keys, **kwargs)

    def publish(self, outdir: Path) -> Path:
        """Publish the current state to ``outdir`` (a fresh directory), returned."""
        self.repository().publish(outdir)
        return outdir

    def copy(self, to: Path) -> Maintained:
        """An independent copy (working directory, keys, published tree) under ``to``."""
        for part in ("dir", "keys", "published"):
            shutil.copytree(getattr(self, part), to / part)
        return Maintained(to / "dir", to / "keys", to / "published")

    def client(self, url: str, trust_dir: Path, **kwargs: Any) -> TrustClient:
        return TrustClient(TrustConfig.for_url(url, self.root), trust_dir=trust_dir, **kwargs)


def cli(*argv: object) -> int:
    """``opk-sign ARGV…`` in this process; paths and numbers are passed as their text."""
    return main([str(a) for a in argv])


def build_repository(base: Path) -> Maintained:
    """The shared repository, made with the maintainer commands: two policies, two rules (one
    with a mirror rewrite), a JWKS archive of GitHub's issuer and TSA certificates."""
    work, keys, published = base / "repo", base / "keys", base / "published"
    files = base / "inputs"
    files.mkdir(parents=True)
    (files / "official.yaml").write_text(
        "repository: docker-library/official-images\nref: refs/heads/main\n"
    )
    (files / "team.json").write_text(json.dumps(TEAM_POLICY))
    (files / "jwks.json").write_text(json.dumps({"keys": [op_key().public_jwk()]}))
    (files / "tsa.pem").write_bytes(tsa_pem())
    steps: list[list[str | Path]] = [
        ["init", work, "--keys-dir", keys],
        ["set-policy", work, "official-images", files / "official.yaml", "--keys-dir", keys],
        ["set-policy", work, "team", files / "team.json", "--keys-dir", keys],
        [
            "map",
            work,
            "docker.io/library/*",
            "official-images",
            "--rewrite",
            "mirror.gcr.io/library/*=docker.io/library/*",
            "--keys-dir",
            keys,
        ],
        ["map", work, "ghcr.io/octo-org/**", "team", "--keys-dir", keys],
        [
            "add-jwks",
            work,
            "--issuer",
            ARCHIVED_ISSUER,
            "--jwks-file",
            files / "jwks.json",
            "--at",
            str(ARCHIVED_AT),
            "--keys-dir",
            keys,
        ],
        ["set-tsa-certs", work, files / "tsa.pem", "--keys-dir", keys],
        ["publish", work, published],
    ]
    for step in steps:
        code = cli("trust", "repo", *step)
        assert code == 0, f"trust repo {step[0]} exited {code}"
    return Maintained(work, keys, published)


def team_repository(
    base: Path,
    *,
    issuer: str,
    repository: str,
    pattern: str,
    jwks: dict[str, Any] | None = None,
) -> Maintained:
    """A repository made with the maintainer commands, for the verifiers that read a node's
    trust: one policy, ``team`` (``issuer`` and ``repository``), mapped to ``pattern``, and the
    issuer's ``jwks`` archived when given; published to ``base/published``."""
    work, keys, published = base / "repo", base / "keys", base / "published"
    inputs = base / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    (inputs / "team.json").write_text(json.dumps({"issuer": issuer, "repository": repository}))
    steps: list[tuple[object, ...]] = [
        ("init", work),
        ("set-policy", work, "team", inputs / "team.json"),
        ("map", work, pattern, "team"),
    ]
    if jwks is not None:
        (inputs / "jwks.json").write_text(json.dumps(jwks))
        steps.append(("add-jwks", work, "--issuer", issuer, "--jwks-file", inputs / "jwks.json"))
    for step in steps:
        assert cli("trust", "repo", *step, "--keys-dir", keys) == 0, step
    assert cli("trust", "repo", "publish", work, published) == 0
    return Maintained(work, keys, published)


def tsa_pem() -> bytes:
    """A self-signed certificate standing in for a TSA chain (the client only carries bytes)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opk-sign test TSA")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)
