"""The attack catalogue, registry part: tampered referrer manifests, verified through the registry
flow (``verify_image``) and the CLI (``opk-sign verify``) on real loopback registries.

Each case pushes a fresh single-platform image, attaches what the attacker attaches (often beside
nothing else, so the outcome is decided by that one referrer) and expects one outcome, exit code,
error class (``BundleCheck.error_type``) and message fragment. The control case, a correctly
attached signature and attestation, must verify, so the catalogue can fail. Unit-level tamperings
(PK token, CIC, GQ, OSM, DSSE, bundle, policy) are in tests/unit/attacks/ (world.py, cases_*.py);
docs/attacks.md tables both.

olareg serves the OCI referrers API (the listing is derived by the registry from the manifests
themselves); the cases that need a listing the attacker writes (the referrers tag schema index)
run on distribution, which has no referrers API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest
import requests

from opk_sign.bundle import (
    ATTESTATION_ARTIFACT_TYPE,
    BUNDLE_MEDIA_TYPE,
    SIGNATURE_ARTIFACT_TYPE,
)
from opk_sign.cli.main import main
from opk_sign.errors import (
    EXIT_INVALID_SIGNATURE,
    EXIT_OK,
    EXIT_POLICY_MISMATCH,
    EXIT_REGISTRY,
)
from opk_sign.oci import mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.digest import sha256_digest
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import canonical_json, empty_descriptor
from opk_sign.oci.reference import Reference
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS
from opk_sign.policy import policy_from_fields
from opk_sign.sign.signer import Signer
from opk_sign.verify.image import verify_image
from opk_sign.verify.options import VerifyOptions
from opk_sign.verify.outcome import ImageResult, Outcome
from tests.helpers import mint, op_key
from tests.services.images import push_sample_image
from tests.services.registries import Registry, distribution, olareg

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("attack-catalogue-registry")]

REPOSITORY: Final = "octo-org/octo-repo"
EVIL_REPOSITORY: Final = "evil-org/evil-repo"
PROVENANCE: Final = "https://slsa.dev/provenance/v1"
SPDX: Final = "https://spdx.dev/Document"
DOCS: Final = Path(__file__).resolve().parents[2] / "docs" / "attacks.md"


@dataclass(frozen=True)
class Env:
    olareg: Registry
    distribution: Registry
    client: RegistryClient
    signer: Signer  # the trusted identity: repository octo-org/octo-repo
    evil: Signer  # a valid signer of another repository
    jwks_file: Path


def _signer(repository: str) -> Signer:
    minted = mint(repository=repository)
    return Signer(minted.user_key, minted.pkt, minted.pkt.claims())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    jwks_file = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [op_key().public_jwk()]}))
    with (
        olareg(tmp_path_factory.mktemp("olareg")) as ola,
        distribution(tmp_path_factory.mktemp("distribution")) as dist,
        RegistryClient(Keychain.anonymous()) as client,
    ):
        yield Env(ola, dist, client, _signer(REPOSITORY), _signer(EVIL_REPOSITORY), jwks_file)


# --- what an attacker can push ------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    ref: Reference
    manifest: Descriptor

    @property
    def name(self) -> str:
        return str(self.ref)

    @property
    def digest(self) -> str:
        return self.manifest.digest


def new_image(env: Env, registry: Registry, repository: str, tag: str = "v1") -> Image:
    text = registry.ref(repository, tag)
    manifest = push_sample_image(env.client, text, ("linux/amd64",), index=False)
    return Image(Reference.parse(text), manifest)


def push_referrer(
    env: Env,
    image: Image,
    *,
    artifact_type: str,
    layers: list[tuple[bytes, str]],
    annotations: dict[str, str] | None = None,
    subject: Descriptor | None = None,
) -> Descriptor:
    """An artifact manifest with exactly the given layers, pushed as a referrer of ``subject``
    (default: the image). Its descriptor as a referrers listing gives it."""
    client, ref = env.client, image.ref
    client.put_blob(ref, mediatypes.EMPTY_JSON, mediatypes.OCI_EMPTY)
    descriptors = [client.put_blob(ref, blob, media_type) for blob, media_type in layers]
    target = subject or image.manifest
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty_descriptor().to_dict(),
        "layers": [d.to_dict() for d in descriptors],
        "subject": Descriptor(target.media_type, target.digest, target.size).to_dict(),
    }
    if annotations:
        doc["annotations"] = annotations
    data = canonical_json(doc)
    digest = client.put_manifest(ref, data, mediatypes.OCI_MANIFEST)
    return Descriptor(
        mediatypes.OCI_MANIFEST,
        digest,
        len(data),
        annotations=annotations or {},
        artifact_type=artifact_type,
    )


def signature_blob(signer: Signer, image: Image) -> bytes:
    return signer.signature(image.ref.name, image.digest).to_json()


def attestation_blob(signer: Signer, image: Image, predicate_type: str = PROVENANCE) -> bytes:
    return signer.attestation(image.ref.name, image.digest, predicate_type, {"k": "v"}).to_json()


def hints(signer: Signer, predicate_type: str | None = None) -> dict[str, str]:
    return signer.annotations(datetime.now(UTC), predicate_type)


def attach_signature(env: Env, image: Image, signer: Signer | None = None) -> Descriptor:
    signer = signer or env.signer
    return push_referrer(
        env,
        image,
        artifact_type=SIGNATURE_ARTIFACT_TYPE,
        layers=[(signature_blob(signer, image), BUNDLE_MEDIA_TYPE)],
        annotations=hints(signer),
    )


def attach_attestation(env: Env, image: Image) -> Descriptor:
    return push_referrer(
        env,
        image,
        artifact_type=ATTESTATION_ARTIFACT_TYPE,
        layers=[(attestation_blob(env.signer, image), BUNDLE_MEDIA_TYPE)],
        annotations=hints(env.signer, PROVENANCE),
    )


# --- the catalogue -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryAttack:
    name: str
    what: str  # what the attacker does
    check: str  # which check refuses it
    outcome: Outcome
    error_type: str | None  # the refused bundle's error class (None: the image fails as a whole)
    fragment: str
    registry: str  # "olareg" | "distribution"
    attest: bool  # verify with --attestation PROVENANCE
    tamper: Callable[[Env, Image], None]

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code


REGISTRY_CATALOGUE: list[RegistryAttack] = []


def attack(
    what: str,
    check: str,
    outcome: Outcome,
    error_type: str | None,
    fragment: str,
    *,
    registry: str = "olareg",
    attest: bool = False,
) -> Callable[[Callable[[Env, Image], None]], Callable[[Env, Image], None]]:
    def register(tamper: Callable[[Env, Image], None]) -> Callable[[Env, Image], None]:
        REGISTRY_CATALOGUE.append(
            RegistryAttack(
                tamper.__name__,
                what,
                check,
                outcome,
                error_type,
                fragment,
                registry,
                attest,
                tamper,
            )
        )
        return tamper

    return register


@attack(
    "a signature referrer (artifactType signature) whose layer holds a valid attestation bundle",
    "bundle kind matches the referrer's artifactType",
    Outcome.INVALID,
    "FormatError",
    "bundle: not a signature (it holds a DSSE envelope, not an OSM)",
)
def referrer_signature_type_holds_attestation(env: Env, image: Image) -> None:
    push_referrer(
        env,
        image,
        artifact_type=SIGNATURE_ARTIFACT_TYPE,
        layers=[(attestation_blob(env.signer, image), BUNDLE_MEDIA_TYPE)],
        annotations=hints(env.signer),
    )


@attack(
    "an attestation referrer whose layer holds a valid signature bundle (`--attestation`)",
    "bundle kind matches the referrer's artifactType",
    Outcome.INVALID,
    "FormatError",
    "bundle: not an attestation (it holds an OSM, not a DSSE envelope)",
    attest=True,
)
def referrer_attestation_type_holds_signature(env: Env, image: Image) -> None:
    attach_signature(env, image)
    push_referrer(
        env,
        image,
        artifact_type=ATTESTATION_ARTIFACT_TYPE,
        layers=[(signature_blob(env.signer, image), BUNDLE_MEDIA_TYPE)],
        annotations=hints(env.signer, PROVENANCE),
    )


@attack(
    "lists another image's valid signature referrer in this image's referrers tag index",
    "the referrer manifest's `subject` is this manifest",
    Outcome.INVALID,
    "PayloadMismatchError",
    "referrer manifest: subject is sha256:",
    registry="distribution",
)
def referrer_subject_is_another_digest(env: Env, image: Image) -> None:
    donor = new_image(env, env.distribution, image.ref.repository, tag="donor")
    referrer = attach_signature(env, donor)  # valid, for the donor image of the same repository
    env.client.register_referrers(image.ref, image.digest, [referrer])


@attack(
    "lists an attestation manifest as a signature in the referrers tag index",
    "the referrer manifest's own `artifactType`",
    Outcome.INVALID,
    "FormatError",
    f"referrer manifest: artifactType {ATTESTATION_ARTIFACT_TYPE!r}, not {SIGNATURE_ARTIFACT_TYPE!r}",
    registry="distribution",
)
def referrer_listing_artifact_type_lies(env: Env, image: Image) -> None:
    referrer = push_referrer(
        env,
        image,
        artifact_type=ATTESTATION_ARTIFACT_TYPE,
        layers=[(attestation_blob(env.signer, image), BUNDLE_MEDIA_TYPE)],
        subject=Descriptor(mediatypes.OCI_MANIFEST, sha256_digest(b"elsewhere"), 9),
    )
    lying = Descriptor(
        referrer.media_type, referrer.digest, referrer.size, artifact_type=SIGNATURE_ARTIFACT_TYPE
    )
    env.client.register_referrers(image.ref, image.digest, [lying])


@attack(
    "a signature referrer with two layers (the valid bundle and a second one)",
    "referrer shape: exactly one layer, the bundle media type",
    Outcome.INVALID,
    "FormatError",
    "referrer manifest: expected one layer of type",
)
def referrer_two_layers(env: Env, image: Image) -> None:
    blob = signature_blob(env.signer, image)
    push_referrer(
        env,
        image,
        artifact_type=SIGNATURE_ARTIFACT_TYPE,
        layers=[(blob, BUNDLE_MEDIA_TYPE), (blob + b" ", BUNDLE_MEDIA_TYPE)],
        annotations=hints(env.signer),
    )


@attack(
    "a signature referrer whose one layer has another media type (a cosign signature's)",
    "referrer shape: exactly one layer, the bundle media type",
    Outcome.INVALID,
    "FormatError",
    "got ['application/vnd.dev.cosign.simplesigning.v1+json']",
)
def referrer_wrong_layer_media_type(env: Env, image: Image) -> None:
    push_referrer(
        env,
        image,
        artifact_type=SIGNATURE_ARTIFACT_TYPE,
        layers=[
            (signature_blob(env.signer, image), "application/vnd.dev.cosign.simplesigning.v1+json")
        ],
        annotations=hints(env.signer),
    )


@attack(
    "a valid signature by another repository's workflow, with annotations claiming the trusted "
    "repository and workflow",
    "identity policy on the signed token's claims (annotations are never trusted)",
    Outcome.POLICY_MISMATCH,
    "PolicyError",
    f"claim 'repository' is {EVIL_REPOSITORY!r}; the policy requires {REPOSITORY!r}",
)
def referrer_identity_annotation_lies(env: Env, image: Image) -> None:
    push_referrer(
        env,
        image,
        artifact_type=SIGNATURE_ARTIFACT_TYPE,
        layers=[(signature_blob(env.evil, image), BUNDLE_MEDIA_TYPE)],
        annotations=hints(env.signer),  # the trusted signer's identity, as unsigned hints
    )


@attack(
    "an attestation of another predicate type annotated as the required one (`--attestation`)",
    "the signed statement's `predicateType` (annotations are never trusted)",
    Outcome.INVALID,
    "PayloadMismatchError",
    f"attestation predicate type is {SPDX!r}, not {PROVENANCE!r}",
    attest=True,
)
def referrer_predicate_type_annotation_lies(env: Env, image: Image) -> None:
    attach_signature(env, image)
    push_referrer(
        env,
        image,
        artifact_type=ATTESTATION_ARTIFACT_TYPE,
        layers=[(attestation_blob(env.signer, image, SPDX), BUNDLE_MEDIA_TYPE)],
        annotations=hints(env.signer, PROVENANCE),
    )


@attack(
    "a signature referrer whose bundle blob was deleted from the registry",
    "a registry failure is an unknown outcome (13), never 'unsigned' (10) or 'invalid' (12)",
    Outcome.REGISTRY_ERROR,
    None,
    ": not found (BLOB_UNKNOWN",
)
def referrer_blob_missing(env: Env, image: Image) -> None:
    blob = signature_blob(env.signer, image)
    push_referrer(
        env,
        image,
        artifact_type=SIGNATURE_ARTIFACT_TYPE,
        layers=[(blob, BUNDLE_MEDIA_TYPE)],
        annotations=hints(env.signer),
    )
    url = f"http://{env.olareg.host}/v2/{image.ref.repository}/blobs/{sha256_digest(blob)}"
    with requests.Session() as session:
        session.trust_env = False
        deleted = session.delete(url, timeout=10)
    assert deleted.status_code == 202, deleted.text


@attack(
    "a referrer that is an image index (with subject and artifactType) instead of a manifest",
    "referrer shape: an image manifest",
    Outcome.INVALID,
    "FormatError",
    "referrer manifest: an index, not an artifact manifest",
)
def referrer_is_an_index(env: Env, image: Image) -> None:
    subject = image.manifest
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "artifactType": SIGNATURE_ARTIFACT_TYPE,
        "manifests": [],
        "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_dict(),
    }
    env.client.put_manifest(image.ref, canonical_json(doc), mediatypes.OCI_INDEX)


# --- running a case ------------------------------------------------------------------------------


def options(attest: bool) -> VerifyOptions:
    return VerifyOptions(
        policy=policy_from_fields({"repository": REPOSITORY}),
        keys=StaticJWKS(GITHUB_ISSUER, {"keys": [op_key().public_jwk()]}),
        issuers=frozenset({GITHUB_ISSUER}),
        attestations=(PROVENANCE,) if attest else (),
    )


def cli(env: Env, image: Image, attest: bool, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``opk-sign verify --output json`` on the image; the JSON document with its exit code."""
    capsys.readouterr()
    argv = ["verify", "--issuer", GITHUB_ISSUER, "--repository", REPOSITORY]
    argv += ["--jwks", str(env.jwks_file), "--output", "json", image.name]
    if attest:
        argv += ["--attestation", PROVENANCE]
    code = main(argv)
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert doc["exitCode"] == code
    return doc


