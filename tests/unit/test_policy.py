"""Identity policies: one refusal per claim, naming the claim and the value seen."""

from __future__ import annotations

import pytest

from opk_sign._dev.github_oidc import github_claims
from opk_sign.errors import PolicyError, UsageError
from opk_sign.pktoken import GITHUB_ISSUER
from opk_sign.policy import (
    FIELDS,
    AllOf,
    AnyOf,
    ClaimPolicy,
    policy_from_document,
    policy_from_fields,
)

CLAIMS = github_claims(
    "aud",
    issuer=GITHUB_ISSUER,
    repository="octo-org/app",
    job_workflow_ref="octo-org/opk-sign/.github/workflows/sign.yml@refs/tags/v1",
    environment="production",
)


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_each_field_accepts_the_signer_and_refuses_another(field: str) -> None:
    claim = FIELDS[field]
    seen = str(CLAIMS[claim])
    policy_from_fields({"repository": "octo-org/app", field: seen}).verify(CLAIMS)
    with pytest.raises(PolicyError, match=f"claim '{claim}' is {seen!r}; the policy requires 'x"):
        policy_from_fields({"repository": "octo-org/app", field: "x" + seen}).verify(CLAIMS)


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_each_field_regex_is_anchored(field: str) -> None:
    claim = FIELDS[field]
    seen = str(CLAIMS[claim])
    policy_from_fields({"repository": "octo-org/app", f"{field}-regex": ".*"}).verify(CLAIMS)
    # A pattern that matches only a substring must fail: the match is anchored at both ends.
    with pytest.raises(PolicyError, match=f"claim '{claim}'"):
        policy_from_fields({"repository": "octo-org/app", f"{field}-regex": seen[1:-1]}).verify(
            CLAIMS
        )


def test_missing_claim_is_named() -> None:
    claims = {k: v for k, v in CLAIMS.items() if k != "environment"}
    with pytest.raises(PolicyError, match="claim 'environment' is missing"):
        policy_from_fields({"repository": "octo-org/app", "environment": "production"}).verify(
            claims
        )


def test_issuer_defaults_to_github() -> None:
    policy = policy_from_fields({"repository": "octo-org/app"})
    with pytest.raises(PolicyError, match="claim 'iss'"):
        policy.verify({**CLAIMS, "iss": "https://evil.example"})


@pytest.mark.parametrize("fields", [{}, {"issuer": GITHUB_ISSUER}])
def test_empty_policy_is_refused(fields: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="names no signer|accept any signer"):
        policy_from_fields(fields)
    with pytest.raises(UsageError):
        AllOf([])


def test_unknown_field_and_bad_regex() -> None:
    with pytest.raises(UsageError, match="unknown policy field 'repo'"):
        policy_from_fields({"repo": "x"})
    with pytest.raises(UsageError, match="invalid regular expression"):
        policy_from_fields({"repository-regex": "("})


def test_any_of_reports_every_failure() -> None:
    policy = AnyOf([ClaimPolicy("ref", "refs/heads/release"), ClaimPolicy("ref_type", "tag")])
    with pytest.raises(
        PolicyError, match="0 of 2 alternative policies matched: .*'ref'.*'ref_type'"
    ):
        policy.verify(CLAIMS)
    AnyOf([ClaimPolicy("ref", "refs/heads/main"), ClaimPolicy("ref_type", "tag")]).verify(CLAIMS)


def test_policy_document_composition() -> None:
    doc = {
        "repository": "octo-org/app",
        "any-of": [{"ref": "refs/heads/release"}, {"ref-regex": "refs/heads/ma.*"}],
        "all-of": [{"event": "push"}, {"runner-environment": "github-hosted"}],
    }
    policy = policy_from_document(doc)
    policy.verify(CLAIMS)
    assert "iss == " in policy.describe()
    with pytest.raises(PolicyError, match="'event_name' is 'push'"):
        policy_from_document({**doc, "all-of": [{"event": "release"}]}).verify(CLAIMS)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([], "expected a mapping"),
        ({}, "empty"),
        ({"issuer": GITHUB_ISSUER}, "names no signer"),
        ({"repository": "a/b", "any-of": []}, "non-empty list"),
        ({"repository": 3}, "must be a string"),
    ],
)
def test_policy_document_errors(doc: object, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        policy_from_document(doc)
