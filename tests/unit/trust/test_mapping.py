"""mapping.json: patterns on normalised names, the most specific rule wins (whatever the file's
order), mirror rewrites, versions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opk_sign.errors import EXIT_TRUST, TrustError, UsageError
from opk_sign.trust.mapping import Mapping, MatchedRule, Rewrite, Rule, check_pattern

OFFICIAL = "policies/official-images.json"
TEAM = "policies/team.json"
CATCH_ALL = "policies/docker-hub.json"

MAPPING = Mapping.from_dict(
    {
        "version": 1,
        "rewrites": [
            {"from": "mirror.gcr.io/library/*", "to": "docker.io/library/*"},
            {"from": "mirror.example.com/hub/**", "to": "docker.io/**"},
        ],
        "rules": [
            {"pattern": "docker.io/library/*", "policy": OFFICIAL},
            {"pattern": "ghcr.io/octo-org/**", "policy": TEAM},
            {"pattern": "docker.io/**", "policy": CATCH_ALL},
        ],
    }
)


@pytest.mark.parametrize(
    ("image", "policy", "name"),
    [
        ("alpine", OFFICIAL, "docker.io/library/alpine"),
        ("library/alpine:3.20", OFFICIAL, "docker.io/library/alpine"),
        ("index.docker.io/library/alpine@sha256:" + "a" * 64, OFFICIAL, "docker.io/library/alpine"),
        ("ghcr.io/octo-org/app:v1", TEAM, "ghcr.io/octo-org/app"),
        ("ghcr.io/octo-org/tools/builder", TEAM, "ghcr.io/octo-org/tools/builder"),
        ("someone/app", CATCH_ALL, "docker.io/someone/app"),
        ("Docker.IO/library/alpine", OFFICIAL, "docker.io/library/alpine"),
        ("Index.Docker.io/library/alpine", OFFICIAL, "docker.io/library/alpine"),
        ("GHCR.io/octo-org/app", TEAM, "ghcr.io/octo-org/app"),
    ],
)
def test_lookup_on_normalised_names(image: str, policy: str, name: str) -> None:
    matched = MAPPING.lookup(image)
    assert matched is not None
    assert (matched.policy, matched.name, matched.rewritten) == (policy, name, False)


@pytest.mark.parametrize(
    "image", ["ghcr.io/other-org/app", "ghcr.io/octo-org", "quay.io/library/alpine", "localhost/x"]
)
def test_unmapped_names(image: str) -> None:
    assert MAPPING.lookup(image) is None


def test_the_most_specific_rule_wins_in_any_order() -> None:
    # Issue 11, class 7: one precedence, not the file's order (which a reviewer does not see).
    matched = MAPPING.lookup("docker.io/library/nginx")
    assert matched == MatchedRule(
        "docker.io/library/*", OFFICIAL, "docker.io/library/nginx", "docker.io/library/nginx", 0
    )
    reordered = Mapping(rules=(MAPPING.rules[2], MAPPING.rules[0]))
    assert reordered.lookup("nginx") == MatchedRule(
        "docker.io/library/*", OFFICIAL, "docker.io/library/nginx", "docker.io/library/nginx", 1
    )


def test_star_stays_within_one_path_component() -> None:
    assert MAPPING.lookup("docker.io/library/sub/path") is not None  # only the catch-all
    assert MAPPING.lookup("docker.io/library/sub/path").policy == CATCH_ALL  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("image", "canonical", "policy"),
    [
        ("mirror.gcr.io/library/alpine:3", "docker.io/library/alpine", OFFICIAL),
        ("mirror.example.com/hub/library/redis", "docker.io/library/redis", OFFICIAL),
        ("mirror.example.com/hub/someone/app", "docker.io/someone/app", CATCH_ALL),
    ],
)
def test_mirror_names_cannot_bypass_the_mapping(image: str, canonical: str, policy: str) -> None:
    matched = MAPPING.lookup(image)
    assert matched is not None
    assert (matched.name, matched.policy, matched.rewritten) == (canonical, policy, True)
    assert matched.requested != matched.name


def test_rewrite_result_is_normalised() -> None:
    rewrite = Rewrite("mirror.example.com/**", "docker.io/**")
    assert rewrite.apply("mirror.example.com/alpine") == "docker.io/library/alpine"
    assert rewrite.apply("other.example.com/alpine") is None


@pytest.mark.parametrize(
    "pattern",
    [
        "alpine",
        "library/*",
        "docker.io/alpine",
        "docker.io/library/alpine:latest",
        "docker.io/library/*@sha256:" + "a" * 64,
        "Docker.io/library/*",
        "docker.io/Library/*",
        "docker.io/***",
        "",
    ],
)
def test_patterns_must_be_normalised_names(pattern: str) -> None:
    with pytest.raises(UsageError):
        check_pattern(pattern)


@pytest.mark.parametrize(
    "pattern", ["docker.io/library/*", "*.gcr.io/**", "localhost:5000/app", "ghcr.io/o/*-app"]
)
def test_good_patterns(pattern: str) -> None:
    assert check_pattern(pattern) == pattern


def test_rewrite_needs_the_same_wildcards() -> None:
    with pytest.raises(UsageError, match="same wildcards"):
        Rewrite("mirror.gcr.io/library/*", "docker.io/library/alpine")
    with pytest.raises(UsageError, match="same wildcards"):
        Rewrite("mirror.gcr.io/**", "docker.io/library/*")


@pytest.mark.parametrize("policy", ["/etc/passwd", "../x.json", "policies/../../x", "a b", ""])
def test_policy_must_be_a_target_path(policy: str) -> None:
    with pytest.raises(UsageError, match="target path"):
        Rule("docker.io/library/*", policy)


# --- the format


def test_round_trip_keeps_unknown_members() -> None:
    doc: dict[str, Any] = MAPPING.to_dict()
    doc["owner"] = "registry operator"
    doc["rules"][0]["comment"] = "Docker Official Images"
    doc["rewrites"][0]["since"] = "2024"
    parsed = Mapping.from_json(json.dumps(doc).encode())
    assert json.loads(parsed.to_json()) == doc
    assert parsed == MAPPING


def test_empty_mapping() -> None:
    empty = Mapping.from_json(b'{"version": 1, "rules": []}')
    assert empty.lookup("alpine") is None
    assert Mapping().to_dict() == {"version": 1, "rules": []}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"rules": []}, "version None is not 1"),
        ({"version": 2, "rules": []}, "version 2 is not 1"),
        ({"version": 1}, "'rules' must be a list"),
        ({"version": 1, "rules": ["x"]}, "'rules' must be a list"),
        ({"version": 1, "rules": [{"pattern": "docker.io/*"}]}, "'policy' must be a string"),
        ({"version": 1, "rules": [{"pattern": "alpine", "policy": OFFICIAL}]}, "normalised"),
        ({"version": 1, "rules": [], "rewrites": {}}, "'rewrites' must be a list"),
        ({"version": 1, "rules": [], "rewrites": [{"from": "a.io/*"}]}, "'to' must be a string"),
        ({"version": 1, "rules": [], "minVerifierVersion": "v1"}, "release version"),
    ],
)
def test_strict_parse(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(TrustError, match=message) as caught:
        Mapping.from_json(json.dumps(doc))
    assert caught.value.exit_code == EXIT_TRUST


@pytest.mark.parametrize("data", [b"", b"[]", b'{"version": 1, "version": 1, "rules": []}'])
def test_not_a_mapping(data: bytes) -> None:
    with pytest.raises(TrustError, match="mapping.json"):
        Mapping.from_json(data)


# --- minimum verifier version


@pytest.mark.parametrize(
    ("minimum", "ours", "ok"),
    [
        ("0.1.0", "0.1.0", True),
        ("0.1", "0.1.0", True),
        ("0.1.0", "0.2.0.dev1", True),
        ("0.1.1", "0.1.0", False),
        ("1.0.0", "0.9.9", False),
        ("0.10.0", "0.9.0", False),
    ],
)
def test_minimum_verifier_version(minimum: str, ours: str, ok: bool) -> None:
    mapping = Mapping().with_min_verifier_version(minimum)
    if ok:
        mapping.check_verifier_version(ours)
    else:
        with pytest.raises(TrustError, match=f"requires opk-sign {minimum} or newer") as caught:
            mapping.check_verifier_version(ours)
        assert caught.value.exit_code == EXIT_TRUST
        assert caught.value.hint


def test_no_minimum_accepts_any_version() -> None:
    Mapping().check_verifier_version("0.0.1")


# --- editing


def test_with_rule_replaces_in_place_or_appends() -> None:
    mapping = Mapping().with_rule("docker.io/library/*", OFFICIAL).with_rule("ghcr.io/**", TEAM)
    changed = mapping.with_rule("docker.io/library/*", CATCH_ALL)
    assert [(r.pattern, r.policy) for r in changed.rules] == [
        ("docker.io/library/*", CATCH_ALL),
        ("ghcr.io/**", TEAM),
    ]
    assert mapping.policies() == [OFFICIAL, TEAM]


def test_with_rewrite_replaces_by_source() -> None:
    mapping = Mapping().with_rewrite("mirror.gcr.io/library/*", "docker.io/library/*")
    mapping = mapping.with_rewrite("mirror.gcr.io/library/*", "quay.io/library/*")
    assert [(r.source, r.target) for r in mapping.rewrites] == [
        ("mirror.gcr.io/library/*", "quay.io/library/*")
    ]
