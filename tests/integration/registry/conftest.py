"""Registries for the registry-layer tests: started once per xdist worker, on loopback.

``registry`` runs a test against both: distribution (no referrers API, the tag fallback) and
olareg (the referrers API). Each test uses repositories of its own, so tests can share them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from opk_sign.http import HTTPConfig
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from tests.services.faultproxy import FaultProxy, fault_proxy
from tests.services.registries import Registry, TokenServer, distribution, olareg, token_server

#: Quick retries: faults are injected on purpose, waiting seconds for each proves nothing more.
FAST_HTTP = HTTPConfig(
    connect_timeout=5.0, read_timeout=10.0, retries=4, backoff_factor=0.05, backoff_max=0.5
)
#: Users of the authenticated registries (token server users may use repositories <user>/...).
USERS = {"alice": "alice-secret", "bob": "bob-secret"}


def new_client(keychain: Keychain | None = None, http: HTTPConfig = FAST_HTTP) -> RegistryClient:
    return RegistryClient(keychain if keychain is not None else Keychain.anonymous(), http)


def unique(prefix: str = "test") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def distribution_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with distribution(tmp_path_factory.mktemp("distribution")) as running:
        yield running


@pytest.fixture(scope="session")
def olareg_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with olareg(tmp_path_factory.mktemp("olareg")) as running:
        yield running


@pytest.fixture(scope="session", params=["distribution", "olareg"])
def registry(request: pytest.FixtureRequest) -> Registry:
    running: Registry = request.getfixturevalue(f"{request.param}_registry")
    return running


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    """A fresh fault proxy (no faults, zero counts) in front of ``registry``."""
    with fault_proxy(registry.host) as running:
        yield running


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with new_client() as running:
        yield running


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with distribution(tmp_path_factory.mktemp("htpasswd"), htpasswd_users=USERS) as running:
        yield running


@pytest.fixture(scope="session")
def token_proxy_and_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FaultProxy, Registry]]:
    """distribution with token auth; the realm points at a counting proxy before the server."""
    workdir = tmp_path_factory.mktemp("token")
    with token_server(workdir / "server", USERS) as server, fault_proxy(server.host) as counter:
        realm: TokenServer = replace(server, realm=f"http://{counter.host}/token/")
        with distribution(workdir / "registry", token=realm) as running:
            yield counter, running
