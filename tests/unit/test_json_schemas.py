"""The JSON documents of `sign`, `verify`, `inspect` and `download` (``-o json``; download's is
also the offline kit's ``opk-sign/kit.json``, with ``digests``) against their published schemas
(docs/schemas/*.schema.json, draft 2020-12): each schema is valid, the documents the real
formatting code produces validate, ``image``/``reference``/``digest`` mean one thing everywhere,
and verify's outcome and exit-code enums are exactly opk_sign.verify.outcome.Outcome's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from opk_sign.bundle import SIGNATURE_ARTIFACT_TYPE
from opk_sign.cli.main import main
from opk_sign.cli.verify import render
from opk_sign.identity import SHOWN_CLAIMS, SignerIdentity
from opk_sign.oci import mediatypes
from opk_sign.oci.descriptor import Descriptor, Platform
from opk_sign.oci.inspect import ImageTree, TreeNode
from opk_sign.oci.reference import Reference
from opk_sign.sign.image import Attestation, SignedManifest, SigningResult
from opk_sign.verify.kit import (
    JWKS_ARCHIVE_FILE,
    JWKS_FILE,
    KIT_MEDIA_TYPE,
    POLICY_FILE,
    TLOG_KEYS_FILE,
    TSA_CERTS_FILE,
    KitReport,
)
from opk_sign.verify.outcome import BundleCheck, ImageResult, ManifestResult, Outcome
from tests.unit.attacks.world import DIGEST, PROVENANCE, REFERENCE, REPOSITORY, dump, world

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
#: What every document means by these keys (one definition, copied into each schema).
SHARED = ("image", "reference", "digest")
#: The commands whose ``-o json`` document has a schema (named <command>.schema.json).
COMMANDS = ("sign", "verify", "inspect", "download")
A, B, C, D = ("sha256:" + c * 64 for c in "abcd")


def schema(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return document


def valid(document: Any, name: str) -> None:
    jsonschema.Draft202012Validator(schema(name)).validate(document)


def invalid(document: Any, name: str) -> None:
    assert not jsonschema.Draft202012Validator(schema(name)).is_valid(document), document


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_every_schema_is_a_valid_draft_2020_12_schema(path: Path) -> None:
    document = json.loads(path.read_text())
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)


def test_the_commands_have_schemas() -> None:
    assert set(COMMANDS) <= {p.name.split(".")[0] for p in SCHEMAS.iterdir()}


def test_image_reference_and_digest_mean_the_same_in_every_document() -> None:
    definitions: dict[str, tuple[str, Any]] = {}
    checked: set[str] = set()
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        document = json.loads(path.read_text())
        if "image" not in document.get("properties", {}):
            continue
        checked.add(path.name.split(".")[0])
        for key in SHARED:
            definitions.setdefault(key, (path.name, document["$defs"][key]))
            first, definition = definitions[key]
            assert document["$defs"][key] == definition, f"{path.name} vs {first}: {key}"
            assert key in document["required"], (path.name, key)
            assert f"#/$defs/{key}" in json.dumps(document["properties"][key]), (path.name, key)
    assert set(definitions) == set(SHARED)
    assert set(COMMANDS) <= checked


# --- verify --------------------------------------------------------------------------------------


def test_verify_enums_are_the_outcomes_labels_and_exit_codes() -> None:
    defs = schema("verify")["$defs"]
    assert defs["outcome"]["enum"] == [o.label for o in Outcome]
    assert set(defs["exitCode"]["enum"]) == {o.exit_code for o in Outcome}
    assert defs["exitCode"]["enum"] == [0, 2, 10, 11, 12, 13, 14, 15]
    assert defs["identity"]["propertyNames"]["enum"] == list(SHOWN_CLAIMS)


def verified_result(image: str = f"{REFERENCE}:v1") -> ImageResult:
    claims = {"iss": "https://token.actions.githubusercontent.com", "repository": REPOSITORY}
    checks = (
        BundleCheck(B, "signature", Outcome.INVALID, error="replayed", error_type="PolicyError"),
        BundleCheck(C, "signature", Outcome.VERIFIED, claims=claims),
        BundleCheck(D, "attestation", Outcome.VERIFIED, claims=claims, predicate_type=PROVENANCE),
    )
    index = ManifestResult(A, mediatypes.OCI_INDEX, None, Outcome.VERIFIED, "verified", checks)
    platform = ManifestResult(
        B, mediatypes.OCI_MANIFEST, "linux/arm64/v8", Outcome.VERIFIED, "verified", checks
    )
    return ImageResult(image, Outcome.VERIFIED, "verified", REFERENCE, A, (index, platform), 0.1)


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.label)
@pytest.mark.parametrize("count", [1, 3], ids=["alone", "batch"])
def test_verify_documents_of_every_outcome_validate(outcome: Outcome, count: int) -> None:
    if outcome is Outcome.VERIFIED:
        result = verified_result()
    else:
        failing = ManifestResult(A, mediatypes.OCI_MANIFEST, None, outcome, "why")
        result = ImageResult(f"{REFERENCE}:v1", outcome, "why", REFERENCE, A, (failing,))
    text = render("json", result, count)
    assert (len(text.splitlines()) == 1) == (count > 1)  # a batch: JSON lines; alone: indented
    document = json.loads(text)
    valid(document, "verify")
    assert document["outcome"] == outcome.label and document["exitCode"] == outcome.exit_code
    invalid({**document, "exitCode": 11 if outcome.exit_code != 11 else 12}, "verify")


def test_verify_document_of_an_unresolved_image_validates() -> None:
    for image, reference in [("not a reference!", None), ("ghcr.io/o/gone:v1", "ghcr.io/o/gone")]:
        result = ImageResult(image, Outcome.NOT_FOUND, "no such image", reference)
        document = json.loads(render("json", result, 1))
        valid(document, "verify")
        assert document["image"] == image and document["digest"] is None


def test_verify_schema_refuses_what_no_verify_prints() -> None:
    document = json.loads(render("json", verified_result(), 1))
    invalid({**document, "verified": False}, "verify")
    invalid({**document, "outcome": "unsigned"}, "verify")
    invalid({**document, "extra": 1}, "verify")
    invalid({**document, "digest": "not-a-digest"}, "verify")
    invalid({**document, "reference": "ghcr.io/O/app:v1"}, "verify")
    invalid({k: v for k, v in document.items() if k != "image"}, "verify")
    invalid({**document, "identity": {"aud": "x"}}, "verify")


def test_verify_cli_documents_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real CLI, offline (bundle files and a JWKS file, no network): verified, verified with an
    attestation, missing attestation, policy mismatch; ``image`` exactly as given."""
    signature, attestation, jwks = (tmp_path / n for n in ("sig.json", "att.json", "jwks.json"))
    signature.write_bytes(dump(world().signature))
    attestation.write_bytes(dump(world().attestation))
    jwks.write_text(json.dumps(world().keys.jwks))
    image = f"oci://{REFERENCE}@{DIGEST}"
    offline = [
        *("verify", image, "--jwks", str(jwks), "--no-trust-repo", "--expiry-policy", "never"),
        *("--bundle", str(signature), "-o", "json"),
    ]
    attested = ("--bundle", str(attestation), "--attestation", PROVENANCE)
    cases = [
        (("--repository", REPOSITORY), "verified"),
        (("--repository", REPOSITORY, *attested), "verified"),
        (("--repository", REPOSITORY, "--attestation", PROVENANCE), "missing-attestation"),
        (("--repository", "octo-org/other"), "policy-mismatch"),
    ]
    for extra, outcome in cases:
        code = main([*offline, *extra])
        document = json.loads(capsys.readouterr().out)
        valid(document, "verify")
        assert (document["outcome"], document["exitCode"]) == (outcome, code), extra
        assert document["image"] == image
        assert (document["reference"], document["digest"]) == (REFERENCE, DIGEST)


