"""Where a copy was signed (issue 12): ``--signed-repository``, a policy document's
``signed-repository`` and a mapping rule's ``signedRepositories`` are read strictly and
normalised as signing writes names; they add accepted names, never remove the signer check."""

from __future__ import annotations

from pathlib import Path

import pytest

from opk_sign.errors import TrustError, UsageError
from opk_sign.policy import policy_from_document, signed_repositories, signed_repository
from opk_sign.trust.mapping import Mapping
from opk_sign.verify.options import build_verify_options, load_policy_file


def test_names_are_normalised_as_signing_writes_them() -> None:
    assert signed_repository("alpine") == "docker.io/library/alpine"
    assert signed_repository("oci://ghcr.io/o/app") == "ghcr.io/o/app"
    assert signed_repositories(["ghcr.io/o/app", "ghcr.io/o/app", "alpine"]) == (
        "ghcr.io/o/app",
        "docker.io/library/alpine",
    )


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ghcr.io/o/app:v1", "names a tag or digest"),
        ("ghcr.io/o/app@sha256:" + "a" * 64, "names a tag or digest"),
        ("https://ghcr.io/o/app", "no URL scheme"),
        ("", "must be a repository name"),
        ("Ghcr.io/O/App", "invalid"),
    ],
)
def test_bad_names_are_usage_errors(name: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        signed_repository(name)


def test_a_policy_document_names_signed_repositories() -> None:
    one = policy_from_document({"repository": "o/app", "signed-repository": "ghcr.io/o/app"})
    assert one.signed_repositories == ("ghcr.io/o/app",)
    many = policy_from_document(
        {"repository": "o/app", "signed-repository": ["ghcr.io/o/app", "quay.io/o/app"]}
    )
    assert many.signed_repositories == ("ghcr.io/o/app", "quay.io/o/app")
    assert "signed in the image's repository or ghcr.io/o/app" in one.describe()


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"signed-repository": "ghcr.io/o/app"}, "empty and would accept any signer"),
        ({"repository": "o/app", "signed-repository": []}, "non-empty list"),
        ({"repository": "o/app", "signed-repository": 5}, "got a number"),
        ({"repository": "o/app", "signed-repository": ["x/y:tag"]}, "names a tag or digest"),
        (
            {"repository": "o/app", "any-of": [{"ref": "r", "signed-repository": "a/b"}]},
            "belongs at the top",
        ),
    ],
)
def test_a_bad_signed_repository_in_a_policy_is_refused(
    doc: dict[str, object], fragment: str
) -> None:
    with pytest.raises(UsageError, match=fragment):
        policy_from_document(doc)


def test_a_policy_file_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text("repository: o/app\nsigned-repository: ghcr.io/o/app:v1\n")
    with pytest.raises(UsageError, match=r"line 2: .*names a tag or digest"):
        policy_from_document(load_policy_file(path))


def test_a_mapping_rule_names_signed_repositories() -> None:
    doc = {
        "version": 1,
        "rules": [
            {
                "pattern": "registry.example/mirror/*",
                "policy": "policies/team.json",
                "signedRepositories": ["ghcr.io/o/app"],
            }
        ],
    }
    mapping = Mapping.from_dict(doc)
    rule = mapping.lookup("registry.example/mirror/app:v1")
    assert rule is not None and rule.signed_repositories == ("ghcr.io/o/app",)
    assert Mapping.from_json(mapping.to_json()) == mapping  # round trip
    assert mapping.to_dict()["rules"][0]["signedRepositories"] == ["ghcr.io/o/app"]


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        ("ghcr.io/o/app", "must be a list"),
        (["alpine"], "must be normalised names"),
        (["ghcr.io/o/app:v1"], "names a tag or digest"),
    ],
)
def test_a_bad_mapping_rule_is_a_trust_error(names: object, fragment: str) -> None:
    doc = {
        "version": 1,
        "rules": [{"pattern": "r.example/m/*", "policy": "p.json", "signedRepositories": names}],
    }
    with pytest.raises(TrustError, match=fragment):
        Mapping.from_dict(doc)


def test_rules_differing_only_in_signed_repositories_overlap() -> None:
    mapping = (
        Mapping()
        .with_rule("r.example/m/*", "p.json", ("ghcr.io/o/app",))
        .with_rule("r.example/m/app", "p.json")
    )
    assert [o.example for o in mapping.overlaps()] == ["r.example/m/app"]


def test_flags_policy_and_rule_add_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPK_SIGN_TRUST_DIR", str(tmp_path / "none"))
    policy = policy_from_document({"repository": "o/app", "signed-repository": "quay.io/o/app"})
    options = build_verify_options(
        policy=policy, signed_in=["ghcr.io/o/app", "quay.io/o/app"], jwks_file=None
    )
    assert not callable(options)
    assert options.signed_repositories == ("ghcr.io/o/app", "quay.io/o/app")
    with pytest.raises(UsageError, match="--signed-repository"):
        build_verify_options(policy=policy, signed_in=["ghcr.io/o/app:v1"])
