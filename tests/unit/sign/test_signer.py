"""The pure parts of signing: the simple-signing payload, the signer identity, the Signer's
bundles and annotations, the PK token step with a stub provider, manifest collection order, and
the failure report."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from opk_sign._dev.github_oidc import github_claims, mint_id_token
from opk_sign.bundle import (
    ANNOTATION_CREATED,
    ANNOTATION_IDENTITY,
    ANNOTATION_ISSUER,
    ANNOTATION_PREDICATE_TYPE,
    ANNOTATION_REPOSITORY,
)
from opk_sign.errors import (
    EXIT_REGISTRY,
    FormatError,
    IssuerError,
    RegistryUnavailableError,
    UsageError,
    VerificationError,
)
from opk_sign.identity import SignerIdentity
from opk_sign.oci import mediatypes
from opk_sign.oci.descriptor import Descriptor, Platform
from opk_sign.oci.manifest import canonical_json, parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.oidc import JWKSCache
from opk_sign.payloads import SLSA_PROVENANCE_V1, Statement, verify_envelope
from opk_sign.payloads.simplesigning import SIGNATURE_TYPE, SimpleSigningPayload
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS, UserKey, verify_osm, verify_pktoken
from opk_sign.sign.image import (
    CustomPredicate,
    ManifestToSign,
    _failure,
    _Outcome,
    collect_manifests,
    obtain_signer,
)
from opk_sign.sign.signer import CREATOR, Signer
from tests.helpers import Minted, mint, op_key

DIGEST = "sha256:" + "ab" * 32
REPO = "ghcr.io/octo-org/app"
NOW = 1_790_000_000


# --- simple signing --------------------------------------------------------------------------------


def test_simple_signing_bytes_are_go_canonical() -> None:
    payload = SimpleSigningPayload.build(REPO, DIGEST, {"creator": "x", "a&b": "<c>"})
    assert payload.raw == (
        b'{"critical":{"identity":{"docker-reference":"ghcr.io/octo-org/app"},'
        b'"image":{"docker-manifest-digest":"sha256:' + b"ab" * 32 + b'"},'
        b'"type":"opk-sign container image signature"},'
        b'"optional":{"a\\u0026b":"\\u003cc\\u003e","creator":"x"}}'
    )
    parsed = SimpleSigningPayload.parse(payload.raw)
    assert parsed == payload
    assert parsed.optional == {"creator": "x", "a&b": "<c>"}


@pytest.mark.parametrize(
    "doc",
    [
        {"critical": {"type": "cosign container image signature"}},
        {
            "critical": {
                "identity": {"docker-reference": REPO},
                "image": {},
                "type": SIGNATURE_TYPE,
            }
        },
        {
            "critical": {
                "identity": {"docker-reference": REPO},
                "image": {"docker-manifest-digest": "sha256:abc"},
                "type": SIGNATURE_TYPE,
            }
        },
        {
            "critical": {
                "identity": {"docker-reference": REPO + "@" + DIGEST},
                "image": {"docker-manifest-digest": DIGEST},
                "type": SIGNATURE_TYPE,
            }
        },
        {
            "critical": {
                "identity": {"docker-reference": REPO},
                "image": {"docker-manifest-digest": DIGEST},
                "type": SIGNATURE_TYPE,
            },
            "optional": [],
        },
    ],
)
def test_simple_signing_refuses_malformed_payloads(doc: Any) -> None:
    with pytest.raises(FormatError):
        SimpleSigningPayload.parse(json.dumps(doc).encode())


# --- identity --------------------------------------------------------------------------------------


def test_identity_from_claims() -> None:
    claims = github_claims("aud", issuer=GITHUB_ISSUER, repository="o/r", environment="prod")
    identity = SignerIdentity.from_claims(claims)
    assert identity.issuer == GITHUB_ISSUER
    assert identity.subject == "repo:o/r:environment:prod"
    assert identity.principal == identity.job_workflow_ref == claims["job_workflow_ref"]
    assert identity.environment == "prod"
    assert str(identity) == identity.principal
    assert "aud" not in identity.to_dict()


def test_identity_without_workflow_falls_back_to_subject() -> None:
    identity = SignerIdentity.from_claims({"iss": "https://gitlab.example", "sub": "project:1"})
    assert identity.principal == "project:1"


@pytest.mark.parametrize("claims", [{"iss": "i"}, {"iss": "i", "sub": "s", "ref": 1}])
def test_identity_refuses_bad_claims(claims: Mapping[str, Any]) -> None:
    with pytest.raises(FormatError):
        SignerIdentity.from_claims(claims)


# --- the Signer -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minted() -> Minted:
    return mint(now=NOW, repository="octo-org/app")


@pytest.fixture(scope="module")
def signer(minted: Minted) -> Signer:
    return Signer(minted.user_key, minted.pkt, minted.pkt.claims())


def test_signature_bundle_verifies_and_names_the_digest(minted: Minted, signer: Signer) -> None:
    bundle = signer.signature(REPO, DIGEST)
    assert bundle.osm is not None
    verify_pktoken(bundle.pk_token, StaticJWKS(GITHUB_ISSUER, minted.jwks), now=NOW)
    payload = SimpleSigningPayload.parse(verify_osm(bundle.pk_token, bundle.osm))
    assert (payload.docker_reference, payload.manifest_digest) == (REPO, DIGEST)
    assert payload.optional["creator"] == CREATOR
    assert payload.optional["repository"] == "octo-org/app"
    assert payload.optional["job_workflow_ref"] == signer.identity.job_workflow_ref


def test_attestation_bundle_verifies_with_upk(minted: Minted, signer: Signer) -> None:
    predicate_type, predicate = signer.provenance("https://github.com")
    assert predicate_type == SLSA_PROVENANCE_V1
    bundle = signer.attestation(REPO, DIGEST, predicate_type, predicate)
    assert bundle.dsse_envelope is not None
    assert bundle.dsse_envelope.signatures[0].keyid == minted.pkt.hash()
    statement = Statement.parse(
        verify_envelope(bundle.dsse_envelope, minted.pkt.cic_claims().public_key)
    )
    assert statement.names_digest(DIGEST)
    assert statement.subjects[0].name == REPO
    assert statement.predicate == predicate


def test_annotations(signer: Signer) -> None:
    created = datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC)
    plain = signer.annotations(created)
    assert plain == {
        ANNOTATION_CREATED: "2026-11-25T01:02:03Z",
        ANNOTATION_IDENTITY: signer.identity.job_workflow_ref,
        ANNOTATION_ISSUER: GITHUB_ISSUER,
        ANNOTATION_REPOSITORY: "octo-org/app",
    }
    assert signer.annotations(created, "https://x")[ANNOTATION_PREDICATE_TYPE] == "https://x"


def test_signer_refuses_a_key_the_token_does_not_commit_to(minted: Minted) -> None:
    with pytest.raises(FormatError):
        Signer(UserKey.generate(), minted.pkt, minted.pkt.claims())
    with pytest.raises(FormatError):
        Signer(UserKey.generate("EdDSA"), minted.pkt, minted.pkt.claims())


@pytest.mark.parametrize("predicate_type", ["", "spdx", "not a uri", "1http://x"])
def test_custom_predicate_type_must_be_a_uri(predicate_type: str) -> None:
    with pytest.raises(UsageError):
        CustomPredicate(predicate_type, {})


# --- the PK token step ---------------------------------------------------------------------------


class StubProvider:
    """A token provider minting like GitHub does, optionally misbehaving."""

    def __init__(self, *, issuer: str = GITHUB_ISSUER, **overrides: Any) -> None:
        self.issuer = issuer
        self.overrides = overrides
        self.audiences: list[str] = []

    @property
    def issuer_hint(self) -> str:
        return GITHUB_ISSUER

    def id_token(self, audience: str) -> str:
        self.audiences.append(audience)
        claims = github_claims(
            self.overrides.pop("aud", audience), issuer=self.issuer, now=NOW, **self.overrides
        )
        return mint_id_token(op_key(), claims)


class StubJWKS(JWKSCache):
    def __init__(self, jwks: Mapping[str, Any]) -> None:
        super().__init__()
        self.jwks = dict(jwks)
        self.asked: list[str] = []

    def get(self, issuer: str) -> dict[str, Any]:
        self.asked.append(issuer)
        return self.jwks


def jwks() -> StubJWKS:
    return StubJWKS({"keys": [op_key().public_jwk()]})


def test_obtain_signer_makes_a_pk_token_committing_to_a_fresh_key() -> None:
    provider, keys = StubProvider(repository="o/r"), jwks()
    first = obtain_signer(provider, jwks=keys, now=NOW + 5)
    second = obtain_signer(provider, jwks=keys, now=NOW + 5)
    assert keys.asked == [GITHUB_ISSUER, GITHUB_ISSUER]
    assert provider.audiences == [
        first.pk_token.cic_claims().commitment,
        second.pk_token.cic_claims().commitment,
    ]
    assert first.pk_token.cic_claims().public_key != second.pk_token.cic_claims().public_key
    assert first.identity.repository == "o/r"
    # The OP signature is GQ256: the ID token's RS256 signature is nowhere in the PK token.
    assert first.pk_token.op_token.header()["alg"] == "GQ256"


def test_an_id_token_for_another_audience_is_refused() -> None:
    with pytest.raises(VerificationError, match="aud"):
        obtain_signer(StubProvider(aud="someone-else"), jwks=jwks(), now=NOW + 5)


def test_an_id_token_from_another_issuer_is_refused() -> None:
    with pytest.raises(IssuerError):
        obtain_signer(StubProvider(issuer="https://evil.example"), jwks=jwks(), now=NOW + 5)


def test_an_expired_id_token_is_refused() -> None:
    with pytest.raises(VerificationError, match="expired"):
        obtain_signer(StubProvider(), jwks=jwks(), now=NOW + 3600)


# --- manifests to sign -----------------------------------------------------------------------------


class StubRegistry:
    """Just enough of RegistryClient for collect_manifests: manifests by digest or tag."""

    def __init__(self) -> None:
        self.manifests: dict[str, bytes] = {}
        self.pulled: list[str] = []

    def add(self, doc: dict[str, Any], tag: str | None = None) -> Descriptor:
        data = canonical_json(doc)
        descriptor = Descriptor(
            doc["mediaType"], "sha256:" + hashlib.sha256(data).hexdigest(), len(data)
        )
        self.manifests[descriptor.digest] = data
        if tag:
            self.manifests[tag] = data
        return descriptor

    def pull_manifest(self, ref: Reference, digest: str | None = None) -> tuple[Descriptor, bytes]:
        key = digest or ref.identifier
        self.pulled.append(key)
        data = self.manifests[key]
        doc = json.loads(data)
        digest_of = next(k for k, v in self.manifests.items() if v == data and k.startswith("sha"))
        return Descriptor(doc["mediaType"], digest_of, len(data)), data

    @staticmethod
    def parse(descriptor: Descriptor, data: bytes) -> Any:
        return parse_manifest(data, descriptor.media_type)


def image_manifest(seed: str) -> dict[str, Any]:
    config = Descriptor(mediatypes.OCI_CONFIG, "sha256:" + seed * 64, 2)
    return {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": config.to_dict(),
        "layers": [],
    }


def index_of(children: list[Descriptor]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [c.to_dict() for c in children],
    }


def test_collect_signs_children_first_and_skips_buildx_attestations() -> None:
    registry = StubRegistry()
    amd = registry.add(image_manifest("1"))
    arm = registry.add(image_manifest("2"))
    buildx = registry.add(image_manifest("3"))
    children = [
        Descriptor(amd.media_type, amd.digest, amd.size, platform=Platform("linux", "amd64")),
        Descriptor(arm.media_type, arm.digest, arm.size, platform=Platform("linux", "arm64", "v8")),
        Descriptor(
            buildx.media_type,
            buildx.digest,
            buildx.size,
            annotations={"vnd.docker.reference.type": "attestation-manifest"},
            platform=Platform("unknown", "unknown"),
        ),
    ]
    top = registry.add(index_of(children), tag="v1")
    ref = Reference.parse("ghcr.io/o/app:v1")

    found_top, targets = collect_manifests(registry, ref, recursive=True)  # type: ignore[arg-type]
    assert found_top.digest == top.digest
    assert [(t.digest, t.is_index, t.platform) for t in targets] == [
        (amd.digest, False, "linux/amd64"),
        (arm.digest, False, "linux/arm64/v8"),
        (top.digest, True, None),
    ]
    assert registry.pulled == ["v1"]  # platform manifests are named by the index, not fetched

    _, only = collect_manifests(registry, ref, recursive=False)  # type: ignore[arg-type]
    assert [(t.digest, t.is_index) for t in only] == [(top.digest, True)]


def test_collect_a_single_manifest() -> None:
    registry = StubRegistry()
    single = registry.add(image_manifest("4"), tag="v2")
    ref = Reference.parse("ghcr.io/o/app:v2")
    _, targets = collect_manifests(registry, ref, recursive=True)  # type: ignore[arg-type]
    assert [(t.digest, t.is_index) for t in targets] == [(single.digest, False)]


# --- the failure report ----------------------------------------------------------------------------


def test_failure_names_signed_and_unsigned_manifests_and_keeps_the_exit_code() -> None:
    def target(seed: str, platform: str | None, is_index: bool = False) -> ManifestToSign:
        media = mediatypes.OCI_INDEX if is_index else mediatypes.OCI_MANIFEST
        return ManifestToSign(Descriptor(media, "sha256:" + seed * 64, 1), is_index, platform)

    ok = _Outcome(target("1", "linux/amd64"), signature="sha256:" + "f" * 64)
    broken = _Outcome(
        target("2", "linux/arm64"), error=RegistryUnavailableError("registry said 503")
    )
    error = _failure([ok, broken], [target("3", None, is_index=True)])
    lines = error.message.splitlines()
    assert f"  not signed: sha256:{'2' * 64} (linux/arm64): registry said 503" in lines
    assert (
        f"  not signed: sha256:{'3' * 64} (index): skipped because a platform manifest failed"
        in lines
    )
    assert f"  signed: sha256:{'1' * 64} (linux/amd64)" in lines
    assert error.exit_code == EXIT_REGISTRY
