"""A policy must say who signed, in every alternative (issue 11, class 1): claims that any
repository on GitHub satisfies (ref, event, environment ...) never make a policy on their own, a
regex counts only if it cannot match every repository, and the rule holds wherever a policy is
made: flags, policy files, each any-of branch, the verify action, `trust repo set-policy` and a
policy delivered through TUF (exit 14 there, never a pass)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from opk_sign.actions import verify as verify_action
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_TRUST, EXIT_USAGE, PolicyError, TrustError, UsageError
from opk_sign.pktoken import GITHUB_ISSUER
from opk_sign.policy import (
    ClaimPolicy,
    matches_anything,
    pins_signer,
    policy_from_document,
    policy_from_fields,
)
from opk_sign.trust.client import TrustClient
from opk_sign.verify.options import VerifyOptions, build_verify_options

GHES = "https://ghes.example.com/_services/token"
NOT_PINNING = {
    "ref": "refs/heads/main",
    "ref-type": "tag",
    "sha": "a" * 40,
    "event": "push",
    "runner-environment": "github-hosted",
    "environment": "production",
}
PINNING = {
    "repository": "octo-org/app",
    "repository-id": "123",
    "owner": "octo-org",
    "owner-id": "456",
    "signer-workflow": "octo-org/app/.github/workflows/release.yml@refs/tags/v1",
    "workflow-ref": "octo-org/app/.github/workflows/release.yml@refs/tags/v1",
    "subject": "repo:octo-org/app:ref:refs/tags/v1",
}
BROAD_REGEXES = [
    ("repository", ".*"),
    ("repository", ".+"),
    ("repository", "[^/]+/.*"),
    ("repository", ".*/.*"),
    ("repository", "(?s).*"),
    ("repository", "[\\s\\S]*"),
    ("owner", ".+"),
    ("owner", "[A-Za-z0-9._-]+"),
    ("signer-workflow", ".*"),
    ("signer-workflow", ".*/.github/workflows/.*"),
    ("workflow-ref", ".+@.+"),
    ("repository-id", "[0-9]+"),
    ("owner-id", "\\d+"),
    ("subject", "repo:.*"),
    # Found by red-teaming a sampling check: each matches every repository of a common kind.
    ("owner", "[A-Za-z0-9-]+"),
    ("owner", "octo-.*"),
    ("repository", "(?i)[a-z0-9-]+/.+"),
    ("repository", "[^A-Z].*"),
    ("repository", "octo-org.*"),
    ("repository", "octo-org/app|.*"),
    ("repository", "octo-org/octo-repo\x7c[^A-Z].*"),
    ("repository-id", "\\d{9,}"),
    ("subject", "repo:.*:ref:refs/tags/.*"),
    ("subject", "repo:.*:pull_request"),
    ("signer-workflow", "[^@]*@refs/heads/main"),
    ("signer-workflow", ".*@refs/tags/v.*"),
    ("workflow-ref", ".*/release\\.yml@.*"),
]
NARROW_REGEXES = [
    ("repository", "octo-org/.*"),
    ("repository", "octo-org/(app|api)"),
    ("owner", "octo-(org|labs)"),
    ("signer-workflow", "octo-org/app/[.]github/workflows/release[.]yml@refs/tags/v.*"),
    ("subject", "repo:octo-org/app:.*"),
    ("repository", "(?i)octo-org/.*"),
    ("repository", "(octo-org|octo-labs)/app"),
    ("repository", "^octo\\-org/[a-z]+$"),
    ("repository-id", "(123|456)"),
]


@pytest.mark.parametrize(("name", "value"), sorted(NOT_PINNING.items()))
def test_a_claim_any_repository_has_is_no_policy(name: str, value: str) -> None:
    with pytest.raises(UsageError) as caught:
        policy_from_fields({name: value})
    assert "names no signer" in caught.value.message
    assert "repository" in (caught.value.hint or "")


@pytest.mark.parametrize(("name", "value"), sorted(PINNING.items()))
def test_each_pinning_claim_makes_a_policy(name: str, value: str) -> None:
    assert pins_signer(policy_from_fields({name: value}))
    assert pins_signer(policy_from_fields({name: value, **NOT_PINNING}))


@pytest.mark.parametrize(("name", "pattern"), BROAD_REGEXES)
def test_a_regex_that_matches_any_repository_names_no_signer(name: str, pattern: str) -> None:
    with pytest.raises(UsageError) as caught:
        policy_from_fields({f"{name}-regex": pattern, "ref": "refs/heads/main"})
    assert f"/{pattern}/ matches the" in caught.value.message or "invalid" in caught.value.message


@pytest.mark.parametrize(("name", "pattern"), NARROW_REGEXES)
def test_a_regex_naming_repositories_counts(name: str, pattern: str) -> None:
    assert pins_signer(policy_from_fields({f"{name}-regex": pattern}))


def test_the_breadth_check_is_deterministic() -> None:
    assert matches_anything(".*", "repository") and not matches_anything("a/b", "repository")
    assert [matches_anything(p, "repository") for p in ("x/.*", ".*")] == [False, True]


@pytest.mark.parametrize(
    ("doc", "branch"),
    [
        ({"ref": "refs/heads/main"}, "ref == 'refs/heads/main'"),
        (
            {"any-of": [{"repository": "octo-org/app"}, {"issuer": GITHUB_ISSUER}]},
            "any-of[1]",
        ),
        (
            {"any-of": [{"repository": "octo-org/app"}, {"event": "push", "ref-type": "tag"}]},
            "any-of[1]",
        ),
        (
            {"any-of": [{"owner": "octo-org"}, {"repository-regex": ".*"}]},
            "any-of[1]",
        ),
        ({"all-of": [{"ref": "refs/heads/main"}, {"event": "push"}]}, "names no signer"),
    ],
)
def test_every_alternative_of_a_policy_file_must_pin(doc: dict[str, Any], branch: str) -> None:
    with pytest.raises(UsageError) as caught:
        policy_from_document(doc)
    assert "names no signer" in caught.value.message and branch in caught.value.message


@pytest.mark.parametrize(
    "doc",
    [
        {"repository": "octo-org/app", "any-of": [{"ref": "refs/heads/main"}, {"event": "push"}]},
        {"any-of": [{"repository": "octo-org/app"}, {"owner": "octo-labs", "ref-type": "tag"}]},
        {"all-of": [{"ref": "refs/heads/main"}, {"owner-id": "456"}]},
    ],
)
def test_policies_that_pin_every_alternative_are_accepted(doc: dict[str, Any]) -> None:
    assert pins_signer(policy_from_document(doc))


def test_cli_refuses_with_exit_2_naming_what_to_add(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", "registry.example/o/app@sha256:" + "a" * 64, "--ref", "refs/heads/x"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert ("names no signer" in err and "--repository" not in err) or "repository" in err


def test_cli_refuses_a_policy_file_with_an_open_branch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text("any-of:\n  - repository: octo-org/app\n  - ref: refs/heads/main\n")
    code = main(["verify", "registry.example/o/app:v1", "--policy", str(policy)])
    assert code == EXIT_USAGE
    assert "any-of[1]" in capsys.readouterr().err


def test_the_verify_action_refuses_too() -> None:
    variables = {"INPUT_IMAGES": "ghcr.io/o/app:v1", "INPUT_EVENT": "push"}
    with mock.patch.dict(os.environ, variables, clear=True):
        inputs = verify_action.read_inputs()
    with pytest.raises(UsageError, match="names no signer"):
        verify_action.verification(inputs, {})


def test_a_policy_from_tuf_that_names_no_signer_is_a_trust_error() -> None:
    client = object.__new__(TrustClient)
    with (
        mock.patch.object(TrustClient, "policy_document", return_value={"ref": "refs/heads/main"}),
        pytest.raises(TrustError) as caught,
    ):
        client.policy("policies/p.json")
    assert caught.value.exit_code == EXIT_TRUST
    assert "names no signer" in caught.value.message


def test_the_issuer_a_policy_names_is_trusted() -> None:
    policy = policy_from_document({"issuer": GHES, "repository": "octo-org/app"})
    options = build_verify_options(policy=policy, trust_repository=False)
    assert isinstance(options, VerifyOptions)
    assert GHES in options.issuers
    # ... and only a token of that issuer can satisfy it.
    assert ClaimPolicy("iss", GHES) in list(policy.policies)


def test_a_pattern_nested_too_deeply_is_a_usage_error_not_a_traceback() -> None:
    pattern = "(" * 5000 + "octo-org/app" + ")" * 5000
    with pytest.raises(UsageError):
        policy_from_fields({"repository-regex": pattern})
    with pytest.raises(UsageError, match="longer than"):
        policy_from_fields({"repository-regex": "octo-org/" + "a" * 2000})


def test_signer_workflow_without_a_ref_matches_that_file_at_any_ref() -> None:
    # gh's habit (issue 12): owner, repository and path exact, any ref.
    workflow = "octo-org/app/.github/workflows/release.yml"
    policy = policy_from_fields({"signer-workflow": workflow})
    assert pins_signer(policy)
    base = {"iss": GITHUB_ISSUER}
    for ref in ("refs/tags/v1", "refs/heads/main"):
        policy.verify({**base, "job_workflow_ref": f"{workflow}@{ref}"})
    for other in (
        "octo-org/app/.github/workflows/release.yml.evil@refs/tags/v1",
        "octo-org/app/.github/workflows/releaseXyml@refs/tags/v1",
        "evil/app/.github/workflows/release.yml@refs/tags/v1",
        f"{workflow}",
    ):
        with pytest.raises(PolicyError):
            policy.verify({**base, "job_workflow_ref": other})
    exact = policy_from_document({"signer-workflow": f"{workflow}@refs/tags/v1"})
    with pytest.raises(PolicyError):
        exact.verify({**base, "job_workflow_ref": f"{workflow}@refs/heads/main"})
