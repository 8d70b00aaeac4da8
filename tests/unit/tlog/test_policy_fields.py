"""`transparency: required` in a policy document and in a trust-mapping rule (issue 14)."""

from __future__ import annotations

import pytest

from opk_sign.errors import UsageError
from opk_sign.policy import AllOf, policy_from_document
from opk_sign.trust.mapping import Mapping, Rule
from opk_sign.verify.options import _transparency_required

ISSUER = "https://token.actions.githubusercontent.com"


def test_a_policy_document_can_require_an_entry() -> None:
    policy = policy_from_document(
        {"repository": "octo-org/app", "transparency": "required"}, default_issuer=ISSUER
    )
    assert isinstance(policy, AllOf) and _transparency_required(policy)
    optional = policy_from_document(
        {"repository": "octo-org/app", "transparency": "optional"}, default_issuer=ISSUER
    )
    assert not _transparency_required(optional)
    assert not _transparency_required(
        policy_from_document({"repository": "octo-org/app"}, default_issuer=ISSUER)
    )
    for bad in (
        {"repository": "o/a", "transparency": "yes"},
        {"any-of": [{"repository": "o/a", "transparency": "required"}]},
    ):
        with pytest.raises(UsageError, match="transparency"):
            policy_from_document(bad, default_issuer=ISSUER)


def test_a_mapping_rule_can_require_an_entry() -> None:
    doc = {
        "version": 1,
        "rules": [
            {
                "pattern": "ghcr.io/octo-org/*",
                "policy": "policies/octo.json",
                "transparency": "required",
            },
            {"pattern": "ghcr.io/other/*", "policy": "policies/other.json"},
        ],
    }
    mapping = Mapping.from_dict(doc)
    matched = mapping.lookup("ghcr.io/octo-org/app:v1")
    assert matched is not None and matched.transparency == "required"
    other = mapping.lookup("ghcr.io/other/app")
    assert other is not None and other.transparency is None
    assert Mapping.from_dict(mapping.to_dict()) == mapping
    assert mapping.to_dict()["rules"][0]["transparency"] == "required"
    with pytest.raises(UsageError, match="transparency"):
        Rule("ghcr.io/x/*", "policies/x.json", transparency="always")
