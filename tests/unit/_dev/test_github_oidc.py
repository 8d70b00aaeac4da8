"""The GitHub Actions OIDC emulator: keys, claims, tokens, and the service over loopback HTTP.

The HTTP checks use plain `requests`, not opk-sign's client, so the emulator is judged on its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from opk_sign._dev.github_oidc import (
    NOT_BEFORE_SKEW,
    TOKEN_LIFETIME,
    GitHubOIDCEmulator,
    OPSigningKey,
    github_claims,
    mint_id_token,
)
from opk_sign.cli import main as cli  # the module
from opk_sign.errors import UsageError
from tests.services.oidc import generated_op_key

GITHUB_CLAIMS = {
    "actor",
    "actor_id",
    "aud",
    "base_ref",
    "check_run_id",
    "event_name",
    "exp",
    "head_ref",
    "iat",
    "iss",
    "job_workflow_ref",
    "job_workflow_sha",
    "jti",
    "nbf",
    "ref",
    "ref_protected",
    "ref_type",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "repository_visibility",
    "run_attempt",
    "run_id",
    "run_number",
    "runner_environment",
    "sha",
    "sub",
    "workflow",
    "workflow_ref",
    "workflow_sha",
}


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_uint(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


def split_token(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    header, payload, signature = token.split(".")
    return (
        json.loads(b64url_decode(header)),
        json.loads(b64url_decode(payload)),
        (b64url_decode(signature)),
    )


def verify_rs256(token: str, key: OPSigningKey) -> None:
    signing_input, _, signature = token.rpartition(".")
    key.private_key.public_key().verify(
        b64url_decode(signature), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )


@pytest.fixture(scope="module")
def emulator() -> Iterator[GitHubOIDCEmulator]:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as running:
        yield running


def bearer(emulator: GitHubOIDCEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulator.request_token}"}


# --- keys ----------------------------------------------------------------------------------------


def test_signing_key_is_rsa_2048_with_github_style_jwk() -> None:
    key = generated_op_key(0)
    public = key.private_key.public_key()
    assert public.key_size == 2048
    assert public.public_numbers().e == 65537
    jwk = key.public_jwk()
    assert set(jwk) == {"kty", "alg", "use", "kid", "n", "e", "x5c", "x5t"}
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["kid"]) == ("RSA", "RS256", "sig", key.kid)
    assert jwk["e"] == "AQAB"
    assert b64url_uint(jwk["n"]) == public.public_numbers().n
    assert "=" not in jwk["n"] + jwk["x5t"]


def test_x5t_is_sha1_thumbprint_of_the_x5c_certificate() -> None:
    jwk = generated_op_key(0).public_jwk()
    der = base64.b64decode(jwk["x5c"][0], validate=True)
    assert b64url_decode(jwk["x5t"]) == hashlib.sha1(der).digest()
    certificate = x509.load_der_x509_certificate(der)
    assert certificate.public_key() == generated_op_key(0).private_key.public_key()


def test_generated_keys_differ() -> None:
    assert generated_op_key(0).kid != generated_op_key(1).kid
    assert generated_op_key(0).public_jwk()["n"] != generated_op_key(1).public_jwk()["n"]


# --- claims --------------------------------------------------------------------------------------


def test_claims_are_githubs_full_set_with_githubs_types() -> None:
    claims = github_claims("aud-1", issuer="https://issuer.example", now=1_700_000_000)
    assert set(claims) == GITHUB_CLAIMS
    for name, value in claims.items():
        expected = int if name in {"iat", "nbf", "exp"} else str
        assert type(value) is expected, name
    assert claims["aud"] == "aud-1"
    assert claims["iss"] == "https://issuer.example"
    assert claims["iat"] == 1_700_000_000
    assert claims["exp"] == claims["iat"] + TOKEN_LIFETIME
    assert claims["nbf"] == claims["iat"] - NOT_BEFORE_SKEW


def test_default_claims_describe_a_push_to_main() -> None:
    claims = github_claims("a", issuer="https://i")
    assert claims["sub"] == "repo:octo-org/octo-repo:ref:refs/heads/main"
    assert claims["repository_owner"] == "octo-org"
    assert claims["ref_type"] == "branch"
    assert claims["event_name"] == "push"
    assert (
        claims["workflow_ref"] == "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main"
    )
    assert claims["job_workflow_ref"] == claims["workflow_ref"]
    assert claims["workflow_sha"] == claims["sha"] == claims["job_workflow_sha"]
    assert len(str(claims["sha"])) == 40
    int(str(claims["sha"]), 16)
    assert claims["runner_environment"] == "github-hosted"
    assert (claims["head_ref"], claims["base_ref"]) == ("", "")
    for name in ("repository_id", "repository_owner_id", "run_id", "run_number", "check_run_id"):
        assert str(claims[name]).isdigit(), name


def test_repository_ids_are_stable_and_other_ids_vary() -> None:
    first = github_claims("a", issuer="https://i", repository="me/app")
    second = github_claims("a", issuer="https://i", repository="me/app")
    assert first["repository_id"] == second["repository_id"]
    assert first["repository_owner_id"] == second["repository_owner_id"]
    assert first["jti"] != second["jti"]
    assert first["sha"] != second["sha"]
    other = github_claims("a", issuer="https://i", repository="me/other")
    assert other["repository_id"] != first["repository_id"]
    assert other["repository_owner_id"] == first["repository_owner_id"]


def test_environment_tag_and_pull_request_subjects() -> None:
    env = github_claims("a", issuer="https://i", environment="prod")
    assert env["sub"] == "repo:octo-org/octo-repo:environment:prod"
    assert env["environment"] == "prod"
    tag = github_claims("a", issuer="https://i", ref="refs/tags/v1.2.0")
    assert tag["sub"] == "repo:octo-org/octo-repo:ref:refs/tags/v1.2.0"
    assert tag["ref_type"] == "tag"
    pr = github_claims("a", issuer="https://i", event_name="pull_request", ref="refs/pull/7/merge")
    assert pr["sub"] == "repo:octo-org/octo-repo:pull_request"
    assert pr["head_ref"] and pr["base_ref"]


def test_reusable_workflow_has_its_own_ref_and_sha() -> None:
    reusable = "org/opk-sign/.github/workflows/sign.yml@refs/tags/v1"
    claims = github_claims("a", issuer="https://i", job_workflow_ref=reusable, sha="ab" * 20)
    assert claims["job_workflow_ref"] == reusable
    assert (
        claims["workflow_ref"] == "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main"
    )
    assert claims["sha"] == claims["workflow_sha"] == "ab" * 20
    assert claims["job_workflow_sha"] != claims["sha"]
    assert len(str(claims["job_workflow_sha"])) == 40


def test_overrides_replace_or_remove_claims() -> None:
    claims = github_claims("a", issuer="https://i", actor="someone", base_ref=None, extra="x")
    assert claims["actor"] == "someone"
    assert "base_ref" not in claims
    assert claims["extra"] == "x"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"repository": "no-slash"}, "OWNER/NAME"),
        ({"repository": "a/b/c"}, "OWNER/NAME"),
        ({"ref": "main"}, "full Git ref"),
        ({"run_id": 12}, "run_id must be a string"),
        ({"exp": "123"}, "exp must be an integer"),
        ({"exp": True}, "exp must be an integer"),
    ],
)
def test_bad_claim_arguments_are_usage_errors(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        github_claims("a", issuer="https://i", **arguments)


# --- minting -------------------------------------------------------------------------------------


def test_minted_token_has_githubs_header_and_plain_json_payload() -> None:
    key = generated_op_key(0)
    claims = github_claims("commitment", issuer="https://i")
    token = mint_id_token(key, claims)
    header, payload, signature = split_token(token)
    assert header == {"alg": "RS256", "kid": key.kid, "typ": "JWT", "x5t": key.x5t}
    assert payload == claims
    assert list(payload) == list(claims)  # GitHub's claim order is kept
    assert len(signature) == 256
    verify_rs256(token, key)
    assert "=" not in token


# --- the service over HTTP -----------------------------------------------------------------------


def test_issuer_and_request_url_are_the_emulators_own(emulator: GitHubOIDCEmulator) -> None:
    assert emulator.issuer.startswith("http://127.0.0.1:")
    assert emulator.issuer == emulator.url
    parts = urlsplit(emulator.request_url)
    assert f"{parts.scheme}://{parts.netloc}" == emulator.url
    assert parse_qs(parts.query) == {"api-version": ["2.0"]}
    assert len(emulator.request_token) >= 32


def test_discovery_document_has_githubs_fields(emulator: GitHubOIDCEmulator) -> None:
    response = requests.get(f"{emulator.url}/.well-known/openid-configuration", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert set(document) == {
        "issuer",
        "jwks_uri",
        "subject_types_supported",
        "response_types_supported",
        "claims_supported",
        "id_token_signing_alg_values_supported",
        "scopes_supported",
    }
    assert document["issuer"] == emulator.issuer
    assert document["jwks_uri"] == f"{emulator.issuer}/.well-known/jwks"
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["scopes_supported"] == ["openid"]
    assert document["response_types_supported"] == ["id_token"]
    assert GITHUB_CLAIMS - {"check_run_id"} <= set(document["claims_supported"])


def test_jwks_publishes_the_current_key(emulator: GitHubOIDCEmulator) -> None:
    response = requests.get(f"{emulator.url}/.well-known/jwks", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"keys": [key.public_jwk() for key in emulator.keys]}
    assert emulator.current_key.kid in [k["kid"] for k in response.json()["keys"]]


def test_token_endpoint_answers_count_and_value(emulator: GitHubOIDCEmulator) -> None:
    response = requests.get(
        f"{emulator.request_url}&audience=my-commitment", headers=bearer(emulator), timeout=5
    )
    assert response.status_code == 200
    document = response.json()
    assert set(document) == {"count", "value"}
    assert document["count"] == len(document["value"])
    header, claims, _ = split_token(document["value"])
    assert header["kid"] == emulator.current_key.kid
    assert claims["aud"] == "my-commitment"
    assert claims["iss"] == emulator.issuer
    assert abs(claims["iat"] - time.time()) < 5
    verify_rs256(document["value"], emulator.current_key)


def test_token_endpoint_defaults_audience_to_the_owner_url(emulator: GitHubOIDCEmulator) -> None:
    response = requests.get(emulator.request_url, headers=bearer(emulator), timeout=5)
    assert response.status_code == 200
    _, claims, _ = split_token(response.json()["value"])
    assert claims["aud"] == "https://github.com/octo-org"


def test_each_token_is_fresh_but_the_job_is_the_same(emulator: GitHubOIDCEmulator) -> None:
    _, first, _ = split_token(emulator.issue_token("a"))
    _, second, _ = split_token(emulator.issue_token("a"))
    assert first["jti"] != second["jti"]
    for name in ("sha", "run_id", "run_number", "check_run_id", "repository_id", "sub"):
        assert first[name] == second[name], name


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}],
    ids=["missing", "wrong", "not-bearer"],
)
def test_token_endpoint_requires_the_request_token(
    emulator: GitHubOIDCEmulator, headers: dict[str, str]
) -> None:
    response = requests.get(f"{emulator.request_url}&audience=x", headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "value" not in response.json()


@pytest.mark.parametrize(
    "query",
    [
        "audience=x",  # api-version dropped
        "api-version=1.0&audience=x",
        "api-version=2.0&audience=",
        "api-version=2.0&audience=a&audience=b",
        "api-version=2.0&audience=has%20space",
        "api-version=2.0&audience=" + "a" * 1025,
    ],
)
def test_token_endpoint_refuses_bad_requests(emulator: GitHubOIDCEmulator, query: str) -> None:
    response = requests.get(f"{emulator.url}/token?{query}", headers=bearer(emulator), timeout=5)
    assert response.status_code == 400
    assert "value" not in response.json()


def test_unknown_paths_and_methods(emulator: GitHubOIDCEmulator) -> None:
    assert requests.get(f"{emulator.url}/nope", timeout=5).status_code == 404
    wrong_method = requests.post(emulator.request_url, headers=bearer(emulator), timeout=5)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET"


def test_env_matches_the_claims_of_issued_tokens(emulator: GitHubOIDCEmulator) -> None:
    env = emulator.env()
    _, claims, _ = split_token(emulator.issue_token("x"))
    assert env["ACTIONS_ID_TOKEN_REQUEST_URL"] == emulator.request_url
    assert env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] == emulator.request_token
    assert env["GITHUB_ACTIONS"] == "true"
    assert env["GITHUB_SERVER_URL"] == "https://github.com"
    pairs = {
        "GITHUB_REPOSITORY": "repository",
        "GITHUB_REPOSITORY_ID": "repository_id",
        "GITHUB_REPOSITORY_OWNER": "repository_owner",
        "GITHUB_REPOSITORY_OWNER_ID": "repository_owner_id",
        "GITHUB_REF": "ref",
        "GITHUB_REF_TYPE": "ref_type",
        "GITHUB_SHA": "sha",
        "GITHUB_WORKFLOW": "workflow",
        "GITHUB_WORKFLOW_REF": "workflow_ref",
        "GITHUB_WORKFLOW_SHA": "workflow_sha",
        "GITHUB_RUN_ID": "run_id",
        "GITHUB_RUN_NUMBER": "run_number",
        "GITHUB_RUN_ATTEMPT": "run_attempt",
        "GITHUB_EVENT_NAME": "event_name",
        "GITHUB_ACTOR": "actor",
        "RUNNER_ENVIRONMENT": "runner_environment",
    }
    for variable, claim in pairs.items():
        assert env[variable] == claims[claim], variable
    assert env["GITHUB_REF_NAME"] == "main"


def test_set_claims_changes_the_job_consistently() -> None:
    with GitHubOIDCEmulator(key=generated_op_key(0), claims={"repository": "me/app"}) as emulator:
        sha = emulator.env()["GITHUB_SHA"]
        emulator.set_claims(ref="refs/tags/v2", environment="release")
        env = emulator.env()
        _, claims, _ = split_token(emulator.issue_token("x"))
        assert claims["sub"] == "repo:me/app:environment:release"
        assert claims["ref_type"] == "tag"
        assert env["GITHUB_REF_NAME"] == "v2"
        assert env["GITHUB_REPOSITORY"] == "me/app"
        assert claims["sha"] == env["GITHUB_SHA"] == sha  # the job's commit stays pinned
        assert emulator.default_audience == "https://github.com/me"


@pytest.mark.parametrize("name", ["aud", "iss", "exp", "jti", "audience", "now"])
def test_claim_template_cannot_fix_per_token_claims(name: str) -> None:
    with pytest.raises(UsageError, match=name):
        GitHubOIDCEmulator(key=generated_op_key(0), claims={name: "x"})


def test_configured_issuer_is_claimed_but_requests_stay_on_loopback() -> None:
    issuer = "https://token.actions.githubusercontent.com"
    with GitHubOIDCEmulator(key=generated_op_key(0), issuer=issuer) as emulator:
        assert emulator.issuer == issuer
        assert emulator.request_url.startswith(emulator.url)
        document = requests.get(f"{emulator.url}/.well-known/openid-configuration", timeout=5)
        assert document.json()["jwks_uri"] == f"{issuer}/.well-known/jwks"
        _, claims, _ = split_token(emulator.issue_token("a"))
        assert claims["iss"] == issuer


# --- rotation ------------------------------------------------------------------------------------


def test_rotate_keeps_old_keys_unless_drop_old() -> None:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as emulator:
        emulator.rotate(new_key=generated_op_key(1))
        assert [k.kid for k in emulator.keys] == [generated_op_key(1).kid, generated_op_key(0).kid]
        header, _, _ = split_token(emulator.issue_token("a"))
        assert header["kid"] == generated_op_key(1).kid
        emulator.rotate(drop_old=True, new_key=generated_op_key(2))
        kids = [
            k["kid"]
            for k in requests.get(f"{emulator.url}/.well-known/jwks", timeout=5).json()["keys"]
        ]
        assert kids == [generated_op_key(2).kid]


def test_rotate_endpoint_needs_the_request_token_and_rotates() -> None:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as emulator:
        refused = requests.post(f"{emulator.url}/_emulator/rotate?drop_old=1", timeout=5)
        assert refused.status_code == 401
        assert [k.kid for k in emulator.keys] == [generated_op_key(0).kid]
        response = requests.post(
            f"{emulator.url}/_emulator/rotate?drop_old=1", headers=bearer(emulator), timeout=5
        )
        assert response.status_code == 200
        new_kid = response.json()["kid"]
        assert new_kid != generated_op_key(0).kid
        assert response.json()["keys"] == [new_kid]
        jwks = requests.get(f"{emulator.url}/.well-known/jwks", timeout=5).json()
        assert [k["kid"] for k in jwks["keys"]] == [new_kid]


def test_concurrent_requests_during_rotation() -> None:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as emulator:
        statuses: list[int] = []
        lock = threading.Lock()

        def fetch() -> None:
            with requests.Session() as session:
                for _ in range(5):
                    status = session.get(
                        f"{emulator.request_url}&audience=a", headers=bearer(emulator), timeout=5
                    ).status_code
                    with lock:
                        statuses.append(status)

        workers = [threading.Thread(target=fetch) for _ in range(8)]
        for worker in workers:
            worker.start()
        emulator.rotate(new_key=generated_op_key(1))
        emulator.rotate(new_key=generated_op_key(2), drop_old=True)
        for worker in workers:
            worker.join()
        assert statuses == [200] * 40


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_parses_the_dev_command() -> None:
    args = cli.build_parser().parse_args(["dev", "github-oidc", "--port", "0"])
    assert args.port == 0
    assert callable(args.func)


def test_cli_refuses_a_bad_claims_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text('["not", "an", "object"]')
    assert cli.main(["dev", "github-oidc", "--claims", str(claims)]) == 2
    assert "JSON object" in capsys.readouterr().err


def test_cli_serves_until_sigterm_and_writes_the_env_file(tmp_path: Path) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({"repository": "me/app", "environment": "prod"}))
    env_file = tmp_path / "job.env"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opk_sign.cli",
            "dev",
            "github-oidc",
            "--claims",
            str(claims),
            "--env-file",
            str(env_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert process.stdout is not None
        issuer_line = process.stdout.readline()
        env_line = process.stdout.readline()
        assert issuer_line.startswith("# issuer: http://127.0.0.1:"), issuer_line
        assert env_line == f"# env: {env_file}\n"
        issuer = issuer_line.removeprefix("# issuer: ").strip()
        assert env_file.stat().st_mode & 0o777 == 0o600
        exported = {}
        for line in env_file.read_text().splitlines():
            keyword, assignment = shlex.split(line)
            assert keyword == "export"
            name, _, value = assignment.partition("=")
            exported[name] = value
        assert exported["GITHUB_REPOSITORY"] == "me/app"
        token = requests.get(
            f"{exported['ACTIONS_ID_TOKEN_REQUEST_URL']}&audience=a",
            headers={"Authorization": f"Bearer {exported['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"},
            timeout=5,
        ).json()["value"]
        _, claims_seen, _ = split_token(token)
        assert claims_seen["sub"] == "repo:me/app:environment:prod"
        assert claims_seen["iss"] == issuer
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
        assert process.returncode == 0
        assert "for local testing" in stderr
        assert exported["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_prints_shell_exports(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "opk_sign.cli", "dev", "github-oidc"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("# issuer: ")
        assert lines[1].startswith("export ACTIONS_ID_TOKEN_REQUEST_URL=")
        assert lines[2].startswith("export ACTIONS_ID_TOKEN_REQUEST_TOKEN=")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_rsa_key_size_is_configurable_for_weak_key_tests() -> None:
    key = OPSigningKey.generate(bits=1024)
    assert isinstance(key.private_key, rsa.RSAPrivateKey)
    assert key.private_key.key_size == 1024
