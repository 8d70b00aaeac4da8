"""Authentication against real servers (issue 3, item 2).

distribution with htpasswd basic auth; distribution with token auth in front of which runs
distribution's own token server (through a counting proxy, so token requests are measured);
credentials from a docker config: ``auths``, ``identitytoken``, ``credHelpers`` and ``credsStore``
through a real ``docker-credential-*`` program.
"""

from __future__ import annotations

import base64
import json
import stat
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from opk_sign.cli.main import main
from opk_sign.errors import EXIT_REGISTRY, RegistryAuthError
from opk_sign.oci.credentials import ExplicitCredentials
from opk_sign.oci.dockerconfig import DockerConfig
from opk_sign.oci.keychain import Keychain
from tests.integration.registry.conftest import USERS, new_client, unique
from tests.services.faultproxy import FaultProxy, fault_proxy
from tests.services.images import push_sample_image
from tests.services.registries import TOKEN_SERVICE, Registry

pytestmark = pytest.mark.integration

SIGNATURE = "application/vnd.dev.opk-sign.test.signature.v1+json"
BUNDLE = "application/vnd.dev.opk-sign.test.bundle.v1+json"


def docker_config(directory: Path, document: Mapping[str, object], path: str = "") -> DockerConfig:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(document))
    return DockerConfig.load(directory, environ={"PATH": path})


