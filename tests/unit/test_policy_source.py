"""The policy fields source-repository and source-commit (issue 17): top level only, strings,
carried into VerifyOptions.source; flags say the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from opk_sign.errors import UsageError
from opk_sign.payloads.buildkit import SourceRequirement
from opk_sign.pktoken import StaticJWKS
from opk_sign.policy import policy_from_document
from opk_sign.verify.options import VerifyOptions, build_policy, build_verify_options

COMMIT = "e" * 40
REPO = "https://github.com/docker-library/busybox.git"


def test_policy_file_fields(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text(
        f"repository: docker-library/busybox\nsource-repository: {REPO}\nsource-commit: '{COMMIT}'\n"
    )
    policy = build_policy(policy_file=path)
    assert policy is not None and policy.source == {
        "source-repository": REPO,
        "source-commit": COMMIT,
    }
    options = build_verify_options(
        policy=policy, keys=StaticJWKS("https://x", {"keys": []}), trust_repository=False
    )
    assert isinstance(options, VerifyOptions)
    assert options.source == SourceRequirement(REPO, COMMIT)


def test_flags_and_none() -> None:
    policy = policy_from_document({"repository": "o/app"})
    keys = StaticJWKS("https://x", {"keys": []})
    options = build_verify_options(
        policy=policy, keys=keys, trust_repository=False, source_commit=COMMIT
    )
    assert isinstance(options, VerifyOptions) and options.source == SourceRequirement(None, COMMIT)
    plain = build_verify_options(policy=policy, keys=keys, trust_repository=False)
    assert isinstance(plain, VerifyOptions) and plain.source is None
    with pytest.raises(UsageError, match="full lowercase Git commit"):
        build_verify_options(policy=policy, keys=keys, trust_repository=False, source_commit="x")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"repository": "o/app", "any-of": [{"ref": "x", "source-commit": COMMIT}]}, "at the top"),
        ({"repository": "o/app", "source-commit": 5}, "must be a non-empty string"),
        ({"repository": "o/app", "source-repository": ""}, "must be a non-empty string"),
    ],
)
def test_refused(document: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        policy_from_document(document)
