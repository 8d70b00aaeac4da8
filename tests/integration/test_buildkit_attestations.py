"""BuildKit attestation manifests, as Docker Official Images carry them (issue 17, item 1), on a
real registry (olareg, referrers API) with the GitHub OIDC emulator: ``inspect`` shows them under
their platform, ``sign`` signs the index and the platforms only, ``verify --attestation`` is
satisfied through the index's signature, and each tampering is refused with its own error.

The images are laid out by tests/services/buildkit.py (BuildKit's attestation-storage format);
tests/integration/test_buildkit_real.py builds one with buildkitd itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_INVALID_SIGNATURE, EXIT_OK, EXIT_POLICY_MISMATCH, EXIT_REGISTRY
from opk_sign.oci import mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import canonical_json
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.payloads.buildkit import SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1, SPDX_DOCUMENT
from opk_sign.sign.image import SigningOptions, SigningResult, sign_image
from tests.services.buildkit import (
    DEFAULT_COMMIT,
    DEFAULT_REPOSITORY,
    index_entry,
    provenance_predicate,
    push_attestation_manifest,
    push_buildkit_image,
    statement,
)
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, distribution, olareg

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("buildkit")]

REPO = "docker-library/busybox"
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


@pytest.fixture(scope="module")
def emulator() -> Iterator[GitHubOIDCEmulator]:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as running:
        running.set_claims(ref="refs/heads/master", repository=REPO)
        yield running


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with olareg(tmp_path_factory.mktemp("olareg")) as running:
        yield running


def client() -> RegistryClient:
    return RegistryClient(Keychain.anonymous())


def sign(
    emulator: GitHubOIDCEmulator, image: str, options: SigningOptions | None = None
) -> SigningResult:
    provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
    with client() as c:
        return sign_image(image, provider=provider, client=c, options=options or SigningOptions())


def verify(emulator: GitHubOIDCEmulator, *args: str) -> int:
    return main(["verify", "--issuer", emulator.issuer, "--repository", REPO, *args])


def document(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def schema_valid(doc: Any, name: str) -> None:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)


# --- inspect and sign ----------------------------------------------------------------------------


def test_inspect_shows_attestation_manifests_under_their_platform(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = registry.ref("library/inspect", "1")
    with client() as c:
        image = push_buildkit_image(c, ref)

    assert main(["inspect", ref, "--output", "json"]) == EXIT_OK
    doc = document(capsys)
    schema_valid(doc, "inspect")
    assert [m["platform"] for m in doc["manifests"]] == ["linux/amd64", "linux/arm64"]
    for node in doc["manifests"]:
        (attestation,) = node["attestations"]
        assert attestation["digest"] == image.attestations[node["platform"]].digest
        assert attestation["predicateTypes"] == [SLSA_PROVENANCE_V1, SPDX_DOCUMENT]
        # Its `subject` makes it a referrer of the platform too: shown once, as the attestation.
        assert attestation["digest"] not in {r["digest"] for r in node["referrers"]}

    assert main(["inspect", ref]) == EXIT_OK
    text = capsys.readouterr().out
    assert text.count("attestation manifest sha256:") == 2
    assert f"predicate type: {SLSA_PROVENANCE_V1}" in text
    assert "unknown/unknown" not in text


def test_sign_signs_the_index_and_platforms_not_the_attestation_manifests(
    registry: Registry, emulator: GitHubOIDCEmulator
) -> None:
    ref = registry.ref("library/sign", "1")
    with client() as c:
        image = push_buildkit_image(c, ref)

    result = sign(emulator, ref)

    signed = {m.digest for m in result.manifests}
    assert signed == {image.index.digest, *(d.digest for d in image.platforms.values())}
    assert not signed & {d.digest for d in image.attestations.values()}


# --- verify --attestation through the index signature --------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v0.2"])
def test_verify_attestation_passes_through_the_index_signature(
    registry: Registry,
    emulator: GitHubOIDCEmulator,
    capsys: pytest.CaptureFixture[str],
    version: str,
) -> None:
    ref = registry.ref(f"library/verify-{version.replace('.', '')}", "1")
    with client() as c:
        image = push_buildkit_image(c, ref, provenance=version)
    sign(emulator, ref, SigningOptions(provenance=False))  # only BuildKit's attestations
    predicate_type = SLSA_PROVENANCE_V1 if version == "v1" else SLSA_PROVENANCE_V02

    code = verify(
        emulator,
        ref,
        "--attestation",
        predicate_type,
        "--attestation",
        SPDX_DOCUMENT,
        "--source-repository",
        "https://github.com/docker-library/busybox",
        "--source-commit",
        DEFAULT_COMMIT,
        "--output",
        "json",
    )

    doc = document(capsys)
    assert code == EXIT_OK, doc["message"]
    schema_valid(doc, "verify")
    for manifest in doc["manifests"][1:]:
        kinds = {b["predicateType"]: b for b in manifest["bundles"] if b["kind"] == "attestation"}
        provenance = kinds[predicate_type]["buildkit"]
        assert provenance["coveredBy"] == "index-signature"
        assert provenance["signature"] == image.index.digest
        assert provenance["attestationManifest"] == image.attestations[manifest["platform"]].digest
        assert provenance["source"] == {
            "repository": DEFAULT_REPOSITORY,
            "commit": DEFAULT_COMMIT,
            "from": "configSource",
        }
        assert kinds[SPDX_DOCUMENT]["buildkit"]["coveredBy"] == "index-signature"


def test_source_policy_mismatch_is_a_policy_error(
    registry: Registry, emulator: GitHubOIDCEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = registry.ref("library/source", "1")
    with client() as c:
        push_buildkit_image(c, ref)
    sign(emulator, ref, SigningOptions(provenance=False))

    assert verify(emulator, ref, "--source-commit", DEFAULT_COMMIT) == EXIT_OK
    text = capsys.readouterr().out
    assert f"source:         {DEFAULT_REPOSITORY} at {DEFAULT_COMMIT} (configSource)" in text
    wrong = "0" * 40
    assert verify(emulator, ref, "--source-commit", wrong) == EXIT_POLICY_MISMATCH
    assert f"the policy requires {wrong!r}" in capsys.readouterr().out
    other = "https://github.com/evil-org/busybox.git"
    assert verify(emulator, ref, "--source-repository", other) == EXIT_POLICY_MISMATCH
    assert "source repository" in capsys.readouterr().out


# --- tampering -----------------------------------------------------------------------------------


def test_a_tampered_attestation_layer_is_refused(
    registry: Registry, emulator: GitHubOIDCEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = registry.ref("library/tampered", "1")
    with client() as c:
        image = push_buildkit_image(c, ref)
    sign(emulator, ref, SigningOptions(provenance=False))
    layer = image.layers["linux/amd64"][SLSA_PROVENANCE_V1]
    stored = [
        p
        for p in registry.workdir.rglob(layer.digest.split(":")[1])
        if p.is_file() and "blobs" in p.parts
    ]
    assert stored, "the registry's copy of the layer"
    for path in stored:
        data = path.read_bytes()
        path.write_bytes(data.replace(DEFAULT_COMMIT.encode(), b"f" * 40))

    assert verify(emulator, ref, "--attestation", SLSA_PROVENANCE_V1) == EXIT_REGISTRY
    out = capsys.readouterr().out
    assert layer.digest in out and "altered the content" in out


def test_an_attestation_for_another_platform_is_refused(
    registry: Registry, emulator: GitHubOIDCEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """The index says amd64's attestation manifest is arm64's (its annotation rewritten): the
    statement's subject decides, and the index's signature does not make it amd64's."""
    ref = registry.ref("library/swapped", "1")
    with client() as c:
        image = push_buildkit_image(c, ref)
        amd64, arm64 = image.platforms["linux/amd64"], image.platforms["linux/arm64"]
        index = {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [
                amd64.to_dict(),
                arm64.to_dict(),
                index_entry(image.attestations["linux/arm64"], amd64.digest),
                index_entry(image.attestations["linux/arm64"], arm64.digest),
            ],
        }
        c.put_manifest(Reference.parse(ref), canonical_json(index), mediatypes.OCI_INDEX, tag="1")
    sign(emulator, ref, SigningOptions(provenance=False))

    code = verify(emulator, ref, "--attestation", SLSA_PROVENANCE_V1, "--output", "json")
    doc = document(capsys)
    assert code == EXIT_INVALID_SIGNATURE
    failed = next(m for m in doc["manifests"] if m["platform"] == "linux/amd64")
    assert failed["outcome"] == "invalid"
    swapped = image.attestations["linux/arm64"].digest
    (bundle,) = [b for b in failed["bundles"] if b["referrer"] == swapped]
    assert bundle["errorType"] == "PayloadMismatchError"
    assert f"not the platform manifest {amd64.digest}" in bundle["error"]