# --- sign ----------------------------------------------------------------------------------------


def signing_result() -> SigningResult:
    identity = SignerIdentity(
        issuer="https://token.actions.githubusercontent.com",
        subject="repo:o/app:ref:refs/tags/v1",
        repository="o/app",
        job_workflow_ref="o/app/.github/workflows/release.yml@refs/tags/v1",
        run_attempt="1",
    )
    return SigningResult(
        reference=Reference.parse("ghcr.io/o/app:v1").with_digest(A),
        digest=A,
        identity=identity,
        manifests=(
            SignedManifest(A, mediatypes.OCI_INDEX, None, C, is_index=True),
            SignedManifest(
                B, mediatypes.OCI_MANIFEST, "linux/amd64", D, (Attestation(PROVENANCE, C),)
            ),
        ),
    )


def test_sign_document_validates_with_image_as_given() -> None:
    document = signing_result().to_dict(image="oci://ghcr.io/o/app:v1")
    valid(json.loads(json.dumps(document)), "sign")
    assert document["image"] == "oci://ghcr.io/o/app:v1"
    assert document["reference"] == "ghcr.io/o/app"
    assert document["digest"] == A
    # The library's default, for callers that did not keep what was given: the pinned reference.
    assert signing_result().to_dict()["image"] == f"ghcr.io/o/app:v1@{A}"
    valid(signing_result().to_dict(), "sign")