def refused_checks(result: ImageResult) -> list[tuple[str | None, str | None]]:
    return [
        (c.error_type, c.error)
        for m in result.manifests
        for c in m.checks
        if c.outcome is not Outcome.VERIFIED
    ]


def _registry(env: Env, kind: str) -> Registry:
    return env.olareg if kind == "olareg" else env.distribution


@pytest.mark.parametrize("registry", ["olareg", "distribution"])
def test_control_signed_and_attested_image_verifies(
    env: Env, registry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    image = new_image(env, _registry(env, registry), f"control/{registry}")
    attach_attestation(env, image)
    attach_signature(env, image)
    result = verify_image(env.client, image.name, options(attest=True))
    assert result.outcome is Outcome.VERIFIED, result.message
    assert cli(env, image, True, capsys)["exitCode"] == EXIT_OK


@pytest.mark.parametrize("case", REGISTRY_CATALOGUE, ids=[c.name for c in REGISTRY_CATALOGUE])
def test_registry_attack_is_refused(
    env: Env, case: RegistryAttack, capsys: pytest.CaptureFixture[str]
) -> None:
    image = new_image(env, _registry(env, case.registry), f"attacks/{case.name.replace('_', '-')}")
    case.tamper(env, image)
    result = verify_image(env.client, image.name, options(case.attest))
    assert result.outcome is case.outcome, result.message
    assert result.exit_code == case.exit_code
    assert case.fragment in result.message, result.message
    if case.outcome is Outcome.REGISTRY_ERROR:
        assert result.message.startswith("blob ") and ": not found" in result.message
    if case.error_type is not None:
        refused = refused_checks(result)
        assert refused, result.message
        assert {t for t, _ in refused} == {case.error_type}, refused
        assert any(case.fragment in (e or "") for _, e in refused), refused
    doc = cli(env, image, case.attest, capsys)
    assert doc["exitCode"] == case.exit_code
    if case.error_type is not None:
        types = {b.get("errorType") for m in doc["manifests"] for b in m["bundles"] if "error" in b}
        assert types == {case.error_type}, doc


def test_exit_codes_are_the_contract() -> None:
    """The registry cases reach 11, 12 and 13 (tampered never looks unsigned: never 10)."""
    codes = {c.exit_code for c in REGISTRY_CATALOGUE}
    assert codes == {EXIT_POLICY_MISMATCH, EXIT_INVALID_SIGNATURE, EXIT_REGISTRY}


def test_docs_table_every_registry_case() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert f"then {len(REGISTRY_CATALOGUE)} on the registry flow" in text
    for case in REGISTRY_CATALOGUE:
        row = next(
            (line for line in text.splitlines() if line.startswith(f"| `{case.name}` |")), ""
        )
        assert row, f"docs/attacks.md lacks {case.name}"
        assert f"| {case.exit_code} |" in row, case.name
