"""A faithful emulator of GitHub Actions' OIDC token service, for tests, the demo and local use.

GitHub's token endpoint answers only inside a running job, so signing is exercised against this
stand-in. It reproduces what a client and a verifier can observe: RS256 with 2048-bit keys
(e = 65537), the header ``{"alg","kid","typ","x5t"}``, GitHub's full claim set, the discovery
document and JWKS, bearer-token auth, an ``audience`` query added to a request URL that already
carries ``api-version``, and key rotation. Its issuer is its own loopback URL, so nothing it mints
is trusted unless a verifier is explicitly pointed at it.

The pure part (keys, claims, minting) is apart from the server so tests can craft tokens directly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from opk_sign.errors import UsageError

#: GitHub's token lifetime as its documented example shows: valid from 10 minutes before issue
#: (room for runner clock skew) until 5 minutes after.
NOT_BEFORE_SKEW = 600
TOKEN_LIFETIME = 300

#: The query every real ACTIONS_ID_TOKEN_REQUEST_URL already carries; clients must keep it.
API_VERSION = "2.0"

#: Longest audience the emulator accepts; a commitment is 43 characters.
MAX_AUDIENCE_LENGTH = 1024

#: The claims GitHub's discovery document lists, in its order.
CLAIMS_SUPPORTED = (
    "sub",
    "aud",
    "exp",
    "iat",
    "iss",
    "jti",
    "nbf",
    "ref",
    "sha",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "enterprise",
    "enterprise_id",
    "run_id",
    "run_number",
    "run_attempt",
    "actor",
    "actor_id",
    "workflow",
    "workflow_ref",
    "workflow_sha",
    "head_ref",
    "base_ref",
    "event_name",
    "ref_type",
    "ref_protected",
    "environment",
    "environment_node_id",
    "job_workflow_ref",
    "job_workflow_sha",
    "repository_visibility",
    "runner_environment",
    "check_run_id",
)

#: Claims the emulator sets per token; a claim template cannot fix them.
PER_TOKEN_CLAIMS = frozenset({"aud", "iss", "iat", "nbf", "exp", "jti"})

#: Claims that are random per job: fixed once per emulator so env() and every token agree.
_PER_JOB_RANDOM = ("sha", "run_id", "run_number", "check_run_id")

#: GitHub sends these as JSON integers and every other claim as a string.
_INTEGER_CLAIMS = frozenset({"iat", "nbf", "exp"})

_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")

ClaimValue = str | int


def _b64url(data: bytes) -> str:
    # Local helper: the emulator must not depend on the signer's own encoders it is testing.
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _compact_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# --- keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OPSigningKey:
    """One of the OP's RS256 signing keys, with the self-signed certificate GitHub publishes."""

    private_key: rsa.RSAPrivateKey
    kid: str
    certificate_der: bytes

    @classmethod
    def generate(cls, bits: int = 2048) -> OPSigningKey:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        # GitHub's current key IDs are UUID-shaped; nothing may rely on their form.
        kid = str(uuid.uuid4())
        return cls(private_key, kid, _self_signed_certificate(private_key))

    @property
    def x5t(self) -> str:
        """Base64url SHA-1 thumbprint of the certificate (RFC 7517 section 4.8), as GitHub sends."""
        return _b64url(hashlib.sha1(self.certificate_der, usedforsecurity=False).digest())

    def public_jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
            # x5c is standard base64 with padding (RFC 7517 section 4.7), unlike every other member.
            "x5c": [base64.b64encode(self.certificate_der).decode("ascii")],
            "x5t": self.x5t,
        }