def test_sign_schema_claims_are_the_signer_identity_members() -> None:
    claims = schema("sign")["properties"]["claims"]
    assert claims["propertyNames"]["enum"] == [f.name for f in dataclasses.fields(SignerIdentity)]


def test_sign_schema_refuses_the_old_shape() -> None:
    document = signing_result().to_dict(image="ghcr.io/o/app:v1")
    invalid({**document, "reference": f"ghcr.io/o/app:v1@{A}"}, "sign")
    invalid({k: v for k, v in document.items() if k != "image"}, "sign")


# --- inspect -------------------------------------------------------------------------------------


def image_tree() -> ImageTree:
    signature = Descriptor(
        mediatypes.OCI_MANIFEST,
        D,
        600,
        annotations={"dev.opk-sign.repository": "o/app"},
        artifact_type=SIGNATURE_ARTIFACT_TYPE,
    )
    platform = Descriptor(
        mediatypes.OCI_MANIFEST, B, 500, platform=Platform("linux", "arm64", "v8")
    )
    root = TreeNode(
        Descriptor(mediatypes.OCI_INDEX, A, 700),
        manifests=[TreeNode(platform, referrers=[TreeNode(signature)])],
        referrers=[TreeNode(dataclasses.replace(signature, digest=C, extra={"x-new": 1}))],
    )
    return ImageTree(Reference.parse("ghcr.io/o/app:v1"), root)


def test_inspect_document_validates_with_image_as_given() -> None:
    document = image_tree().to_dict(image="ghcr.io/o/app:v1")
    valid(json.loads(json.dumps(document)), "inspect")
    assert (document["image"], document["reference"]) == ("ghcr.io/o/app:v1", "ghcr.io/o/app")
    assert document["digest"] == A
    assert document["manifests"][0]["platform"] == "linux/arm64/v8"
    invalid({**document, "manifests": [{"digest": B}]}, "inspect")
    invalid({k: v for k, v in document.items() if k != "reference"}, "inspect")


# --- download (and kit.json) ---------------------------------------------------------------------

ALL_FILES = {
    "jwks": JWKS_FILE,
    "jwksArchive": JWKS_ARCHIVE_FILE,
    "tsaCertificates": TSA_CERTS_FILE,
    "tlogKeys": TLOG_KEYS_FILE,
    "policy": POLICY_FILE,
}


def kit_report(*, policy: bool = True) -> KitReport:
    return KitReport(
        image="ghcr.io/o/app:v1",
        reference="ghcr.io/o/app",
        digest=A,
        directory=Path("app-kit"),
        issuer="https://token.actions.githubusercontent.com",
        manifests=[
            {"digest": A, "mediaType": mediatypes.OCI_INDEX, "platform": None},
            {"digest": B, "mediaType": mediatypes.OCI_MANIFEST, "platform": "linux/arm64/v8"},
        ],
        bundles=3,
        skipped=[f"{C}: expected one layer of type application/vnd.dev.opk-sign.bundle"],
        files=dict(ALL_FILES) if policy else {"jwks": JWKS_FILE},
        policy={
            "rule": "ghcr.io/o/**",
            "policy": "policies/o.json",
            "signedName": "ghcr.io/o/app",
            "signedRepositories": ["registry.example/o/app"],
        }
        if policy
        else None,
    )


