"""Red-team F14: the verified-digest cache and the trust state are of one trust repository's
content, not of its version numbers. Two repositories made the same way are both "root 1,
targets 7"; after the node is re-initialised with the other one, no decision of the first is
reused, on the fast path (the containerd verifier's) or the full one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from opk_sign.admission.cache import cache_key
from opk_sign.admission.engine import STATE_FILE, Engine
from opk_sign.admission.settings import Settings
from opk_sign.oci.reference import Reference
from opk_sign.trust.client import TrustConfig, install
from opk_sign.trust.location import TRUST_DIR_ENV
from tests.services.tuf import StaticServer, build_repository

pytestmark = pytest.mark.integration

NAME = "ghcr.io/octo-org/app:v1"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def server() -> Iterator[StaticServer]:
    with StaticServer() as running:
        yield running


def test_another_repository_with_the_same_versions_voids_cached_decisions(
    server: StaticServer, tmp_path: Path
) -> None:
    first, second = build_repository(tmp_path / "a"), build_repository(tmp_path / "b")
    trust_dir = tmp_path / "trust"
    settings = Settings(cache_dir=tmp_path / "cache")

    def engine() -> Engine:  # containerd starts one verifier process per pull
        return Engine(settings, environ={TRUST_DIR_ENV: str(trust_dir)}, notice=lambda _: None)

    # Repository A: what _decide does after a verified pull (remember the rule, cache it).
    server.serve(first.published)
    install(TrustConfig.for_url(server.url, first.root), trust_dir)
    a = engine()
    trust_a = a.trust()
    rule = trust_a.mapping.lookup(NAME)
    assert rule is not None
    fingerprint = "the policy's fingerprint"  # the same policy in both: only trust differs
    a._remember_rule(trust_a.version, rule.pattern, fingerprint, "policy A")
    key = cache_key(
        digest=DIGEST, name=rule.name, policy=fingerprint, trust_version=trust_a.version
    )
    a.cache.put(key, f"{rule.name}@{DIGEST}")
    reference = Reference.parse(NAME)
    assert engine()._from_state(NAME, reference, DIGEST) is not None  # the fast path, under A

    # The operator re-initialises the node with repository B at the same URL.
    server.serve(second.published)
    install(TrustConfig.for_url(server.url, second.root), trust_dir)
    b = engine()
    assert b._from_state(NAME, reference, DIGEST) is None  # the fast path is void at once
    trust_b = b.trust()
    numbers = "root 1, targets 7, sha256 "
    assert trust_a.version.startswith(numbers) and trust_b.version.startswith(numbers)
    assert trust_a.version != trust_b.version  # the content tells them apart
    state = json.loads((tmp_path / "cache" / STATE_FILE).read_text())
    assert state["trustVersion"] == trust_b.version and state["rules"] == {}
    key_b = cache_key(
        digest=DIGEST, name=rule.name, policy=fingerprint, trust_version=trust_b.version
    )
    assert key_b != key and b.cache.get(key_b) is None  # the full path verifies again
    assert engine()._from_state(NAME, reference, DIGEST) is None
