"""RFC 3161 timestamps end to end with a real timestamp authority on loopback (sigstore's
timestamp-authority, tests/tsa): signing timestamps every bundle it pushes; a timestamped signature
verifies 30 days later, an untimestamped one does not; a timestamp outside the PK token's window,
or by a TSA that is not trusted, fails (issue 6, "what it must show" 3)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.bundle import ATTESTATION_ARTIFACT_TYPE, SIGNATURE_ARTIFACT_TYPE, Bundle
from opk_sign.errors import EXIT_INVALID_SIGNATURE, ExpiredTokenError, SigningError, TimestampError
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import ImageManifest, parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS
from opk_sign.policy import policy_from_fields
from opk_sign.sign.image import SigningOptions, SigningResult, sign_image
from opk_sign.sign.signer import Signer
from opk_sign.trust.tsa import request_timestamp
from opk_sign.verify import verify_attestation_bundle, verify_signature_bundle
from tests.helpers import mint
from tests.services.faultproxy import Fault, fault_proxy
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, olareg
from tests.services.tsa import TimestampAuthority, timestamp_authority

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("timestamp")]

DAY = 24 * 3600
POLICY = policy_from_fields({"repository": "octo-org/octo-repo"})


@pytest.fixture(scope="module")
def emulator() -> Iterator[GitHubOIDCEmulator]:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as running:
        yield running


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with olareg(tmp_path_factory.mktemp("olareg-ts")) as running:
        yield running


@pytest.fixture(scope="module")
def other_tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimestampAuthority]:
    """A second TSA: its own ephemeral chain, which trust in the first does not cover."""
    with timestamp_authority(tmp_path_factory.mktemp("other-tsa")) as running:
        yield running


def client() -> RegistryClient:
    return RegistryClient(Keychain.anonymous())


def sign(emulator: GitHubOIDCEmulator, image: str, timestamp_url: str) -> SigningResult:
    provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
    options = SigningOptions(timestamp_url=timestamp_url)
    with client() as c:
        return sign_image(image, provider=provider, client=c, options=options)


def later(bundle: Bundle) -> int:
    """30 days after the bundle's PK token was issued."""
    iat = bundle.pk_token.claims()["iat"]
    assert isinstance(iat, int)
    return iat + 30 * DAY


def check(
    bundle: Bundle,
    emulator: GitHubOIDCEmulator,
    ref: str,
    digest: str,
    tsa: TimestampAuthority | None,
) -> tuple[datetime, ...]:
    """Verify a signature or attestation bundle pulled from ``ref`` 30 days after signing."""
    keys = StaticJWKS(emulator.issuer, emulator.jwks())
    policy = policy_from_fields(
        {"repository": "octo-org/octo-repo"}, default_issuer=emulator.issuer
    )
    trust = tsa.trust if tsa is not None else None
    if bundle.is_signature:
        return verify_signature_bundle(
            bundle,
            digest=digest,
            docker_reference=Reference.parse(ref).name,
            keys=keys,
            policy=policy,
            issuers={emulator.issuer},
            now=later(bundle),
            tsa=trust,
        ).timestamps
    return verify_attestation_bundle(
        bundle,
        digest=digest,
        keys=keys,
        policy=policy,
        issuers={emulator.issuer},
        now=later(bundle),
        tsa=trust,
    ).timestamps


def pull(ref: str, digest: str, artifact_type: str) -> list[Bundle]:
    reference = Reference.parse(ref)
    bundles = []
    with client() as c:
        for descriptor in c.list_referrers(reference, digest, artifact_type):
            manifest = parse_manifest(c.get_manifest(reference, descriptor.digest)[0])
            assert isinstance(manifest, ImageManifest)
            bundles.append(Bundle.from_json(c.get_blob(reference, manifest.layers[0].digest)))
    return bundles


@pytest.fixture(scope="module")
def signed(
    registry: Registry, emulator: GitHubOIDCEmulator, tsa: TimestampAuthority
) -> tuple[str, SigningResult]:
    """A two-platform image signed (and attested) with timestamps from the loopback TSA."""
    ref = registry.ref("octo-org/stamped", "v1")
    with client() as c:
        push_sample_image(c, ref)
    return ref, sign(emulator, ref, tsa.url)


