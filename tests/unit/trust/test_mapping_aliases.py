"""Red-team F10: a mapped repository spelled another way (the registry's default port, a Docker
Hub host alias, upper case) is the same repository: the mapping covers it, under its canonical
name, for the containerd verifier / admission service and for ``opk-sign verify`` alike."""

from __future__ import annotations

from typing import Any, cast

import pytest

from opk_sign.errors import UsageError
from opk_sign.oci.reference import Reference, canonical_name, canonical_registry
from opk_sign.policy import AllOf
from opk_sign.trust.mapping import Mapping, Rule, check_pattern
from opk_sign.verify.options import VerifyOptions, _mapped

MAPPING = Mapping(
    (
        Rule("ghcr.io/octo-org/*", "policies/app.json"),
        Rule("docker.io/library/*", "policies/official.json"),
        Rule("localhost:5000/o/*", "policies/local.json"),
    )
)

SPELLINGS = [
    ("ghcr.io/octo-org/app:v1", "ghcr.io/octo-org/app"),
    ("GHCR.IO/octo-org/app:v1", "ghcr.io/octo-org/app"),
    ("ghcr.io:443/octo-org/app:pr-123", "ghcr.io/octo-org/app"),
    ("GHCR.io:443/octo-org/app@sha256:" + "ab" * 32, "ghcr.io/octo-org/app"),
    ("alpine", "docker.io/library/alpine"),
    ("index.docker.io/library/alpine", "docker.io/library/alpine"),
    ("registry-1.docker.io/library/alpine", "docker.io/library/alpine"),
    ("registry-1.docker.io/alpine", "docker.io/library/alpine"),
    ("registry.hub.docker.com/library/alpine", "docker.io/library/alpine"),
    ("registry.hub.docker.com/alpine:3", "docker.io/library/alpine"),
    ("docker.io:443/library/alpine", "docker.io/library/alpine"),
    ("docker.io:443/alpine", "docker.io/library/alpine"),
    ("index.docker.io:443/alpine", "docker.io/library/alpine"),
    ("Registry-1.Docker.IO:443/alpine", "docker.io/library/alpine"),
    ("localhost:5000/o/app", "localhost:5000/o/app"),
    # A port is a number: zeros before it reach the same port (red team, session 6).
    ("ghcr.io:0443/octo-org/app:v1", "ghcr.io/octo-org/app"),
    ("ghcr.io:000443/octo-org/app:v1", "ghcr.io/octo-org/app"),
    ("docker.io:0443/alpine", "docker.io/library/alpine"),
    ("localhost:05000/o/app", "localhost:5000/o/app"),
]


@pytest.mark.parametrize(("spelling", "canonical"), SPELLINGS)
def test_every_spelling_of_a_mapped_repository_is_mapped(spelling: str, canonical: str) -> None:
    rule = MAPPING.lookup(spelling)
    assert rule is not None, f"{spelling} escaped the mapping"
    assert rule.name == canonical and rule.requested == canonical


def test_other_ports_and_hosts_stay_other_repositories() -> None:
    assert MAPPING.lookup("ghcr.io:8443/octo-org/app") is None
    assert MAPPING.lookup("ghcr.io:4430/octo-org/app") is None
    assert MAPPING.lookup("registry-2.docker.io/library/alpine") is None
    assert MAPPING.lookup("localhost:5001/o/app") is None
    assert MAPPING.lookup("ghcr.io:04430/octo-org/app") is None


def test_canonical_registry_drops_only_the_scheme_default_port() -> None:
    assert canonical_registry("GHCR.IO:443") == "ghcr.io"
    assert canonical_registry("localhost:80") == "localhost"
    assert canonical_registry("127.0.0.1:80") == "127.0.0.1"
    assert canonical_registry("[::1]:80") == "[::1]"
    assert canonical_registry("localhost:443") == "localhost:443"  # plain HTTP there
    assert canonical_registry("example.com:80") == "example.com:80"  # HTTPS there
    # The pull itself still goes where the name says: only policy uses the canonical name.
    reference = Reference.parse("registry-1.docker.io/alpine")
    assert reference.name == "registry-1.docker.io/alpine"
    assert canonical_name(reference) == "docker.io/library/alpine"


@pytest.mark.parametrize(
    "pattern",
    ["ghcr.io:443/octo-org/*", "registry-1.docker.io/library/*", "registry.hub.docker.com/**"],
)
def test_a_pattern_in_a_non_canonical_spelling_is_refused(pattern: str) -> None:
    """Names are looked up canonical: such a pattern would silently never match."""
    with pytest.raises(UsageError, match="canonical"):
        check_pattern(pattern)


class _Trust:
    def mapping(self) -> Mapping:
        return MAPPING

    def policy(self, target: str) -> AllOf:
        return cast(AllOf, target)


def test_opk_sign_verify_applies_the_canonical_names_policy_to_an_alias() -> None:
    """``opk-sign verify`` with the trust mapping: the alias gets the canonical name's policy,
    signatures must name the canonical repository; the image is still pulled as named."""
    made: list[tuple[Any, ...]] = []

    def make(policy: Any, signed_name: str | None = None, signed_in: Any = ()) -> VerifyOptions:
        made.append((policy, signed_name))
        return VerifyOptions(
            policy=policy, keys=cast(Any, None), issuers=frozenset(), signed_name=signed_name
        )

    choose = _mapped(cast(Any, _Trust()), make)
    for spelling, canonical in SPELLINGS:
        options = choose(spelling)
        assert options.signed_name == canonical
    assert made[2] == ("policies/app.json", "ghcr.io/octo-org/app")
    assert made[7] == ("policies/official.json", "docker.io/library/alpine")
    with pytest.raises(UsageError, match="no policy applies"):
        choose("ghcr.io:8443/octo-org/app")