def _self_signed_certificate(private_key: rsa.RSAPrivateKey) -> bytes:
    # The random serial makes each certificate, and so each x5t, unique.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opk-sign GitHub OIDC emulator")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=730))
        .sign(private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


# --- claims and tokens ---------------------------------------------------------------------------


def _stable_id(name: str, digits: int) -> str:
    # Repository and owner IDs never change on GitHub, so derive them from the name: a policy
    # pinning repository_id keeps working across emulator restarts.
    value = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return str(10 ** (digits - 1) + value % (9 * 10 ** (digits - 1)))


def _ref_name(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/", "refs/pull/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def _workflow_name(workflow_file: str) -> str:
    stem = workflow_file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return stem.replace("-", " ").replace("_", " ").capitalize()


def _check_claim_value(name: str, value: object) -> None:
    if name in _INTEGER_CLAIMS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(
                f"claim {name} must be an integer (got {value!r})",
                hint="GitHub sends iat, nbf and exp as JSON integers",
            )
    elif not isinstance(value, str):
        raise UsageError(
            f"claim {name} must be a string (got {value!r})",
            hint="GitHub sends every claim except iat, nbf and exp as a string, IDs included",
        )


def github_claims(
    audience: str,
    *,
    issuer: str,
    repository: str = "octo-org/octo-repo",
    ref: str = "refs/heads/main",
    workflow_file: str = ".github/workflows/release.yml",
    job_workflow_ref: str | None = None,
    event_name: str = "push",
    environment: str | None = None,
    sha: str | None = None,
    now: int | None = None,
    **overrides: ClaimValue | None,
) -> dict[str, ClaimValue]:
    """The claim set GitHub Actions puts in an ID token, in GitHub's order.

    Claims derived from one another (``sub``, ``workflow_ref``, ``repository_owner`` ...) are
    kept consistent; ``overrides`` then replace any claim, and an override of None removes it.
    """
    owner, slash, name = repository.partition("/")
    if not (owner and slash and name) or "/" in name:
        raise UsageError(
            f"repository must be OWNER/NAME (got {repository!r})", hint="e.g. octo-org/octo-repo"
        )
    if not ref.startswith("refs/"):
        raise UsageError(
            f"ref must be a full Git ref (got {ref!r})", hint="e.g. refs/heads/main or refs/tags/v1"
        )
    if sha is None:
        sha = secrets.token_hex(20)
    iat = int(time.time()) if now is None else now
    workflow_ref = f"{repository}/{workflow_file}@{ref}"
    job_ref = job_workflow_ref or workflow_ref
    # A reusable workflow from elsewhere runs at its own commit; one from this repository and
    # ref runs at the caller's.
    same_commit = job_ref.startswith(f"{repository}/") and job_ref.endswith(f"@{ref}")
    job_sha = (
        sha if same_commit else hashlib.sha1(job_ref.encode(), usedforsecurity=False).hexdigest()
    )
    pull_request = event_name == "pull_request"
    if environment:
        subject = f"repo:{repository}:environment:{environment}"
    elif pull_request:
        subject = f"repo:{repository}:pull_request"
    else:
        subject = f"repo:{repository}:ref:{ref}"

    claims: dict[str, ClaimValue] = {"jti": str(uuid.uuid4()), "sub": subject}
    if environment:
        claims["environment"] = environment
    claims.update(
        {
            "aud": audience,
            "ref": ref,
            "sha": sha,
            "repository": repository,
            "repository_owner": owner,
            "repository_owner_id": _stable_id(owner, 8),
            "run_id": str(secrets.randbelow(9 * 10**9) + 10**10),
            "run_number": str(secrets.randbelow(999) + 1),
            "run_attempt": "1",
            "repository_visibility": "public",
            "repository_id": _stable_id(repository, 9),
            "actor_id": "583231",
            "actor": "octocat",
            "workflow": _workflow_name(workflow_file),
            "head_ref": "patch-1" if pull_request else "",
            "base_ref": "main" if pull_request else "",
            "event_name": event_name,
            "ref_protected": "false",
            "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
            "workflow_ref": workflow_ref,
            "workflow_sha": sha,
            "job_workflow_ref": job_ref,
            "job_workflow_sha": job_sha,
            "runner_environment": "github-hosted",
            "check_run_id": str(secrets.randbelow(9 * 10**10) + 10**11),
            "iss": issuer,
            "nbf": iat - NOT_BEFORE_SKEW,
            "exp": iat + TOKEN_LIFETIME,
            "iat": iat,
        }
    )
    for claim, value in overrides.items():
        if value is None:
            claims.pop(claim, None)
        else:
            _check_claim_value(claim, value)
            claims[claim] = value
    return claims


def mint_id_token(key: OPSigningKey, claims: Mapping[str, Any]) -> str:
    """An RS256 compact JWT with GitHub's header, signed by ``key``."""
    header = {"alg": "RS256", "kid": key.kid, "typ": "JWT", "x5t": key.x5t}
    signing_input = f"{_b64url(_compact_json(header))}.{_b64url(_compact_json(dict(claims)))}"
    signature = key.private_key.sign(
        signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{_b64url(signature)}"


# --- the service ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def _error(status: int, message: str, **headers: str) -> _Reply:
    return _Reply(status, {"message": message}, headers)


class GitHubOIDCEmulator:
    """GitHub's OIDC token service on 127.0.0.1, served from a daemon thread.

    Endpoints: ``GET /.well-known/openid-configuration``, ``GET /.well-known/jwks``,
    ``GET /token?api-version=2.0&audience=…`` (bearer ``request_token``) and
    ``POST /_emulator/rotate[?drop_old=1]`` (same bearer), so another process can rotate keys.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        issuer: str | None = None,
        claims: Mapping[str, Any] | None = None,
        key: OPSigningKey | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._keys: list[OPSigningKey] = [key or OPSigningKey.generate()]
        self._request_token = secrets.token_urlsafe(32)
        self._server = _EmulatorServer(("127.0.0.1", port), _Handler, self)
        host, bound_port = self._server.server_address[:2]
        self._url = f"http://{host!s}:{bound_port}"
        self._issuer = (issuer or self._url).rstrip("/")
        self._issuer_path = urlsplit(self._issuer).path
        self._thread: threading.Thread | None = None
        try:
            self._params = self._pinned(dict(claims or {}))
        except UsageError:
            self._server.server_close()
            raise

    # --- lifecycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="github-oidc-emulator",
                daemon=True,
            )
            self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> GitHubOIDCEmulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- what a job and a verifier see

    @property
    def url(self) -> str:
        """Where the server listens, whatever issuer it claims."""
        return self._url

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def request_url(self) -> str:
        return f"{self._url}/token?api-version={API_VERSION}"

    @property
    def request_token(self) -> str:
        return self._request_token

    @property
    def keys(self) -> tuple[OPSigningKey, ...]:
        """Every published key, the current one first."""
        with self._lock:
            return tuple(self._keys)

    @property
    def current_key(self) -> OPSigningKey:
        with self._lock:
            return self._keys[0]

    @property
    def default_audience(self) -> str:
        # What GitHub uses when the request names no audience.
        return f"https://github.com/{self.claims('')['repository_owner']}"

    def claims(self, audience: str) -> dict[str, ClaimValue]:
        """A fresh claim set from the template, as the next token for ``audience`` carries."""
        with self._lock:
            params = dict(self._params)
        return github_claims(audience, issuer=self._issuer, **params)

    def set_claims(self, **overrides: Any) -> None:
        """Change the job: github_claims arguments or claim overrides (None resets or removes)."""
        with self._lock:
            params = {**self._params, **overrides}
        pinned = self._pinned(params)
        with self._lock:
            self._params = pinned

    def _pinned(self, params: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(PER_TOKEN_CLAIMS.union({"audience", "issuer", "now"}) & params.keys())
        if reserved:
            raise UsageError(
                f"the emulator sets {', '.join(reserved)} per token; a claim template cannot",
                hint="use issuer= for the issuer and the audience query for aud",
            )
        sample = github_claims("", issuer=self._issuer, **params)  # validates before any change
        for name in _PER_JOB_RANDOM:
            if params.get(name) is None and name in sample:
                params[name] = sample[name]
        return params

    def issue_token(self, audience: str | None = None) -> str:
        """Mint what ``GET /token`` answers, signed with the current key."""
        claims = self.claims(self.default_audience if audience is None else audience)
        return mint_id_token(self.current_key, claims)

    def rotate(
        self, drop_old: bool = False, *, new_key: OPSigningKey | None = None
    ) -> OPSigningKey:
        """Make a new key current; older keys stay published unless ``drop_old``."""
        key = new_key or OPSigningKey.generate()
        with self._lock:
            self._keys = [key] if drop_old else [key, *self._keys]
        return key

    def discovery_document(self) -> dict[str, Any]:
        return {
            "issuer": self._issuer,
            "jwks_uri": f"{self._issuer}/.well-known/jwks",
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": list(CLAIMS_SUPPORTED),
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    def env(self) -> dict[str, str]:
        """A runner job's variables under ``permissions: id-token: write``, matching the claims."""
        claims = self.claims("")

        def claim(name: str) -> str:
            return str(claims.get(name, ""))

        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.request_url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self._request_token,
            "GITHUB_ACTIONS": "true",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_API_URL": "https://api.github.com",
            "GITHUB_REPOSITORY": claim("repository"),
            "GITHUB_REPOSITORY_ID": claim("repository_id"),
            "GITHUB_REPOSITORY_OWNER": claim("repository_owner"),
            "GITHUB_REPOSITORY_OWNER_ID": claim("repository_owner_id"),
            "GITHUB_REF": claim("ref"),
            "GITHUB_REF_NAME": _ref_name(claim("ref")),
            "GITHUB_REF_TYPE": claim("ref_type"),
            "GITHUB_REF_PROTECTED": claim("ref_protected"),
            "GITHUB_HEAD_REF": claim("head_ref"),
            "GITHUB_BASE_REF": claim("base_ref"),
            "GITHUB_SHA": claim("sha"),
            "GITHUB_WORKFLOW": claim("workflow"),
            "GITHUB_WORKFLOW_REF": claim("workflow_ref"),
            "GITHUB_WORKFLOW_SHA": claim("workflow_sha"),
            "GITHUB_RUN_ID": claim("run_id"),
            "GITHUB_RUN_NUMBER": claim("run_number"),
            "GITHUB_RUN_ATTEMPT": claim("run_attempt"),
            "GITHUB_EVENT_NAME": claim("event_name"),
            "GITHUB_ACTOR": claim("actor"),
            "GITHUB_ACTOR_ID": claim("actor_id"),
            "RUNNER_ENVIRONMENT": claim("runner_environment"),
        }

    # --- request handling (the HTTP handler only does I/O)

    def _route(self, path: str) -> str:
        if self._issuer_path and path.startswith(f"{self._issuer_path}/"):
            return path[len(self._issuer_path) :]
        return path

    def _authorized(self, authorization: str | None) -> bool:
        expected = f"Bearer {self._request_token}".encode()
        return hmac.compare_digest((authorization or "").encode(), expected)

    def handle(self, method: str, target: str, authorization: str | None) -> _Reply:
        parts = urlsplit(target)
        route = self._route(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        routes = {
            "/.well-known/openid-configuration": "GET",
            "/.well-known/jwks": "GET",
            "/token": "GET",
            "/_emulator/rotate": "POST",
        }
        if route not in routes:
            return _error(404, f"no such endpoint: {route}")
        if method != routes[route]:
            return _error(405, f"{route} only answers {routes[route]}", Allow=routes[route])
        if route == "/.well-known/openid-configuration":
            return _Reply(200, self.discovery_document())
        if route == "/.well-known/jwks":
            return _Reply(200, self.jwks())
        if not self._authorized(authorization):
            return _error(401, "missing or invalid bearer token", **{"WWW-Authenticate": "Bearer"})
        if route == "/_emulator/rotate":
            drop_old = query.get("drop_old", ["0"])[-1] in ("1", "true")
            key = self.rotate(drop_old)
            return _Reply(200, {"kid": key.kid, "keys": [k.kid for k in self.keys]})
        if query.get("api-version") != [API_VERSION]:
            return _error(400, f"the api-version query parameter must be {API_VERSION}")
        audiences = query.get("audience")
        if audiences is None:
            audience = self.default_audience
        elif len(audiences) != 1:
            return _error(400, "give the audience query parameter at most once")
        elif len(audiences[0]) > MAX_AUDIENCE_LENGTH or not _PRINTABLE_ASCII.fullmatch(
            audiences[0]
        ):
            return _error(
                400,
                f"the audience must be 1 to {MAX_AUDIENCE_LENGTH} printable ASCII characters",
            )
        else:
            audience = audiences[0]
        token = self.issue_token(audience)
        return _Reply(200, {"count": len(token), "value": token})


class _EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        emulator: GitHubOIDCEmulator,
    ) -> None:
        self.emulator = emulator
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _EmulatorServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm on, each kept-alive request
    # after the first would stall ~40 ms on the client's delayed ACK. GitHub's endpoint has no
    # such stall, so the emulator must not either.
    disable_nagle_algorithm = True
    server_version = "opk-sign-github-oidc-emulator"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        reply = self.server.emulator.handle(
            self.command, self.path, self.headers.get("Authorization")
        )
        body = _compact_json(reply.body)
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: the demo's stdout carries the env exports, and access lines would only be noise.
        return