def test_download_schema_names_the_kit_files() -> None:
    properties = schema("download")["properties"]
    assert properties["mediaType"]["const"] == KIT_MEDIA_TYPE
    files = properties["files"]["properties"]
    assert {name: member["const"] for name, member in files.items()} == ALL_FILES
    names = ["oci-layout", "index.json", *ALL_FILES.values()]
    assert properties["digests"]["propertyNames"]["enum"] == names


@pytest.mark.parametrize("policy", [True, False], ids=["policy", "no-policy"])
def test_download_document_validates(policy: bool) -> None:
    report = kit_report(policy=policy)
    document = json.loads(json.dumps(report.to_dict()))
    valid(document, "download")
    assert ("policy" in document) is policy
    assert document["verifyCommand"] == f"opk-sign verify --from-dir app-kit ghcr.io/o/app@{A}"
    # An image with no platform manifests, no bundles, nothing skipped, no trust files.
    bare = KitReport("app", "docker.io/library/app", A, Path("k"), "https://issuer.example")
    bare.manifests.append({"digest": A, "mediaType": mediatypes.OCI_MANIFEST, "platform": None})
    valid(bare.to_dict(), "download")


def test_kit_json_with_digests_validates() -> None:
    document = kit_report().to_dict()
    digests = {"oci-layout": A, "index.json": B, JWKS_FILE: C, POLICY_FILE: D}
    valid({**document, "digests": digests}, "download")
    valid({**document, "digests": {"oci-layout": A, "index.json": B}}, "download")


def test_download_schema_refuses_what_no_download_writes() -> None:
    document = kit_report().to_dict()
    for key in ("mediaType", "image", "reference", "digest", "files", "verifyCommand"):
        invalid({k: v for k, v in document.items() if k != key}, "download")
    invalid({**document, "extra": 1}, "download")
    invalid({**document, "mediaType": "application/json"}, "download")
    invalid({**document, "reference": "ghcr.io/o/app:v1"}, "download")
    invalid({**document, "digest": "not-a-digest"}, "download")
    invalid({**document, "downloaded": "2025-01-02T03:04:05+00:00"}, "download")
    invalid({**document, "bundles": -1}, "download")
    invalid({**document, "bundles": "3"}, "download")
    invalid({**document, "manifests": []}, "download")
    invalid(
        {**document, "manifests": [{"digest": A, "mediaType": mediatypes.OCI_INDEX}]}, "download"
    )
    invalid({**document, "skipped": [{"digest": C}]}, "download")
    invalid({**document, "files": {"jwks": "/etc/jwks.json"}}, "download")
    invalid({**document, "files": {"kit": "opk-sign/kit.json"}}, "download")
    invalid({**document, "verifyCommand": "rm -rf /"}, "download")
    invalid(
        {**document, "policy": {**document["policy"], "signedName": "ghcr.io/O/app"}}, "download"
    )
    invalid({**document, "policy": {"rule": "ghcr.io/o/**"}}, "download")
    invalid({**document, "digests": {"oci-layout": A}}, "download")  # index.json always listed
    invalid({**document, "digests": {"oci-layout": A, "index.json": "x"}}, "download")
    digests = {"oci-layout": A, "index.json": B, "opk-sign/kit.json": C}
    invalid({**document, "digests": digests}, "download")  # kit.json cannot list itself


# --- BuildKit attestation manifests (issue 17) ---------------------------------------------------


