"""A real RFC 3161 timestamp authority on loopback: sigstore's timestamp-authority with its
in-memory signer (an ephemeral root, intermediate and time-stamping leaf, fresh for every
instance, so two instances distrust each other), built as tests/tsa (``opk-tsa``) by
scripts/setup/40-timestamp-authority.sh.

``timestamp_authority(workdir)`` starts one on a free port and yields its URL and certificate
chain; the session-scoped ``tsa`` fixture (registered in tests/conftest.py) shares one per test
worker. ``python -m tests.services.tsa`` regenerates the committed vectors in
tests/assets/timestamps (see the README there).
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from opk_sign.trust.timestamp import TSATrust
from tests.services.registries import _process, free_port
from tests.services.tools import tool_path


@dataclass(frozen=True)
class TimestampAuthority:
    """A running TSA: where to POST timestamp queries, and the chain that signs its answers."""

    host: str
    chain_pem: bytes

    @property
    def url(self) -> str:
        return f"http://{self.host}/api/v1/timestamp"

    @property
    def trust(self) -> TSATrust:
        return TSATrust.from_pem(self.chain_pem)


@contextlib.contextmanager
def timestamp_authority(workdir: Path) -> Iterator[TimestampAuthority]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    argv = [str(tool_path("opk-tsa")), "--host", "127.0.0.1", "--port", str(port)]
    with _process(argv, workdir, "opk-tsa", f"http://{host}/ping"):
        with requests.Session() as session:
            session.trust_env = False
            answer = session.get(f"http://{host}/api/v1/timestamp/certchain", timeout=5)
            answer.raise_for_status()
        yield TimestampAuthority(host, answer.content)


@pytest.fixture(scope="session")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimestampAuthority]:
    with timestamp_authority(tmp_path_factory.mktemp("tsa")) as running:
        yield running


# --- committed vectors --------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32
REPOSITORY = "ghcr.io/octo-org/app"
HOUR = 3600


def write_vectors(out: Path) -> None:
    """Bundles timestamped by a real TSA, PK tokens minted with the fixed OP key of
    tests/assets/keys (so the JWKS needs no file), the TSA's chain and a second TSA's chain."""
    from dataclasses import replace

    from opk_sign.sign.signer import Signer
    from opk_sign.trust.tsa import request_timestamp
    from tests.helpers import mint

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, timestamp_authority(Path(scratch) / "a") as a:
        with timestamp_authority(Path(scratch) / "b") as b:
            (out / "other-tsa-chain.pem").write_bytes(b.chain_pem)
        (out / "tsa-chain.pem").write_bytes(a.chain_pem)
        now = int(time.time())
        cases = {
            # Timestamped a minute after the token was issued: inside the 24 h window.
            "signature-inside": (now - 60, "signature"),
            "attestation-inside": (now - 60, "attestation"),
            # The token claims to be issued an hour after the timestamp.
            "signature-before-iat": (now + HOUR, "signature"),
            # Timestamped 25 hours after the token was issued.
            "signature-after-window": (now - 25 * HOUR, "signature"),
        }
        for name, (iat, kind) in cases.items():
            minted = mint(now=iat)
            signer = Signer(minted.user_key, minted.pkt, minted.pkt.claims())
            bundle = (
                signer.signature(REPOSITORY, DIGEST)
                if kind == "signature"
                else signer.attestation(
                    REPOSITORY, DIGEST, "https://example.com/test/v1", {"test": name}
                )
            )
            timestamp = request_timestamp(a.url, bundle.signature_bytes())
            bundle = replace(bundle, timestamps=(timestamp,))
            (out / f"{name}.json").write_bytes(
                json.dumps(bundle.to_dict(), indent=1).encode() + b"\n"
            )


if __name__ == "__main__":
    write_vectors(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tests/assets/timestamps"))