def test_an_attestation_manifest_missing_from_the_signed_index_needs_its_own_signature(
    registry: Registry, emulator: GitHubOIDCEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Provenance pushed after the index was signed, as a referrer of the platform manifest (the
    subject field): refused until ``sign --attestation-manifests`` signs it."""
    ref = registry.ref("library/later", "1")
    with client() as c:
        image = push_buildkit_image(c, ref, ("linux/amd64",), provenance=None)
    sign(emulator, ref, SigningOptions(provenance=False))
    amd64 = image.platforms["linux/amd64"]
    predicate_type, predicate = provenance_predicate(
        "v1", repository=DEFAULT_REPOSITORY, commit=DEFAULT_COMMIT
    )
    with client() as c:
        later, _ = push_attestation_manifest(
            c,
            Reference.parse(ref),
            amd64,
            [(predicate_type, statement(amd64, "later", predicate_type, predicate))],
        )

    code = verify(emulator, ref, "--attestation", SLSA_PROVENANCE_V1, "--output", "json")
    doc = document(capsys)
    assert code == EXIT_INVALID_SIGNATURE, doc["message"]
    bundle = next(
        b for m in doc["manifests"] for b in m["bundles"] if b.get("referrer") == later.digest
    )
    assert bundle["errorType"] == "UncoveredAttestationError"
    assert "not listed in the signed index" in bundle["error"]

    result = sign(emulator, ref, SigningOptions(provenance=False, attestation_manifests=True))
    assert {m.attestation_for for m in result.manifests if m.attestation_for} == {amd64.digest}
    assert later.digest in {m.digest for m in result.manifests}

    assert verify(emulator, ref, "--attestation", SLSA_PROVENANCE_V1, "--output", "json") == 0
    doc = document(capsys)
    (bundle,) = [
        b for b in doc["manifests"][1]["bundles"] if b.get("predicateType") == SLSA_PROVENANCE_V1
    ]
    assert bundle["buildkit"]["coveredBy"] == "attestation-manifest-signature"
    assert bundle["identity"]["repository"] == REPO


def test_verify_attestation_on_a_registry_without_the_referrers_api(
    tmp_path_factory: pytest.TempPathFactory,
    emulator: GitHubOIDCEmulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """distribution 2.8: the index's signature is found through the tag-schema fallback, the
    in-index attestation manifests need no referrers listing at all."""
    with distribution(tmp_path_factory.mktemp("distribution")) as running:
        ref = running.ref("library/fallback", "1")
        with client() as c:
            image = push_buildkit_image(c, ref)
        sign(emulator, ref, SigningOptions(provenance=False))
        code = verify(emulator, ref, "--attestation", SLSA_PROVENANCE_V1, "--output", "json")
        doc = document(capsys)
        assert code == EXIT_OK, doc["message"]
        covered = {
            b["buildkit"]["attestationManifest"]
            for m in doc["manifests"]
            for b in m["bundles"]
            if b.get("buildkit")
        }
        assert covered == {d.digest for d in image.attestations.values()}
