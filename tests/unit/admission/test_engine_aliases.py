"""Red-team F10 in the engine (containerd verifier, admission service): a mapped repository
spelled with its registry's default port or a Docker Hub host alias is mapped, never allowed as
"unmapped"; its decisions are cached under the canonical name."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from opk_sign.admission.cache import cache_key
from opk_sign.admission.engine import STATE_FILE, Engine
from opk_sign.admission.settings import Settings
from opk_sign.trust.mapping import Mapping, Rule

DIGEST = "sha256:" + "ab" * 32
MAPPING = Mapping(
    (
        Rule("ghcr.io/octo-org/*", "policies/app.json"),
        Rule("docker.io/library/*", "policies/official.json"),
    )
)
ALIASES = [
    "ghcr.io:443/octo-org/app:pr-123",
    "GHCR.IO:443/octo-org/app:pr-123",
    "registry-1.docker.io/library/alpine:3",
    "registry-1.docker.io/alpine:3",
    "registry.hub.docker.com/library/alpine",
    "docker.io:443/library/alpine",
    "index.docker.io:443/alpine",
    "ghcr.io:0443/octo-org/app:pr-123",
]


def engine(tmp_path: Path) -> Engine:
    return Engine(
        Settings(cache_dir=tmp_path / "cache"),  # unmapped = "allow", the default
        environ={"OPK_SIGN_TRUST_DIR": str(tmp_path / "trust")},
        notice=lambda _: None,
    )


def write_state(tmp_path: Path, state: dict[str, object]) -> None:
    path = tmp_path / "cache" / STATE_FILE
    path.write_text(json.dumps(state))
    path.chmod(0o600)


@pytest.mark.parametrize("name", ALIASES)
def test_an_alias_of_a_mapped_repository_is_not_unmapped(tmp_path: Path, name: str) -> None:
    first = engine(tmp_path)  # creates the cache directory, owner-only
    write_state(tmp_path, {"refreshedAt": 0, "mapping": MAPPING.to_dict()})
    decision = first.decide(name, DIGEST)
    assert not decision.allowed and decision.outcome != "unmapped", decision.reason()
    assert decision.exit_code == 14  # mapped, and no usable trust data: fail closed
    assert decision.rule in ("ghcr.io/octo-org/*", "docker.io/library/*")
    assert engine(tmp_path).decide("ghcr.io:8443/octo-org/app", DIGEST).outcome == "unmapped"


def test_the_cache_key_is_the_canonical_names(tmp_path: Path) -> None:
    """A digest verified as ghcr.io/octo-org/app is the same decision for ghcr.io:443/...: the
    fast path finds it under the canonical name (and the policy is the canonical name's)."""
    first = engine(tmp_path)
    installed = tmp_path / "trust"
    installed.mkdir()
    (installed / "config.json").write_text("{}")
    (installed / "root.json").write_text("{}")
    now = time.time()
    version = "root 1, targets 3, sha256 00"
    write_state(
        tmp_path,
        {
            "anchor": first._anchor(),
            "refreshedAt": now,
            "expires": now + 3600,
            "trustVersion": version,
            "mapping": MAPPING.to_dict(),
            "rules": {
                "ghcr.io/octo-org/*": {
                    "fingerprint": "fp",
                    "required": "policy app",
                    "issuer": first._issuer(),
                }
            },
        },
    )
    key = cache_key(digest=DIGEST, name="ghcr.io/octo-org/app", policy="fp", trust_version=version)
    first.cache.put(key, "ghcr.io/octo-org/app@" + DIGEST)
    for name in ("ghcr.io/octo-org/app:v1", "ghcr.io:443/octo-org/app:v1", "GHCR.IO/octo-org/app"):
        decision = engine(tmp_path).decide(name, DIGEST)
        assert decision.allowed and decision.cache == "hit", decision.reason()
        assert decision.required == "policy app" and decision.rule == "ghcr.io/octo-org/*"
