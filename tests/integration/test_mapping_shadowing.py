"""`opk-sign trust repo map` refuses ambiguous mappings (overlapping rules with different
policies, a rewrite source over a rule) unless --force, and the client reads an overlapping
mapping delivered through TUF one way: the most specific rule wins, as `trust status` shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from opk_sign.errors import EXIT_USAGE
from opk_sign.trust.client import TRUST_DIR_ENV
from tests.services.tuf import Maintained, StaticServer, build_repository, cli

pytestmark = pytest.mark.integration

OFFICIAL = "policies/official-images.json"
TEAM = "policies/team.json"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Maintained:
    return build_repository(tmp_path_factory.mktemp("tuf"))


@pytest.fixture
def maintained(shared: Maintained, tmp_path: Path) -> Maintained:
    return shared.copy(tmp_path / "copy")


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def repo_map(maintained: Maintained, *args: str) -> int:
    return cli("trust", "repo", "map", maintained.dir, *args, "--keys-dir", maintained.keys)


# The shared repository maps docker.io/library/* -> official-images (with the rewrite
# mirror.gcr.io/library/* => docker.io/library/*) and ghcr.io/octo-org/** -> team.
@pytest.mark.parametrize(
    ("args", "named"),
    [
        # a more specific rule under a general one with another policy
        (
            ["docker.io/library/alpine", "team"],
            ["rule docker.io/library/alpine -> " + TEAM, "rule docker.io/library/* -> " + OFFICIAL],
        ),
        # a general rule over a more specific one with another policy
        (["docker.io/**", "team"], ["rule docker.io/**", "rule docker.io/library/*"]),
        # overlapping without either containing the other
        (["docker.io/*/alpine", "team"], ["rule docker.io/*/alpine", "docker.io/library/alpine"]),
        # a rule over an existing rewrite's source
        (
            ["mirror.gcr.io/**", "team"],
            ["rewrite mirror.gcr.io/library/*", "rule mirror.gcr.io/**"],
        ),
        # a new rewrite whose source overlaps an existing rule
        (
            ["quay.io/octo-org/*", "team", "--rewrite", "ghcr.io/octo-org/*=quay.io/octo-org/*"],
            ["rewrite ghcr.io/octo-org/* => quay.io/octo-org/*", "rule ghcr.io/octo-org/**"],
        ),
        # changing a rule's policy in place so that it now overlaps
        (["docker.io/library/alpine", "official-images"], None),
    ],
)
def test_map_refuses_overlaps_unless_forced(
    maintained: Maintained,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    named: list[str] | None,
) -> None:
    if named is None:  # first a harmless specific rule (same policy), then its policy changes
        assert repo_map(maintained, *args) == 0
        args, named = ["docker.io/library/alpine", "team"], ["rule docker.io/library/alpine"]
    capsys.readouterr()
    before = tree(maintained.dir)
    assert repo_map(maintained, *args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "refusing an ambiguous mapping" in err
    for text in named:
        assert text in err
    assert "--force" in err and "same policy" in err  # how to fix it
    assert tree(maintained.dir) == before  # nothing written

    assert repo_map(maintained, *args, "--force") == 0
    assert "warning: " in capsys.readouterr().err
    assert args[0] in [r.pattern for r in maintained.repository().mapping().rules]


@pytest.mark.parametrize(
    "args",
    [
        ["docker.io/library/alpine", "official-images"],  # same policy: no ambiguity
        ["docker.io/**", "official-images"],
        ["quay.io/**", "team"],  # disjoint
        ["ghcr.io/octo-org/app", "team", "--rewrite", "quay.io/mirror/*=ghcr.io/octo-org/*"],
    ],
)
def test_map_accepts_what_is_not_ambiguous(maintained: Maintained, args: list[str]) -> None:
    assert repo_map(maintained, *args) == 0


def test_a_forced_overlap_is_not_asked_about_again(maintained: Maintained) -> None:
    assert repo_map(maintained, "docker.io/library/alpine", "team", "--force") == 0
    assert repo_map(maintained, "quay.io/**", "team") == 0


# --- the client


@pytest.fixture
def server() -> Iterator[StaticServer]:
    with StaticServer() as running:
        yield running


def test_client_applies_the_most_specific_rule_and_status_shows_it(
    maintained: Maintained,
    server: StaticServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In the file the general rule comes first: first-match would give it alpine.
    assert repo_map(maintained, "docker.io/library/alpine", "team", "--force") == 0
    maintained.publish(maintained.published)
    assert maintained.repository().mapping().rules[0].pattern == "docker.io/library/*"
    server.serve(maintained.published)
    trust_dir = tmp_path / "trust"
    monkeypatch.setenv(TRUST_DIR_ENV, str(trust_dir))

    client = maintained.client(server.url, trust_dir)
    rule = client.mapping().lookup("alpine:3.20")
    assert rule is not None and (rule.pattern, rule.policy) == ("docker.io/library/alpine", TEAM)
    rule = client.mapping().lookup("mirror.gcr.io/library/alpine")
    assert rule is not None and rule.policy == TEAM
    rule = client.mapping().lookup("nginx")
    assert rule is not None and rule.policy == OFFICIAL

    root = tmp_path / "root.json"
    root.write_bytes(maintained.root)
    assert cli("trust", "init", "--root", root, "--url", server.url) == 0
    capsys.readouterr()
    assert cli("trust", "status") == 0
    out = capsys.readouterr().out
    assert "in the order they are tried" in out
    assert "precedence: rewrites apply first, then the most specific matching rule wins" in out
    lines = out.splitlines()
    specific = lines.index(f"    docker.io/library/alpine -> {TEAM}")
    general = lines.index(f"    docker.io/library/* -> {OFFICIAL}")
    assert specific < general
    assert any(line.startswith("    overlap: rule docker.io/library/alpine") for line in lines)
    assert cli("trust", "status", "--output", "json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["precedence"] == [
        "docker.io/library/alpine",
        "docker.io/library/*",
        "ghcr.io/octo-org/**",
    ]
    assert status["overlaps"] == [
        {
            "applies": {"pattern": "docker.io/library/alpine", "policy": TEAM},
            "overridden": {"pattern": "docker.io/library/*", "policy": OFFICIAL},
            "example": "docker.io/library/alpine",
        }
    ]
