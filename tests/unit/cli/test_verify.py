"""The verify command's pure parts: policy from flags and files, image lists, outcomes, VSA."""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

import pytest

from opk_sign.cli.main import build_parser
from opk_sign.cli.options import build_policy
from opk_sign.cli.verify import format_summary, read_images
from opk_sign.errors import PolicyError, TrustError, UsageError
from opk_sign.http import HTTPConfig, new_session
from opk_sign.oci import mediatypes
from opk_sign.oidc.discovery import JWKSCache
from opk_sign.payloads.provenance import SLSA_PROVENANCE_V1
from opk_sign.pktoken import GITHUB_ISSUER
from opk_sign.verify.keys import jwks_from_file
from opk_sign.verify.outcome import BundleCheck, ImageResult, ManifestResult, Outcome
from opk_sign.verify.vsa import VSA_PREDICATE_TYPE, build_vsa

DIGEST = "sha256:" + "ab" * 32
CLAIMS = {
    "iss": GITHUB_ISSUER,
    "repository": "octo-org/app",
    "repository_owner": "octo-org",
    "ref": "refs/tags/v1",
}


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["verify", *argv])


def test_policy_from_flags_includes_the_issuer_and_each_flag() -> None:
    policy = build_policy(
        parse("img", "--repository", "octo-org/app", "--ref-regex", "refs/tags/.*")
    )
    policy.verify(CLAIMS)
    assert "iss == 'https://token.actions.githubusercontent.com'" in policy.describe()
    with pytest.raises(PolicyError, match="claim 'ref' is 'refs/heads/main'"):
        policy.verify({**CLAIMS, "ref": "refs/heads/main"})
    with pytest.raises(PolicyError, match="claim 'iss'"):
        policy.verify({**CLAIMS, "iss": "https://evil.example"})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("img",), "no identity policy"),
        (("img", "--issuer", GITHUB_ISSUER), "no identity policy"),
        (("img", "--repository", ""), "empty"),
        (("img", "--repository-regex", "("), "invalid regular expression"),
    ],
    ids=["no-flags", "issuer-only", "empty-value", "bad-regex"],
)
def test_policy_flags_that_would_accept_anyone_are_refused(
    argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        build_policy(parse(*argv))


def test_policy_file_yaml_and_not_both(tmp_path: Path) -> None:
    file = tmp_path / "policy.yml"
    file.write_text(
        "repository: octo-org/app\nany-of:\n  - ref: refs/heads/main\n  - ref-type: tag\n"
    )
    policy = build_policy(parse("img", "--policy", str(file)))
    policy.verify({**CLAIMS, "ref_type": "tag"})
    with pytest.raises(PolicyError, match="0 of 2 alternative"):
        policy.verify({**CLAIMS, "ref_type": "branch"})
    with pytest.raises(UsageError, match="not both"):
        build_policy(parse("img", "--policy", str(file), "--repository", "x/y"))
    file.write_text("repository: [unclosed")
    with pytest.raises(UsageError, match="not valid YAML"):
        build_policy(parse("img", "--policy", str(file)))
    with pytest.raises(UsageError, match="cannot read"):
        build_policy(parse("img", "--policy", str(tmp_path / "missing.yml")))


def test_images_from_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    file = tmp_path / "images.txt"
    file.write_text("# fleet\n\na:1\n  b@sha256:" + "0" * 64 + "  # pinned\n")
    assert read_images(parse("x", "--images-from", str(file))) == [
        "x",
        "a:1",
        "b@sha256:" + "0" * 64,
    ]
    with pytest.raises(UsageError, match="no images"):
        read_images(parse())


def test_the_worst_outcome_decides() -> None:
    assert Outcome.worst([]) is Outcome.VERIFIED
    assert Outcome.worst([Outcome.VERIFIED, Outcome.NO_SIGNATURES]) is Outcome.NO_SIGNATURES
    assert Outcome.worst([Outcome.POLICY_MISMATCH, Outcome.NO_SIGNATURES]).exit_code == 11
    assert (
        Outcome.worst([Outcome.INVALID, Outcome.REGISTRY_ERROR, Outcome.VERIFIED]).exit_code == 13
    )
    assert Outcome.worst([Outcome.TRUST_ERROR, Outcome.REGISTRY_ERROR]).exit_code == 14


def _verified(*, provenance: bool) -> ImageResult:
    checks = [BundleCheck("sha256:" + "11" * 32, "signature", Outcome.VERIFIED, claims=CLAIMS)]
    if provenance:
        checks.append(
            BundleCheck(
                "sha256:" + "22" * 32,
                "attestation",
                Outcome.VERIFIED,
                claims=CLAIMS,
                predicate_type=SLSA_PROVENANCE_V1,
            )
        )
    manifest = ManifestResult(
        DIGEST, mediatypes.OCI_MANIFEST, None, Outcome.VERIFIED, "ok", tuple(checks)
    )
    return ImageResult("r/app:v1", Outcome.VERIFIED, "verified", "r/app", DIGEST, (manifest,))


def test_vsa_records_subject_inputs_and_level() -> None:
    statement = build_vsa(_verified(provenance=True), policy="repository == 'octo-org/app'")
    doc = json.loads(statement.raw)
    assert doc["predicateType"] == VSA_PREDICATE_TYPE
    assert doc["subject"] == [{"name": "r/app", "digest": {"sha256": "ab" * 32}}]
    predicate = doc["predicate"]
    assert predicate["resourceUri"] == f"oci://r/app@{DIGEST}"
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["verifiedLevels"] == ["SLSA_BUILD_LEVEL_2"]
    assert [i["digest"]["sha256"] for i in predicate["inputAttestations"]] == ["11" * 32, "22" * 32]
    # A signature alone proves who signed, not how it was built: no level is claimed.
    bare = json.loads(build_vsa(_verified(provenance=False), policy="p").raw)
    assert bare["predicate"]["verifiedLevels"] == []
    failed = ImageResult("r/app:v1", Outcome.NO_SIGNATURES, "none", "r/app", DIGEST)
    with pytest.raises(ValueError, match="only for a verified image"):
        build_vsa(failed, policy="p")


def test_summary_table_counts_verified_images() -> None:
    failed = ImageResult("r/other:v1", Outcome.POLICY_MISMATCH, "no")
    text = format_summary([_verified(provenance=False), failed])
    assert "1 of 2 images verified" in text
    assert "policy-mismatch" in text and "11" in text


def test_live_jwks_asks_an_unreachable_issuer_once() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    keys = JWKSCache(new_session(HTTPConfig(retries=0)))
    for _ in range(3):
        with pytest.raises(TrustError, match="could not fetch"):
            keys.op_key(f"http://127.0.0.1:{port}", "kid", 0)
    assert keys.fetches == 1


def test_jwks_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the JWKS file"):
        jwks_from_file(tmp_path / "missing.json", GITHUB_ISSUER)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TrustError, match="not JSON"):
        jwks_from_file(bad, GITHUB_ISSUER)
    bad.write_text('{"keys": 1}')
    with pytest.raises(TrustError, match="'keys' list"):
        jwks_from_file(bad, GITHUB_ISSUER)