def test_buildkit_documents_validate() -> None:
    """inspect's attestation manifests under their platform, verify's BuildKit evidence, sign's
    attestation manifests signed with --attestation-manifests."""
    attestation = Descriptor(
        mediatypes.OCI_MANIFEST,
        C,
        836,
        annotations={
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": B,
        },
        platform=Platform("unknown", "unknown"),
    )
    platform = Descriptor(mediatypes.OCI_MANIFEST, B, 500, platform=Platform("linux", "amd64"))
    node = TreeNode(attestation, predicate_types=[PROVENANCE, "https://spdx.dev/Document"])
    tree = ImageTree(
        Reference.parse("ghcr.io/o/app:v1"),
        TreeNode(
            Descriptor(mediatypes.OCI_INDEX, A, 700),
            manifests=[TreeNode(platform, attestations=[node])],
        ),
    )
    document = tree.to_dict()
    valid(json.loads(json.dumps(document)), "inspect")
    assert document["manifests"][0]["attestations"][0]["predicateTypes"][0] == PROVENANCE

    evidence = {
        "attestationManifest": C,
        "coveredBy": "index-signature",
        "signature": A,
        "layer": D,
        "statementType": "https://in-toto.io/Statement/v1",
        "source": {"repository": "https://github.com/o/app.git", "commit": "a" * 40, "from": "vcs"},
    }
    check = BundleCheck(C, "attestation", Outcome.VERIFIED, predicate_type=PROVENANCE)
    manifest = ManifestResult(
        B,
        mediatypes.OCI_MANIFEST,
        "linux/amd64",
        Outcome.VERIFIED,
        "verified",
        (dataclasses.replace(check, buildkit=evidence),),
    )
    result = ImageResult(
        "ghcr.io/o/app:v1", Outcome.VERIFIED, "ok", "ghcr.io/o/app", A, (manifest,)
    )
    valid(json.loads(json.dumps(result.to_dict())), "verify")
    bad = dataclasses.replace(check, buildkit={**evidence, "coveredBy": "annotation"})
    invalid(
        dataclasses.replace(
            result, manifests=(dataclasses.replace(manifest, checks=(bad,)),)
        ).to_dict(),
        "verify",
    )

    signed = signing_result()
    with_attestation = dataclasses.replace(
        signed,
        manifests=(
            *signed.manifests,
            SignedManifest(C, mediatypes.OCI_MANIFEST, None, D, attestation_for=B),
        ),
    )
    valid(json.loads(json.dumps(with_attestation.to_dict())), "sign")


def test_verified_transparency_log_entries_are_in_the_schema_and_the_text() -> None:
    from opk_sign.tlog.verify import VerifiedLogEntry
    from opk_sign.verify.outcome import format_result

    entry = VerifiedLogEntry("log.example/2026", 41, 42, {"w2.example": 2, "w1.example": 1})
    assert entry.to_dict() == {
        "origin": "log.example/2026",
        "logIndex": 41,
        "treeSize": 42,
        "witnesses": ["w1.example", "w2.example"],
    }
    logged = BundleCheck(
        C,
        "signature",
        Outcome.VERIFIED,
        claims={"repository": REPOSITORY},
        transparency_log=(entry.to_dict(),),
    )
    manifest = ManifestResult(B, mediatypes.OCI_MANIFEST, None, Outcome.VERIFIED, "ok", (logged,))
    result = ImageResult(f"{REFERENCE}:v1", Outcome.VERIFIED, "ok", REFERENCE, B, (manifest,))
    document = json.loads(json.dumps(result.to_dict()))
    valid(document, "verify")
    assert document["manifests"][0]["bundles"][0]["transparencyLog"][0]["logIndex"] == 41
    text = format_result(result)
    assert (
        "logged:         signature in log.example/2026, entry 41 of 42, cosigned by w1.example, "
        "w2.example"
    ) in text
    # Not logged (or no log key trusted): no key at all, nothing in the text.
    plain = dataclasses.replace(logged, transparency_log=())
    assert "transparencyLog" not in plain.to_dict()
    shown = dataclasses.replace(result, manifests=(dataclasses.replace(manifest, checks=(plain,)),))
    assert "logged:" not in format_result(shown)
    # A malformed entry is not what the schema promises.
    broken = dataclasses.replace(logged, transparency_log=({"origin": "x", "logIndex": -1},))
    invalid(
        dataclasses.replace(
            result, manifests=(dataclasses.replace(manifest, checks=(broken,)),)
        ).to_dict(),
        "verify",
    )