def test_every_bundle_carries_one_timestamp_and_verifies_30_days_later(
    signed: tuple[str, SigningResult], emulator: GitHubOIDCEmulator, tsa: TimestampAuthority
) -> None:
    ref, result = signed
    checked = 0
    for manifest in result.manifests:
        for artifact_type in (SIGNATURE_ARTIFACT_TYPE, ATTESTATION_ARTIFACT_TYPE):
            for bundle in pull(ref, manifest.digest, artifact_type):
                assert len(bundle.timestamps) == 1
                (moment,) = check(bundle, emulator, ref, manifest.digest, tsa)
                assert abs(moment.timestamp() - time.time()) < 300  # made while signing
                # Without trust in the TSA the token is judged now, 30 days on: expired.
                with pytest.raises(ExpiredTokenError):
                    check(bundle, emulator, ref, manifest.digest, None)
                checked += 1
    # The index's and two platform manifests' signatures, two provenance attestations.
    assert checked == 5


def test_a_signature_without_timestamp_fails_30_days_later_even_with_tsa_trust(
    signed: tuple[str, SigningResult], emulator: GitHubOIDCEmulator, tsa: TimestampAuthority
) -> None:
    ref, result = signed
    (signature,) = pull(ref, result.digest, SIGNATURE_ARTIFACT_TYPE)
    with pytest.raises(ExpiredTokenError):
        check(replace(signature, timestamps=()), emulator, ref, result.digest, tsa)


def test_a_tsa_whose_chain_is_not_trusted_fails(
    signed: tuple[str, SigningResult],
    emulator: GitHubOIDCEmulator,
    other_tsa: TimestampAuthority,
    tsa: TimestampAuthority,
) -> None:
    ref, result = signed
    (signature,) = pull(ref, result.digest, SIGNATURE_ARTIFACT_TYPE)
    with pytest.raises(TimestampError, match="not signed by a trusted TSA"):
        check(signature, emulator, ref, result.digest, other_tsa)
    # Timestamped by the other TSA, verified trusting only the first: the same.
    stamped = replace(
        signature, timestamps=(request_timestamp(other_tsa.url, signature.signature_bytes()),)
    )
    with pytest.raises(TimestampError, match="not signed by a trusted TSA"):
        check(stamped, emulator, ref, result.digest, tsa)


@pytest.mark.parametrize(
    ("issued", "needle"),
    [
        (3600, "made before the PK token was issued"),  # token issued an hour after the stamp
        (-25 * 3600, "after the PK token's window had ended"),  # stamped 25 h after issue
    ],
    ids=["before-iat", "after-window"],
)
def test_a_timestamp_outside_the_token_window_fails(
    tsa: TimestampAuthority, issued: int, needle: str
) -> None:
    minted = mint(now=int(time.time()) + issued)
    signer = Signer(minted.user_key, minted.pkt, minted.pkt.claims())
    repository, digest = "127.0.0.1:5000/octo-org/app", "sha256:" + "ab" * 32
    bundle = signer.signature(repository, digest)
    bundle = replace(bundle, timestamps=(request_timestamp(tsa.url, bundle.signature_bytes()),))
    with pytest.raises(TimestampError, match=needle):
        verify_signature_bundle(
            bundle,
            digest=digest,
            docker_reference=repository,
            keys=StaticJWKS(GITHUB_ISSUER, minted.jwks),
            policy=POLICY,
            now=time.time() + 30 * DAY,
            tsa=tsa.trust,
        )


def test_a_failing_tsa_fails_signing_before_anything_is_pushed(
    registry: Registry, emulator: GitHubOIDCEmulator, tsa: TimestampAuthority, tmp_path: Path
) -> None:
    ref = registry.ref("octo-org/tsa-down", "v1")
    with client() as c:
        pushed = push_sample_image(c, ref, ["linux/amd64"], index=False)
    with fault_proxy(tsa.host) as proxy:
        proxy.add(Fault("status", method="POST", status=400, times=-1))
        with pytest.raises(SigningError) as caught:
            sign(emulator, ref, f"http://{proxy.host}/api/v1/timestamp")
    message = caught.value.message
    assert f"not signed: {pushed.digest}" in message
    assert "timestamp authority" in message and "HTTP 400" in message
    assert caught.value.exit_code == EXIT_INVALID_SIGNATURE
    assert caught.value.hint is not None and "--no-timestamp" in caught.value.hint
    for artifact_type in (SIGNATURE_ARTIFACT_TYPE, ATTESTATION_ARTIFACT_TYPE):
        assert pull(ref, pushed.digest, artifact_type) == []
