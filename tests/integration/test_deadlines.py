"""Overall deadlines against servers that trickle their answers (issue "A verifier that cannot be
fooled", class 6).

Every byte of the trickle server arrives well within any read timeout, so only an overall
deadline ends these exchanges: a registry (manifest, referrers, blob, error body, a 503 loop, the
bearer token endpoint), OIDC discovery and the JWKS, the TUF repository, the timestamp authority,
GitHub's token service and a stalled TLS handshake. Each ends within its deadline plus a small
margin with the documented error: registry and network DeadlineExceeded (exit 13), trust material
TrustError (exit 14), and a message naming what was slow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from opk_sign import deadline
from opk_sign.cli.main import main
from opk_sign.deadline import DeadlineExceeded
from opk_sign.errors import (
    EXIT_REGISTRY,
    EXIT_TRUST,
    NotFoundError,
    OpkSignError,
    RegistryUnavailableError,
    TrustError,
)
from opk_sign.http import HTTPConfig, new_session
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.transport import RegistryDeadlineExceeded
from opk_sign.oidc import JWKSCache, fetch_jwks, request_github_id_token
from opk_sign.trust.client import TrustClient, TrustConfig
from opk_sign.trust.tsa import request_timestamp
from tests.services.trickle import Mode, Reply, Request, TrickleServer, trickle_server

pytestmark = pytest.mark.integration

LIMIT = 2.0
#: Scheduling slack on a busy machine; a trickle would go on for minutes.
MARGIN = 1.5
INTERVAL = 0.25
HTTP = HTTPConfig(exchange_timeout=LIMIT)
DIGEST = "sha256:" + "a" * 64

E = TypeVar("E", bound=OpkSignError)


@contextmanager
def timed(limit: float = LIMIT) -> Iterator[None]:
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < limit + MARGIN, f"took {elapsed:.1f} s, the deadline was {limit} s"


def fails(kind: type[E], action: Callable[[], object], limit: float = LIMIT) -> E:
    """``action`` raises ``kind`` within ``limit`` (plus the margin); the error is returned."""
    with timed(limit), pytest.raises(kind) as caught:
        action()
    return caught.value


def registry_client(http: HTTPConfig = HTTP) -> RegistryClient:
    return RegistryClient(Keychain.anonymous(), http)


# --- registry ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["all", "body", "headers"])
def test_a_trickled_manifest_is_cut_off_at_the_deadline(mode: Mode) -> None:
    with trickle_server(Reply(mode=mode), interval=INTERVAL) as server, registry_client() as client:
        err = fails(
            RegistryDeadlineExceeded, lambda: client.pull_manifest(f"{server.host}/o/app:v1")
        )
    assert isinstance(err, RegistryUnavailableError)
    assert err.exit_code == EXIT_REGISTRY
    assert str(err).startswith(
        f"registry {server.host}: GET /v2/o/app/manifests/v1 did not finish within 2 s (the "
        "server sent "
    )


def test_trickled_referrers_and_blobs_are_cut_off() -> None:
    with trickle_server(Reply(mode="body"), interval=INTERVAL) as server, registry_client() as c:
        ref = f"{server.host}/o/app"
        err = fails(RegistryDeadlineExceeded, lambda: c.list_referrers(ref, DIGEST))
        assert f"GET /v2/o/app/referrers/{DIGEST} did not finish within 2 s" in str(err)
        err = fails(RegistryDeadlineExceeded, lambda: c.get_blob(ref, DIGEST))
        assert f"GET /v2/o/app/blobs/{DIGEST} did not finish within 2 s" in str(err)


def test_a_trickled_error_body_does_not_hold_the_error() -> None:
    reply = Reply(status=404, mode="body")
    with trickle_server(reply, interval=INTERVAL) as server, registry_client() as client:
        err = fails(NotFoundError, lambda: client.pull_manifest(f"{server.host}/o/app:v1"))
    assert "its error body did not arrive in time" in str(err)
    assert err.exit_code == EXIT_REGISTRY


def test_retries_stop_at_the_deadline() -> None:
    reply = Reply(status=503, body=b"{}", mode="none")
    http = HTTPConfig(exchange_timeout=LIMIT, retries=100, backoff_factor=0.2, backoff_max=0.5)
    with trickle_server(reply) as server, registry_client(http) as client:
        err = fails(RegistryDeadlineExceeded, lambda: client.pull_manifest(f"{server.host}/o/a:v1"))
        tries = len(server.requests)
    assert "it answered HTTP 503" in str(err)
    assert 2 <= tries < 100


def test_a_retry_after_past_the_deadline_is_not_waited_for() -> None:
    reply = Reply(status=429, headers={"Retry-After": "30"}, body=b"{}", mode="none")
    with trickle_server(reply) as server, registry_client() as client:
        err = fails(
            RegistryDeadlineExceeded, lambda: client.pull_manifest(f"{server.host}/o/a:v1"), 0.5
        )
    assert "it answered HTTP 429; waiting 30.0 s to retry would pass it" in str(err)


def test_an_images_budget_bounds_exchanges_with_more_time_of_their_own() -> None:
    image = "verifying 127.0.0.1/o/app:v1"
    with trickle_server(Reply(mode="body"), interval=INTERVAL) as server:
        ref = f"{server.host}/o/app:v1"
        with registry_client(HTTPConfig()) as client, deadline.within(1.0, image):
            err = fails(RegistryDeadlineExceeded, lambda: client.pull_manifest(ref), 1.0)
    assert err.outer
    assert str(err).startswith(
        f"{image} did not finish within 1 s (registry {server.host}: GET /v2/o/app/manifests/v1"
        " was under way; the server sent "
    )


def challenge_then_trickle(server: Callable[[], TrickleServer]) -> Callable[[Request], Reply]:
    """A registry answering 401 with a bearer challenge whose token endpoint trickles."""

    def answer(request: Request) -> Reply:
        if request.path.startswith("/token"):
            return Reply(body=json.dumps({"token": "t" * 40}).encode(), mode="body")
        realm = f"{server().url}/token"
        challenge = f'Bearer realm="{realm}",service="trickle",scope="repository:o/app:pull"'
        return Reply(401, {"WWW-Authenticate": challenge}, b"{}", mode="none")

    return answer


def test_a_trickling_token_endpoint_is_cut_off() -> None:
    servers: list[TrickleServer] = []
    answer = challenge_then_trickle(lambda: servers[0])
    with trickle_server(answer, interval=INTERVAL) as server, registry_client() as client:
        servers.append(server)
        err = fails(
            RegistryDeadlineExceeded, lambda: client.pull_manifest(f"{server.host}/o/app:v1")
        )
    assert err.exit_code == EXIT_REGISTRY
    assert str(err).startswith(
        f"the token request to {server.url}/token for registry {server.host} did not finish "
        "within 2 s"
    )


# --- trust material: OIDC discovery and JWKS, TUF -------------------------------------------------


def test_trickling_oidc_discovery_is_a_trust_error() -> None:
    with trickle_server(Reply(mode="body"), interval=INTERVAL) as server:
        issuer = server.url
        err = fails(TrustError, lambda: fetch_jwks(issuer, new_session(HTTP)))
    assert err.exit_code == EXIT_TRUST
    assert str(err).startswith(
        f"fetching the OpenID configuration of {issuer} from "
        f"{issuer}/.well-known/openid-configuration did not finish within 2 s"
    )


def discovery_then_trickle(server: Callable[[], TrickleServer]) -> Callable[[Request], Reply]:
    """A discovery document at once, then a JWKS that trickles."""

    def answer(request: Request) -> Reply:
        if request.path == "/jwks":
            return Reply(body=json.dumps({"keys": []}).encode(), mode="body")
        document = {"issuer": server().url, "jwks_uri": f"{server().url}/jwks"}
        return Reply(body=json.dumps(document).encode(), mode="none")

    return answer


def test_a_trickling_jwks_is_a_trust_error_remembered_for_the_run() -> None:
    servers: list[TrickleServer] = []
    with trickle_server(discovery_then_trickle(lambda: servers[0]), interval=INTERVAL) as server:
        servers.append(server)
        cache = JWKSCache(new_session(HTTP))
        err = fails(TrustError, lambda: cache.get(server.url))
        again = fails(TrustError, lambda: cache.get(server.url), 0.0)  # remembered, not re-asked
    assert err.exit_code == EXIT_TRUST
    assert str(err).startswith(
        f"fetching the JWKS of {server.url} from {server.url}/jwks did not finish within 2 s"
    )
    assert again.message == err.message
    assert cache.fetches == 1


def test_a_jwks_fetch_cut_off_by_the_callers_budget_is_not_remembered() -> None:
    servers: list[TrickleServer] = []
    with trickle_server(discovery_then_trickle(lambda: servers[0]), interval=INTERVAL) as server:
        servers.append(server)
        cache = JWKSCache(new_session(HTTPConfig()))
        with deadline.within(1.0, "verifying image one"):
            err = fails(TrustError, lambda: cache.get(server.url), 1.0)
        assert str(err).startswith("verifying image one did not finish within 1 s")
        with deadline.within(1.0, "verifying image two"):
            err = fails(TrustError, lambda: cache.get(server.url), 1.0)
        assert str(err).startswith("verifying image two did not finish within 1 s")
    assert cache.fetches == 2


def tuf_root() -> bytes:
    from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]  # re-exported
    from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]

    signer = CryptoSigner.generate_ecdsa()
    root = Root(expires=datetime.now(UTC) + timedelta(days=1))
    for role in ("root", "timestamp", "snapshot", "targets"):
        root.add_key(signer.public_key, role)
    metadata = Metadata(root)
    metadata.sign(signer)
    return metadata.to_bytes()


def test_a_trickling_tuf_repository_is_a_trust_error(tmp_path: Path) -> None:
    with trickle_server(Reply(mode="body"), interval=INTERVAL) as server:
        config = TrustConfig.for_url(server.url, tuf_root())
        client = TrustClient(config, trust_dir=tmp_path / "trust", session=new_session(HTTP))
        err = fails(TrustError, client.refresh)
    assert err.exit_code == EXIT_TRUST
    assert (
        f"the trust repository download of {server.url}/metadata/2.root.json did not finish "
        "within 2 s" in str(err)
    )


# --- signing services: the TSA, GitHub's token service ---------------------------------------------


def test_a_trickling_timestamp_authority_is_cut_off() -> None:
    with trickle_server(Reply(mode="body"), interval=INTERVAL) as server:
        url = f"{server.url}/api/v1/timestamp"
        err = fails(DeadlineExceeded, lambda: request_timestamp(url, b"sig", new_session(HTTP)))
    assert err.exit_code == EXIT_REGISTRY
    assert str(err).startswith(f"the timestamp request to {url} did not finish within 2 s")
    assert err.hint and "--no-timestamp" in err.hint


def test_a_trickling_github_token_service_is_cut_off_without_leaking_the_token() -> None:
    secret = "request-token-secret-value"
    with trickle_server(Reply(mode="headers"), interval=INTERVAL) as server:
        env = {
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{server.url}/token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": secret,
        }
        err = fails(
            DeadlineExceeded,
            lambda: request_github_id_token("aud", env=env, session=new_session(HTTP)),
        )
    assert err.exit_code == EXIT_REGISTRY
    assert "GitHub Actions token service at" in str(err) and "within 2 s" in str(err)
    assert secret not in err.diagnostics()


def test_data_moving_at_the_minimum_rate_earns_time_but_not_past_an_enclosing_deadline() -> None:
    # 4 bytes/s against a floor of 1 byte/s: the exchange's own 1 s keeps growing, so the
    # 14-byte body arrives after ~3.5 s; an enclosing 1.5 s is never extended.
    reply = Reply(body=b'{"ok": "yes!"}', mode="body")
    earning = HTTPConfig(exchange_timeout=1.0, min_rate=1.0)
    with trickle_server(reply, interval=INTERVAL) as server:
        session = new_session(earning)
        with timed(14 * INTERVAL):
            assert session.get(f"{server.url}/slow-but-steady").json() == {"ok": "yes!"}
        with deadline.within(1.5, "the caller's budget"):
            err = fails(DeadlineExceeded, lambda: session.get(f"{server.url}/x").json(), 1.5)
        assert str(err).startswith("the caller's budget did not finish within 1.5 s")
        strict = new_session(HTTPConfig(exchange_timeout=1.0))
        err = fails(DeadlineExceeded, lambda: strict.get(f"{server.url}/x"), 1.0)
        assert str(err).startswith(f"GET {server.url}/x did not finish within 1 s")


def test_a_stalled_tls_handshake_is_cut_off() -> None:
    # A TLS record header promising 16 KiB, then its bytes one by one: the handshake reads
    # inside the ssl module, where only the watchdog can stop it.
    with trickle_server(greeting=b"\x16\x03\x03\x40\x00" + bytes(4096), interval=INTERVAL) as tls:
        session = new_session(HTTP)
        err = fails(DeadlineExceeded, lambda: session.get(f"https://{tls.host}/v2/"))
    assert str(err).startswith(f"GET https://{tls.host}/v2/ did not finish within 2 s")


# --- the CLI ----------------------------------------------------------------------------------------


def test_verify_on_a_trickling_registry_exits_13_within_the_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with trickle_server(Reply(mode="body"), interval=INTERVAL) as server, timed():
        image = f"{server.host}/o/app:v1"
        code = main(["verify", image, "--repository", "o/app", "--no-trust-repo", "--timeout", "2"])
    assert code == EXIT_REGISTRY
    out = capsys.readouterr()
    assert "GET /v2/o/app/manifests/v1 did not finish within 2 s" in out.out + out.err


def test_timeout_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "x/y:z", "--repository", "o/app", "--timeout", "0"]) == 2
    assert "--timeout" in capsys.readouterr().err
