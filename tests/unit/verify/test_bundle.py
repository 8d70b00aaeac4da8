"""Verifying one bundle against one manifest: each check refused on its own."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opk_sign.bundle import Bundle
from opk_sign.errors import (
    OSMError,
    PayloadMismatchError,
    PolicyError,
    SignatureError,
    VerificationError,
)
from opk_sign.payloads import INTOTO_PAYLOAD_TYPE, Statement, Subject, sign_envelope
from opk_sign.payloads.dsse import Envelope
from opk_sign.payloads.simplesigning import SimpleSigningPayload
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS, new_osm
from opk_sign.policy import policy_from_fields
from opk_sign.verify import verify_attestation_bundle, verify_signature_bundle
from tests.helpers import Minted, mint

NOW = 1_790_000_000
DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REPO = "registry.example/octo-org/app"
POLICY = policy_from_fields({"repository": "octo-org/octo-repo"})


@pytest.fixture(scope="module")
def minted() -> Minted:
    return mint(now=NOW)


def signature(m: Minted, digest: str = DIGEST, repo: str = REPO) -> Bundle:
    payload = SimpleSigningPayload.build(repo, digest, {"note": "x"})
    return Bundle(m.pkt, osm=new_osm(m.pkt, m.user_key, payload.raw))


def attestation(
    m: Minted, digest: str = DIGEST, predicate_type: str = "https://slsa.dev/provenance/v1"
) -> Bundle:
    statement = Statement.build([Subject.for_oci_digest(REPO, digest)], predicate_type, {"k": "v"})
    key = m.user_key.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return Bundle(m.pkt, dsse_envelope=sign_envelope(INTOTO_PAYLOAD_TYPE, statement.raw, key))


def check_sig(m: Minted, bundle: Bundle, **kw: object) -> None:
    args: dict[str, object] = {
        "digest": DIGEST,
        "docker_reference": REPO,
        "keys": StaticJWKS(GITHUB_ISSUER, m.jwks),
        "policy": POLICY,
        "now": NOW,
    }
    args.update(kw)
    verify_signature_bundle(bundle, **args)  # type: ignore[arg-type]


def test_valid_signature(minted: Minted) -> None:
    check_sig(minted, signature(minted))


def test_signature_replayed_onto_another_digest(minted: Minted) -> None:
    with pytest.raises(PayloadMismatchError, match="replayed from another image"):
        check_sig(minted, signature(minted, digest=OTHER))


def test_signature_replayed_onto_another_repository(minted: Minted) -> None:
    with pytest.raises(PayloadMismatchError, match="replayed from another repository"):
        check_sig(minted, signature(minted, repo="registry.example/evil/app"))


def test_policy_mismatch_is_a_policy_error(minted: Minted) -> None:
    with pytest.raises(PolicyError, match="claim 'repository' is 'octo-org/octo-repo'"):
        check_sig(minted, signature(minted), policy=policy_from_fields({"repository": "a/b"}))


def test_osm_from_another_token(minted: Minted) -> None:
    other = mint(now=NOW)
    bundle = Bundle(minted.pkt, osm=signature(other).osm)
    with pytest.raises(OSMError, match="kid is not the hash"):
        check_sig(minted, bundle)


def test_policy_runs_only_after_validity(minted: Minted) -> None:
    """A tampered bundle that also fails the policy is reported as invalid, not as policy."""
    with pytest.raises(VerificationError) as info:
        check_sig(
            minted,
            signature(minted, digest=OTHER),
            policy=policy_from_fields({"repository": "a/b"}),
        )
    assert not isinstance(info.value, PolicyError)


def check_att(m: Minted, bundle: Bundle, **kw: object) -> None:
    args: dict[str, object] = {
        "digest": DIGEST,
        "keys": StaticJWKS(GITHUB_ISSUER, m.jwks),
        "policy": POLICY,
        "now": NOW,
    }
    args.update(kw)
    verify_attestation_bundle(bundle, **args)  # type: ignore[arg-type]


def test_valid_attestation(minted: Minted) -> None:
    check_att(minted, attestation(minted), predicate_type="https://slsa.dev/provenance/v1")


def test_attestation_for_another_digest(minted: Minted) -> None:
    with pytest.raises(PayloadMismatchError, match="does not name"):
        check_att(minted, attestation(minted, digest=OTHER))


def test_attestation_wrong_predicate_type(minted: Minted) -> None:
    with pytest.raises(PayloadMismatchError, match="predicate type"):
        check_att(minted, attestation(minted), predicate_type="https://spdx.dev/Document")


def test_attestation_payload_tampered(minted: Minted) -> None:
    envelope = attestation(minted).dsse_envelope
    assert envelope is not None
    tampered = Envelope(
        envelope.payload_type, envelope.payload.replace(b"ab", b"cd", 1), envelope.signatures
    )
    with pytest.raises(SignatureError, match="no signature verifies"):
        check_att(minted, Bundle(minted.pkt, dsse_envelope=tampered))


def test_attestation_signed_by_another_key(minted: Minted) -> None:
    other = mint(now=NOW)
    with pytest.raises(SignatureError, match="no signature verifies"):
        check_att(minted, Bundle(minted.pkt, dsse_envelope=attestation(other).dsse_envelope))
