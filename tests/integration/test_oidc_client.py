"""opk-sign's OIDC client (token request, discovery, ID token checks) against the emulator."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from opk_sign._dev.github_oidc import GitHubOIDCEmulator, OPSigningKey, github_claims, mint_id_token
from opk_sign.errors import (
    ExpiredTokenError,
    IssuerError,
    NetworkError,
    OpkSignError,
    SignatureError,
    TokenRequestError,
    TrustError,
    UsageError,
    VerificationError,
)
from opk_sign.http import new_session
from opk_sign.oidc import (
    GITHUB_ISSUER,
    GitHubActionsProvider,
    JWKSCache,
    TokenProvider,
    fetch_jwks,
    request_github_id_token,
    verify_id_token,
)
from tests.services.oidc import generated_op_key

pytestmark = pytest.mark.integration

AUDIENCE = "LEQE668yEBBpVxKfi4SvIkl8wFxn55TdzNF79aEomIA"  # a CIC commitment


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: object) -> str:
    return b64url(json.dumps(value).encode())


@pytest.fixture(scope="module")
def emulator() -> Iterator[GitHubOIDCEmulator]:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as running:
        yield running


@pytest.fixture
def fresh_emulator() -> Iterator[GitHubOIDCEmulator]:
    """For tests that rotate keys."""
    with GitHubOIDCEmulator(key=generated_op_key(0)) as running:
        yield running


def recording_session(urls: list[str]) -> requests.Session:
    session = new_session()

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        urls.append(str(response.request.url))

    session.hooks["response"].append(record)
    return session


def assert_no_secrets(err: OpkSignError, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in str(err)
        assert secret not in (err.hint or "")
        assert secret not in err.diagnostics()
        assert secret not in repr(err.args)


# --- requesting the token ------------------------------------------------------------------------


def test_request_token_adds_audience_and_keeps_api_version(emulator: GitHubOIDCEmulator) -> None:
    urls: list[str] = []
    with recording_session(urls) as session:
        token = request_github_id_token(AUDIENCE, env=emulator.env(), session=session)
    assert len(urls) == 1
    query = parse_qs(urlsplit(urls[0]).query)
    assert query == {"api-version": ["2.0"], "audience": [AUDIENCE]}
    claims = verify_id_token(token, emulator.jwks(), issuer=emulator.issuer, audience=AUDIENCE)
    assert claims["aud"] == AUDIENCE
    assert claims["repository"] == emulator.env()["GITHUB_REPOSITORY"]


def test_request_token_replaces_an_audience_already_in_the_url(
    emulator: GitHubOIDCEmulator,
) -> None:
    env = {**emulator.env()}
    env["ACTIONS_ID_TOKEN_REQUEST_URL"] += "&audience=stale"
    urls: list[str] = []
    with recording_session(urls) as session:
        request_github_id_token(AUDIENCE, env=env, session=session)
    assert parse_qs(urlsplit(urls[0]).query)["audience"] == [AUDIENCE]


def test_request_token_with_its_own_session(emulator: GitHubOIDCEmulator) -> None:
    token = request_github_id_token("plain", env=emulator.env())
    assert verify_id_token(token, emulator.jwks(), issuer=emulator.issuer, audience="plain")


def test_wrong_request_token_is_refused_without_leaking_it(emulator: GitHubOIDCEmulator) -> None:
    wrong = "wrong-request-token-0123456789abcdef"
    env = {**emulator.env(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN": wrong}
    with pytest.raises(TokenRequestError, match="HTTP 401") as caught:
        request_github_id_token(AUDIENCE, env=env)
    assert caught.value.hint and "only inside the job" in caught.value.hint
    assert_no_secrets(caught.value, wrong, emulator.request_token)


@pytest.mark.parametrize(
    "missing", ["ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
)
def test_missing_variables_explain_the_permission(
    emulator: GitHubOIDCEmulator, missing: str
) -> None:
    env = {k: v for k, v in emulator.env().items() if k != missing}
    with pytest.raises(TokenRequestError, match=missing) as caught:
        request_github_id_token(AUDIENCE, env=env)
    assert caught.value.hint and "permissions: id-token: write" in caught.value.hint
    assert "fork" not in caught.value.hint
    assert_no_secrets(caught.value, emulator.request_token)


def test_missing_variables_on_a_pull_request_mention_forks() -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request"}
    with pytest.raises(TokenRequestError) as caught:
        request_github_id_token(AUDIENCE, env=env)
    assert caught.value.hint
    assert "id-token: write" in caught.value.hint
    assert "pull requests from forks" in caught.value.hint


def test_outside_github_actions_points_at_the_emulator() -> None:
    with pytest.raises(TokenRequestError, match="not running in GitHub Actions") as caught:
        request_github_id_token(AUDIENCE, env={})
    assert caught.value.hint
    assert "id-token: write" in caught.value.hint
    assert "opk-sign dev github-oidc" in caught.value.hint


def test_request_token_never_travels_over_plain_http() -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": "http://pipelines.example.com/token?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret-request-token-value",
    }
    with pytest.raises(TokenRequestError, match="https") as caught:
        request_github_id_token(AUDIENCE, env=env)
    assert_no_secrets(caught.value, "secret-request-token-value")


def test_empty_audience_is_a_usage_error(emulator: GitHubOIDCEmulator) -> None:
    with pytest.raises(UsageError):
        request_github_id_token("", env=emulator.env())


Answer = Callable[[str, str], tuple[int, bytes]]


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], str]]:
    """Loopback servers whose replies come from ``answer(base_url, path)``; returns the base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = answer(base, self.path)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return base

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"not json", "without an ID token"),
        (200, b'{"count": 3}', "without an ID token"),
        (200, b'{"value": 42}', "without an ID token"),
        (200, b'{"value": "no-dots"}', "without an ID token"),
        (403, b'{"message": "secret-request-token-value"}', "HTTP 403"),
        (404, b"", "HTTP 404"),
    ],
)
def test_bad_token_service_answers(
    serve: Callable[[Answer], str], status: int, body: bytes, message: str
) -> None:
    base = serve(lambda base, path: (status, body))
    env = {
        "ACTIONS_ID_TOKEN_REQUEST_URL": f"{base}/token?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret-request-token-value",
    }
    with pytest.raises(TokenRequestError, match=message) as caught:
        request_github_id_token(AUDIENCE, env=env)
    assert_no_secrets(caught.value, "secret-request-token-value")


