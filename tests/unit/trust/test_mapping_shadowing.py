"""mapping.json precedence (most specific wins, whatever the file order) and the detection of
entries that one name matches both (overlapping rules, rewrites over rules)."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opk_sign.errors import EXIT_TRUST, TrustError, UsageError
from opk_sign.trust.mapping import (
    Mapping,
    Overlap,
    Rewrite,
    Rule,
    _glob_regex,
    overlap,
    specificity,
)

A = "policies/a.json"
B = "policies/b.json"


# --- overlap(): exact, with an example both patterns match


@pytest.mark.parametrize(
    ("first", "second", "example"),
    [
        ("docker.io/library/*", "docker.io/library/alpine", "docker.io/library/alpine"),
        ("docker.io/library/*", "docker.io/**", "docker.io/library/x"),
        ("docker.io/library/*", "docker.io/*/alpine", "docker.io/library/alpine"),
        ("*.gcr.io/**", "mirror.gcr.io/library/*", "mirror.gcr.io/library/x"),
        ("ghcr.io/o/*-app", "ghcr.io/o/x*", "ghcr.io/o/x-app"),
        ("ghcr.io/**", "ghcr.io/**", "ghcr.io/x"),
    ],
)
def test_overlapping_patterns(first: str, second: str, example: str) -> None:
    assert overlap(first, second) == example
    assert overlap(second, first) is not None
    assert Rule(first, A).matches(example) and Rule(second, A).matches(example)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("docker.io/library/*", "ghcr.io/**"),
        ("docker.io/library/*", "docker.io/library/*/*"),  # * stays in one component
        ("docker.io/library/alpine", "docker.io/library/nginx"),
        ("*.gcr.io/**", "docker.io/**"),
        ("ghcr.io/o/*-app", "ghcr.io/o/*/x"),
        ("ghcr.io/o/**", "ghcr.io/o"),  # ** needs at least one character
    ],
)
def test_disjoint_patterns(first: str, second: str) -> None:
    assert overlap(first, second) is None
    assert overlap(second, first) is None


_PIECES = st.lists(st.sampled_from(["a", "b", "/", "*", "**"]), min_size=1, max_size=5).map("".join)
# Every string of up to five characters over the named ones and one unnamed ("x").
_NAMES = ["".join(p) for n in range(6) for p in itertools.product("ab/x", repeat=n)]


@settings(max_examples=150, deadline=None)
@given(_PIECES, _PIECES)
def test_overlap_agrees_with_brute_force(first: str, second: str) -> None:
    both = [
        name
        for name in _NAMES
        if _glob_regex(first).fullmatch(name) and _glob_regex(second).fullmatch(name)
    ]
    example = overlap(first, second)
    if example is None:
        assert both == []
    else:
        assert _glob_regex(first).fullmatch(example) and _glob_regex(second).fullmatch(example)
        if both:
            assert len(example) == min(len(name) for name in both)  # a shortest one


# --- precedence: most specific wins, whatever the order in the file


def test_specificity_order() -> None:
    patterns = [
        "docker.io/**",
        "docker.io/*/alpine",
        "docker.io/library/*",
        "docker.io/library/**",
        "docker.io/library/*-slim",
        "docker.io/library/alpine",
        "docker.io/library/a*",
    ]
    assert sorted(patterns, key=specificity) == [
        "docker.io/library/alpine",  # an exact name beats any pattern
        "docker.io/library/a*",  # then the longest literal prefix
        "docker.io/library/*-slim",  # same prefix: more literal characters
        "docker.io/library/*",  # same prefix and literals: fewer **
        "docker.io/library/**",
        "docker.io/*/alpine",
        "docker.io/**",
    ]
    # A full tie (same prefix, literals, **) goes to code-point order, never to file order.
    assert sorted(["ghcr.io/o/*/b", "ghcr.io/o/*/a"], key=specificity) == [
        "ghcr.io/o/*/a",
        "ghcr.io/o/*/b",
    ]


RULES = [
    Rule("docker.io/**", "policies/hub.json"),
    Rule("docker.io/library/*", "policies/official.json"),
    Rule("docker.io/library/alpine", "policies/alpine.json"),
    Rule("docker.io/*/alpine", "policies/any-alpine.json"),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(RULES)))))
def test_most_specific_rule_wins_in_any_order(order: tuple[int, ...]) -> None:
    mapping = Mapping(rules=tuple(RULES[i] for i in order))
    expected = {
        "alpine": "policies/alpine.json",
        "nginx": "policies/official.json",
        "someone/alpine": "policies/any-alpine.json",
        "someone/app": "policies/hub.json",
        "library/sub/path": "policies/hub.json",
    }
    for image, policy in expected.items():
        matched = mapping.lookup(image)
        assert matched is not None and matched.policy == policy, image
        assert mapping.rules[matched.index].pattern == matched.pattern  # position in the file
    assert [r.pattern for r in mapping.rules_in_precedence()] == [
        "docker.io/library/alpine",
        "docker.io/library/*",
        "docker.io/*/alpine",
        "docker.io/**",
    ]


@pytest.mark.parametrize("reverse", [False, True])
def test_most_specific_rewrite_wins_in_any_order(reverse: bool) -> None:
    rewrites = [
        Rewrite("mirror.example.com/**", "docker.io/**"),
        Rewrite("mirror.example.com/quay/**", "quay.io/**"),
    ]
    mapping = Mapping(rewrites=tuple(reversed(rewrites) if reverse else rewrites))
    assert mapping.canonical_name("mirror.example.com/quay/o/app") == "quay.io/o/app"
    assert mapping.canonical_name("mirror.example.com/o/app") == "docker.io/o/app"


def test_the_same_pattern_twice_is_refused() -> None:
    with pytest.raises(UsageError, match="appears more than once"):
        Mapping(rules=(Rule("docker.io/library/*", A), Rule("docker.io/library/*", B)))
    doc = {
        "version": 1,
        "rules": [
            {"pattern": "docker.io/library/*", "policy": A},
            {"pattern": "docker.io/library/*", "policy": B},
        ],
    }
    with pytest.raises(TrustError, match="appears more than once") as caught:
        Mapping.from_json(json.dumps(doc))
    assert caught.value.exit_code == EXIT_TRUST
    rewrites = [{"from": "m.io/**", "to": "docker.io/**"}, {"from": "m.io/**", "to": "q.io/**"}]
    with pytest.raises(TrustError, match="rewrite source 'm.io/\\*\\*'"):
        Mapping.from_json(json.dumps({"version": 1, "rules": [], "rewrites": rewrites}))


# --- overlaps(): what `trust repo map` refuses and `trust status` shows


@pytest.mark.parametrize("specific_first", [False, True])
def test_rules_with_different_policies_overlap(specific_first: bool) -> None:
    general, specific = Rule("docker.io/library/*", A), Rule("docker.io/library/alpine", B)
    rules = (specific, general) if specific_first else (general, specific)
    (found,) = Mapping(rules=rules).overlaps()
    assert found == Overlap(specific, general, "docker.io/library/alpine")
    message = found.describe()
    assert "rule docker.io/library/alpine -> policies/b.json" in message
    assert "rule docker.io/library/* -> policies/a.json" in message
    assert "the more specific, rule docker.io/library/alpine" in message


def test_rules_with_the_same_policy_do_not_overlap() -> None:
    mapping = Mapping(rules=(Rule("docker.io/library/*", A), Rule("docker.io/**", A)))
    assert mapping.overlaps() == []


def test_disjoint_rules_do_not_overlap() -> None:
    mapping = Mapping(rules=(Rule("docker.io/library/*", A), Rule("ghcr.io/**", B)))
    assert mapping.overlaps() == []


def test_a_rewrite_source_overlapping_a_rule() -> None:
    rewrite = Rewrite("mirror.gcr.io/library/*", "docker.io/library/*")
    rule = Rule("mirror.gcr.io/**", A)
    mapping = Mapping(rules=(rule, Rule("docker.io/library/*", A)), rewrites=(rewrite,))
    (found,) = mapping.overlaps()
    assert (found.first, found.second) == (rewrite, rule)
    assert "the rewrite applies first" in found.describe()
    # Whatever the policies: the rule never decides for the mirror's names.
    assert mapping.lookup("mirror.gcr.io/library/alpine").pattern == "docker.io/library/*"  # type: ignore[union-attr]


def test_rewrites_with_different_targets_overlap() -> None:
    first = Rewrite("mirror.example.com/**", "docker.io/**")
    second = Rewrite("mirror.example.com/quay/**", "quay.io/**")
    (found,) = Mapping(rewrites=(first, second)).overlaps()
    assert (found.first, found.second) == (second, first)
    same_target = Rewrite("mirror.example.com/hub/**", "docker.io/hub/**")
    assert Mapping(rewrites=(first, Rewrite("m.example.com/**", "docker.io/**"))).overlaps() == []
    assert len(Mapping(rewrites=(first, same_target)).overlaps()) == 1


def test_overlaps_added_since() -> None:
    before = Mapping(rules=(Rule("docker.io/library/*", A), Rule("docker.io/**", B)))
    unrelated = before.with_rule("ghcr.io/**", A)
    assert unrelated.overlaps_added_since(before) == []  # an accepted overlap is not asked again
    changed = unrelated.with_rule("ghcr.io/o/*", B)
    assert [o.first.to_dict() for o in changed.overlaps_added_since(unrelated)] == [
        {"pattern": "ghcr.io/o/*", "policy": B}
    ]
    # Changing a rule's policy in place makes its overlaps new ones.
    moved = before.with_rule("docker.io/**", "policies/c.json")
    assert len(moved.overlaps_added_since(before)) == 1