def basic(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def credential_helper(directory: Path, store: dict[str, tuple[str, str]]) -> Path:
    """Install ``docker-credential-opktest`` in ``directory``; it logs each call to calls.log."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "store.json").write_text(json.dumps(store))
    program = directory / "docker-credential-opktest"
    program.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib, sys\n"
        "here = pathlib.Path(__file__).parent\n"
        "server = sys.stdin.read().strip()\n"
        "with open(here / 'calls.log', 'a') as log:\n"
        "    log.write(f'{sys.argv[1]} {server}\\n')\n"
        "store = json.loads((here / 'store.json').read_text())\n"
        "if sys.argv[1] != 'get' or server not in store:\n"
        "    print('credentials not found in native keychain')\n"
        "    sys.exit(1)\n"
        "user, secret = store[server]\n"
        "print(json.dumps({'ServerURL': server, 'Username': user, 'Secret': secret}))\n"
    )
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return directory


def exercise(keychain: Keychain, registry: Registry, repository: str) -> None:
    """Push, resolve, attach and list: every kind of request, pull and push."""
    with new_client(keychain) as client:
        ref = registry.ref(repository, "v1")
        subject = push_sample_image(client, ref)
        assert client.resolve(ref) == subject
        stored = client.attach_artifact(ref, subject, SIGNATURE, b"bundle", BUNDLE, {})
        assert client.list_referrers(ref, subject.digest) == [stored]


# --- htpasswd basic auth -------------------------------------------------------------------------


def test_basic_auth_from_docker_config_auths(htpasswd_registry: Registry, tmp_path: Path) -> None:
    config = docker_config(
        tmp_path, {"auths": {htpasswd_registry.host: basic("alice", USERS["alice"])}}
    )
    exercise(Keychain.default(docker_config=config), htpasswd_registry, unique())


def test_basic_auth_refusals_say_what_to_do(htpasswd_registry: Registry, tmp_path: Path) -> None:
    ref = htpasswd_registry.ref(unique(), "v1")
    with pytest.raises(RegistryAuthError, match="no credentials") as anonymous:
        new_client(Keychain.anonymous()).resolve(ref)
    assert anonymous.value.exit_code == EXIT_REGISTRY
    assert anonymous.value.hint is not None
    assert "docker login" in anonymous.value.hint
    wrong = docker_config(tmp_path, {"auths": {htpasswd_registry.host: basic("alice", "wrong")}})
    with pytest.raises(RegistryAuthError, match="refused the credentials from docker config"):
        new_client(Keychain.default(docker_config=wrong)).resolve(ref)


def test_explicit_credentials_come_before_the_docker_config(
    htpasswd_registry: Registry, tmp_path: Path
) -> None:
    wrong = docker_config(tmp_path, {"auths": {htpasswd_registry.host: basic("alice", "wrong")}})
    right = ExplicitCredentials.for_registry(
        htpasswd_registry.host, username="bob", password=USERS["bob"]
    )
    exercise(Keychain.default(right, docker_config=wrong), htpasswd_registry, unique())
    elsewhere = ExplicitCredentials.for_registry("ghcr.io", username="bob", password=USERS["bob"])
    with pytest.raises(RegistryAuthError, match="refused"):
        new_client(Keychain.default(elsewhere, docker_config=wrong)).resolve(
            htpasswd_registry.ref(unique(), "v1")
        )


def test_cli_takes_credentials_from_the_environment(
    htpasswd_registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ref = htpasswd_registry.ref(unique(), "v1")
    keychain = Keychain(
        [
            ExplicitCredentials.for_registry(
                htpasswd_registry.host, username="alice", password=USERS["alice"]
            )
        ]
    )
    with new_client(keychain) as client:
        push_sample_image(client, ref)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # an empty docker config
    assert main(["inspect", ref]) == EXIT_REGISTRY
    monkeypatch.setenv("OPK_SIGN_REGISTRY_USERNAME", "alice")
    monkeypatch.setenv("OPK_SIGN_REGISTRY_PASSWORD", USERS["alice"])
    assert main(["inspect", ref, "--output", "json"]) == 0


# --- bearer tokens -------------------------------------------------------------------------------


@pytest.fixture
def token_setup(
    token_proxy_and_registry: tuple[FaultProxy, Registry],
) -> tuple[FaultProxy, Registry]:
    counter, registry = token_proxy_and_registry
    counter.reset_counts()
    return counter, registry


def alice(tmp_path: Path, registry: Registry) -> Keychain:
    config = docker_config(tmp_path, {"auths": {registry.host: basic("alice", USERS["alice"])}})
    return Keychain.default(docker_config=config)


def test_bearer_flow_reuses_tokens_for_the_whole_run(
    token_setup: tuple[FaultProxy, Registry], tmp_path: Path
) -> None:
    tokens, registry = token_setup
    with fault_proxy(registry.host) as registry_proxy:
        behind = Registry(registry.kind, registry_proxy.host, False, registry.workdir)
        repository = unique("alice/app")
        exercise(alice(tmp_path, behind), behind, repository)
        # One 401 (the first request) taught the client the scheme; the rest went out with a
        # token: one for pull, one for pull+push, both reused for ~20 registry requests.
        assert [s.status for s in registry_proxy.requests].count(401) == 1
        assert registry_proxy.count() >= 20
    assert tokens.count("GET", r"^/token/") == 2
    scopes = sorted(parse_qs(urlsplit(s.path).query)["scope"][0] for s in tokens.requests)
    assert scopes == [f"repository:{repository}:pull", f"repository:{repository}:pull,push"]


def test_tokens_are_shared_by_threads(
    token_setup: tuple[FaultProxy, Registry], tmp_path: Path
) -> None:
    tokens, registry = token_setup
    ref = registry.ref(unique("alice/shared"), "v1")
    keychain = alice(tmp_path, registry)
    with new_client(keychain) as client:
        push_sample_image(client, ref, ("linux/amd64",), index=False)
    tokens.reset_counts()
    with new_client(keychain) as shared, ThreadPoolExecutor(max_workers=16) as pool:
        digests = set(pool.map(lambda _: shared.resolve(ref).digest, range(64)))
    assert len(digests) == 1
    # 64 resolutions from 16 threads: one token request (after the first challenge).
    assert tokens.count("GET", r"^/token/") == 1


def test_tokens_are_per_repository_scope(
    token_setup: tuple[FaultProxy, Registry], tmp_path: Path
) -> None:
    tokens, registry = token_setup
    keychain = alice(tmp_path, registry)
    with new_client(keychain) as client:
        refs = [registry.ref(unique("alice/scoped"), "v1") for _ in range(3)]
        for ref in refs:
            push_sample_image(client, ref, ("linux/amd64",), index=False)
        tokens.reset_counts()
        for ref in refs * 3:
            client.resolve(ref)
        assert tokens.count("GET", r"^/token/") == 0  # push tokens serve pulls too
        with pytest.raises(RegistryAuthError, match="refused the credentials"):
            client.resolve(registry.ref("bob/app", "v1"))  # the server grants alice nothing there


def test_identity_token_from_docker_config(
    token_setup: tuple[FaultProxy, Registry], tmp_path: Path
) -> None:
    tokens, registry = token_setup
    offline = requests.get(
        f"http://{tokens.host}/token/",
        params={"service": TOKEN_SERVICE, "offline_token": "true", "scope": ""},
        auth=("alice", USERS["alice"]),
        timeout=10,
    )
    refresh = offline.json()["refresh_token"]
    tokens.reset_counts()
    config = docker_config(tmp_path, {"auths": {registry.host: {"identitytoken": refresh}}})
    exercise(Keychain.default(docker_config=config), registry, unique("alice/idtoken"))
    assert tokens.count("POST", r"^/token/") == 2  # refresh-token grants for pull and push
    assert tokens.count("GET") == 0


def test_credential_helpers_from_docker_config(
    token_setup: tuple[FaultProxy, Registry], tmp_path: Path
) -> None:
    _, registry = token_setup
    helpers = credential_helper(tmp_path / "bin", {registry.host: ("alice", USERS["alice"])})
    documents: list[Mapping[str, object]] = [
        {"credHelpers": {registry.host: "opktest"}},
        {"credsStore": "opktest"},
        # credHelpers wins over a wrong auths entry
        {"credHelpers": {registry.host: "opktest"}, "auths": {registry.host: basic("x", "y")}},
    ]
    for index, document in enumerate(documents):
        config = docker_config(tmp_path / f"config{index}", document, str(helpers))
        exercise(Keychain.default(docker_config=config), registry, unique("alice/helper"))
    # Each run asked the helper once, with the registry host on stdin.
    assert (helpers / "calls.log").read_text().splitlines() == [f"get {registry.host}"] * 3


def test_helper_without_the_credentials_falls_back_to_auths(
    token_setup: tuple[FaultProxy, Registry], tmp_path: Path
) -> None:
    _, registry = token_setup
    helpers = credential_helper(tmp_path / "bin", {"other.example": ("x", "y")})
    document: Mapping[str, object] = {
        "credsStore": "opktest",
        "auths": {registry.host: basic("alice", USERS["alice"])},
    }
    config = docker_config(tmp_path / "config", document, str(helpers))
    exercise(Keychain.default(docker_config=config), registry, unique("alice/fallback"))


def test_a_missing_helper_is_an_error_that_says_so(
    token_setup: tuple[FaultProxy, Registry], tmp_path: Path
) -> None:
    _, registry = token_setup
    config = docker_config(tmp_path, {"credsStore": "nonexistent"}, str(tmp_path))
    with pytest.raises(RegistryAuthError, match="docker-credential-nonexistent") as missing:
        new_client(Keychain.default(docker_config=config)).resolve(registry.ref("alice/x", "v1"))
    assert missing.value.hint is not None
    assert "credsStore" in missing.value.hint