def test_unreachable_token_service_is_a_network_error() -> None:
    env = {
        "ACTIONS_ID_TOKEN_REQUEST_URL": "http://127.0.0.1:9/token?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret-request-token-value",
    }
    session = new_session()
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
    with session, pytest.raises(NetworkError) as caught:
        request_github_id_token(AUDIENCE, env=env, session=session)
    assert_no_secrets(caught.value, "secret-request-token-value")


def test_secrets_never_reach_the_log(
    emulator: GitHubOIDCEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = request_github_id_token(AUDIENCE, env=emulator.env())
    with pytest.raises(TokenRequestError):
        request_github_id_token(
            AUDIENCE, env={**emulator.env(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "bad-token-xyz"}
        )
    assert caplog.records  # the request is logged, without its secrets
    for secret in (emulator.request_token, token, token.rpartition(".")[2], "bad-token-xyz"):
        assert secret not in caplog.text


def test_provider_interface(emulator: GitHubOIDCEmulator) -> None:
    provider: TokenProvider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
    assert provider.issuer_hint == emulator.issuer
    token = provider.id_token(AUDIENCE)
    verify_id_token(token, emulator.jwks(), issuer=provider.issuer_hint, audience=AUDIENCE)


@pytest.mark.parametrize(
    ("server_url", "issuer"),
    [
        ("https://github.com", GITHUB_ISSUER),
        ("https://octo.ghe.com", "https://token.actions.octo.ghe.com"),
        ("https://ghes.example.com", "https://ghes.example.com/_services/token"),
    ],
)
def test_provider_issuer_hint_follows_the_server(server_url: str, issuer: str) -> None:
    assert GitHubActionsProvider(env={"GITHUB_SERVER_URL": server_url}).issuer_hint == issuer


# --- discovery -----------------------------------------------------------------------------------


def test_fetch_jwks_by_discovery(emulator: GitHubOIDCEmulator) -> None:
    assert fetch_jwks(emulator.issuer) == emulator.jwks()


def test_fetch_jwks_accepts_a_trailing_slash_only_if_the_issuer_has_it(
    emulator: GitHubOIDCEmulator,
) -> None:
    with pytest.raises(TrustError, match="is for issuer"):
        fetch_jwks(f"{emulator.issuer}/")


def test_discovery_document_for_another_issuer_is_refused() -> None:
    with GitHubOIDCEmulator(key=generated_op_key(0), issuer=GITHUB_ISSUER) as emulator:
        with pytest.raises(TrustError, match="is for issuer") as caught:
            fetch_jwks(emulator.url)
        assert caught.value.hint


def test_discovery_needs_https_except_on_loopback() -> None:
    with pytest.raises(TrustError, match="https") as caught:
        fetch_jwks("http://issuer.example.com")
    assert caught.value.hint


def test_unreachable_issuer_is_a_trust_error() -> None:
    session = new_session()
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
    with session, pytest.raises(TrustError, match="could not fetch"):
        fetch_jwks("http://127.0.0.1:9", session=session)


@pytest.mark.parametrize(
    "body",
    [b"[]", b"{}", b"not json", b'{"jwks_uri": "x"}'],
)
def test_bad_discovery_documents(serve: Callable[[Answer], str], body: bytes) -> None:
    issuer = serve(lambda base, path: (200, body))
    with pytest.raises(TrustError) as caught:
        fetch_jwks(issuer)
    assert caught.value.hint


@pytest.mark.parametrize(
    "jwks", [b"[]", b"{}", b'{"keys": {}}', b'{"keys": ["x"]}', b"{", b"x" * (1 << 21)]
)
def test_bad_jwks_documents(serve: Callable[[Answer], str], jwks: bytes) -> None:
    def answer(base: str, path: str) -> tuple[int, bytes]:
        if path == "/jwks":
            return 200, jwks
        return 200, json.dumps({"issuer": base, "jwks_uri": f"{base}/jwks"}).encode()

    with pytest.raises(TrustError, match="JWKS") as caught:
        fetch_jwks(serve(answer))
    assert caught.value.hint


def test_jwks_uri_must_be_secure(serve: Callable[[Answer], str]) -> None:
    def answer(base: str, path: str) -> tuple[int, bytes]:
        document = {"issuer": base, "jwks_uri": "http://keys.example.com/jwks"}
        return 200, json.dumps(document).encode()

    with pytest.raises(TrustError, match="https"):
        fetch_jwks(serve(answer))


def test_jwks_cache_fetches_once_per_issuer(fresh_emulator: GitHubOIDCEmulator) -> None:
    urls: list[str] = []
    with recording_session(urls) as session:
        cache = JWKSCache(session)
        first = cache.get(fresh_emulator.issuer)
        fresh_emulator.rotate(new_key=generated_op_key(1))
        second = cache.get(fresh_emulator.issuer)
    assert first is second
    assert len(urls) == 2  # discovery + JWKS, once
    assert [k["kid"] for k in first["keys"]] == [generated_op_key(0).kid]


def test_rotation_with_drop_old_retires_the_old_key(fresh_emulator: GitHubOIDCEmulator) -> None:
    old_token = fresh_emulator.issue_token(AUDIENCE)
    fresh_emulator.rotate(new_key=generated_op_key(1))
    both = fetch_jwks(fresh_emulator.issuer)
    assert {k["kid"] for k in both["keys"]} == {generated_op_key(0).kid, generated_op_key(1).kid}
    verify_id_token(old_token, both, issuer=fresh_emulator.issuer, audience=AUDIENCE)

    fresh_emulator.rotate(drop_old=True, new_key=generated_op_key(2))
    latest = fetch_jwks(fresh_emulator.issuer)
    assert [k["kid"] for k in latest["keys"]] == [generated_op_key(2).kid]
    with pytest.raises(IssuerError, match="kid"):
        verify_id_token(old_token, latest, issuer=fresh_emulator.issuer, audience=AUDIENCE)
    new_token = fresh_emulator.issue_token(AUDIENCE)
    verify_id_token(new_token, latest, issuer=fresh_emulator.issuer, audience=AUDIENCE)


# --- checking the ID token -----------------------------------------------------------------------

ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def jwks() -> dict[str, Any]:
    return {"keys": [generated_op_key(0).public_jwk()]}


def token_with(**overrides: Any) -> str:
    return mint_id_token(generated_op_key(0), github_claims(AUDIENCE, issuer=ISSUER, **overrides))


def forged(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def test_fresh_token_is_accepted(jwks: dict[str, Any]) -> None:
    token = token_with()
    claims = verify_id_token(token, jwks, issuer=ISSUER, audience=AUDIENCE)
    assert claims["aud"] == AUDIENCE
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "repo:octo-org/octo-repo:ref:refs/heads/main"


def test_wrong_audience_is_refused(jwks: dict[str, Any]) -> None:
    with pytest.raises(VerificationError, match="aud claim") as caught:
        verify_id_token(token_with(), jwks, issuer=ISSUER, audience="another-commitment")
    assert type(caught.value) is VerificationError
    assert caught.value.hint


def test_audience_list_is_refused(jwks: dict[str, Any]) -> None:
    token = token_with(aud=None)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    claims["aud"] = [AUDIENCE]
    list_token = mint_id_token(generated_op_key(0), claims)
    with pytest.raises(VerificationError, match="aud claim"):
        verify_id_token(list_token, jwks, issuer=ISSUER, audience=AUDIENCE)


def test_wrong_issuer_is_refused(jwks: dict[str, Any]) -> None:
    with pytest.raises(IssuerError, match="iss claim"):
        verify_id_token(token_with(), jwks, issuer="https://other.example", audience=AUDIENCE)


def test_expired_token_is_refused(jwks: dict[str, Any]) -> None:
    stale = token_with(now=int(time.time()) - 3600)
    with pytest.raises(ExpiredTokenError, match="exp claim"):
        verify_id_token(stale, jwks, issuer=ISSUER, audience=AUDIENCE)


def test_expiry_uses_the_given_clock(jwks: dict[str, Any]) -> None:
    token = token_with(now=1_700_000_000)
    verify_id_token(token, jwks, issuer=ISSUER, audience=AUDIENCE, now=1_700_000_299)
    with pytest.raises(ExpiredTokenError, match="exp claim"):
        verify_id_token(token, jwks, issuer=ISSUER, audience=AUDIENCE, now=1_700_000_300)


def test_token_from_the_future_is_refused(jwks: dict[str, Any]) -> None:
    future = token_with(now=int(time.time()) + 3600)
    with pytest.raises(ExpiredTokenError, match="iat claim"):
        verify_id_token(future, jwks, issuer=ISSUER, audience=AUDIENCE)


def test_non_integer_times_are_refused(jwks: dict[str, Any]) -> None:
    claims = github_claims(AUDIENCE, issuer=ISSUER)
    claims["exp"] = str(claims["exp"])
    with pytest.raises(VerificationError, match="exp claim is not an integer"):
        verify_id_token(
            mint_id_token(generated_op_key(0), claims), jwks, issuer=ISSUER, audience=AUDIENCE
        )


def test_alg_none_is_refused(jwks: dict[str, Any]) -> None:
    header = {"alg": "none", "kid": generated_op_key(0).kid, "typ": "JWT"}
    claims = github_claims(AUDIENCE, issuer=ISSUER)
    token = f"{b64url_json(header)}.{b64url_json(claims)}."
    with pytest.raises(VerificationError, match="alg is 'none'"):
        verify_id_token(token, jwks, issuer=ISSUER, audience=AUDIENCE)


def test_hs256_keyed_with_the_public_key_is_refused(jwks: dict[str, Any]) -> None:
    public_pem = (
        generated_op_key(0)
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "kid": generated_op_key(0).kid, "typ": "JWT"}
    token = forged(
        header,
        github_claims(AUDIENCE, issuer=ISSUER),
        lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
    )
    with pytest.raises(VerificationError, match="alg is 'HS256'"):
        verify_id_token(token, jwks, issuer=ISSUER, audience=AUDIENCE)


def test_unknown_kid_is_refused(jwks: dict[str, Any]) -> None:
    token = mint_id_token(generated_op_key(1), github_claims(AUDIENCE, issuer=ISSUER))
    with pytest.raises(IssuerError, match=f"kid '{generated_op_key(1).kid}'") as caught:
        verify_id_token(token, jwks, issuer=ISSUER, audience=AUDIENCE)
    assert caught.value.hint and "rotated" in caught.value.hint


def test_missing_kid_is_refused(jwks: dict[str, Any]) -> None:
    header = {"alg": "RS256", "typ": "JWT"}
    token = forged(header, github_claims(AUDIENCE, issuer=ISSUER), lambda data: b"\0" * 256)
    with pytest.raises(IssuerError, match="no kid"):
        verify_id_token(token, jwks, issuer=ISSUER, audience=AUDIENCE)


def test_signature_by_another_key_under_a_known_kid_is_refused(jwks: dict[str, Any]) -> None:
    impostor = OPSigningKey(
        generated_op_key(1).private_key,
        generated_op_key(0).kid,
        generated_op_key(0).certificate_der,
    )
    token = mint_id_token(impostor, github_claims(AUDIENCE, issuer=ISSUER))
    with pytest.raises(SignatureError, match="signature"):
        verify_id_token(token, jwks, issuer=ISSUER, audience=AUDIENCE)


def test_tampered_payload_is_refused(jwks: dict[str, Any]) -> None:
    header, _, signature = token_with().split(".")
    evil = b64url_json(github_claims(AUDIENCE, issuer=ISSUER, repository="evil/repo"))
    with pytest.raises(SignatureError):
        verify_id_token(f"{header}.{evil}.{signature}", jwks, issuer=ISSUER, audience=AUDIENCE)


@pytest.mark.parametrize("token", ["", "a.b", "not a jwt", "...."])
def test_malformed_tokens_are_refused(jwks: dict[str, Any], token: str) -> None:
    with pytest.raises(VerificationError):
        verify_id_token(token, jwks, issuer=ISSUER, audience=AUDIENCE)


def test_weak_or_private_jwks_keys_are_refused() -> None:
    weak = OPSigningKey.generate(bits=1024)
    token = mint_id_token(weak, github_claims(AUDIENCE, issuer=ISSUER))
    with pytest.raises(IssuerError, match="2048"):
        verify_id_token(token, {"keys": [weak.public_jwk()]}, issuer=ISSUER, audience=AUDIENCE)
    private_jwk = {**generated_op_key(0).public_jwk(), "d": "AQAB"}
    with pytest.raises(IssuerError, match="private key"):
        verify_id_token(token_with(), {"keys": [private_jwk]}, issuer=ISSUER, audience=AUDIENCE)


def test_verification_errors_never_quote_the_token_signature(jwks: dict[str, Any]) -> None:
    token = token_with()
    signature = token.rpartition(".")[2]
    attempts: list[Callable[[], object]] = [
        lambda: verify_id_token(token, jwks, issuer="https://x", audience=AUDIENCE),
        lambda: verify_id_token(token, jwks, issuer=ISSUER, audience="x"),
        lambda: verify_id_token(token, {"keys": []}, issuer=ISSUER, audience=AUDIENCE),
        lambda: verify_id_token(token + "x", jwks, issuer=ISSUER, audience=AUDIENCE),
        lambda: verify_id_token(token, jwks, issuer=ISSUER, audience=AUDIENCE, now=4e9),
    ]
    for attempt in attempts:
        with pytest.raises(VerificationError) as caught:
            attempt()
        assert_no_secrets(caught.value, token, signature)
