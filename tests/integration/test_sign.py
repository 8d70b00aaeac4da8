"""`opk-sign sign` end to end: real registries on loopback, the GitHub OIDC emulator, and the Go
reference verifier checking what we pushed, pulled back from the registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.bundle import (
    ANNOTATION_IDENTITY,
    ANNOTATION_PREDICATE_TYPE,
    ATTESTATION_ARTIFACT_TYPE,
    BUNDLE_MEDIA_TYPE,
    SIGNATURE_ARTIFACT_TYPE,
    Bundle,
)
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_REGISTRY, SigningError, TokenRequestError
from opk_sign.oci import mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import ImageIndex, ImageManifest, parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.payloads import SLSA_PROVENANCE_V1, Statement, verify_envelope
from opk_sign.payloads.simplesigning import SimpleSigningPayload
from opk_sign.pktoken import StaticJWKS, verify_osm, verify_pktoken
from opk_sign.sign.image import CustomPredicate, SigningOptions, SigningResult, sign_image
from opk_sign.trust.timestamp import verify_timestamp
from tests.services.faultproxy import Fault, fault_proxy
from tests.services.images import push_sample_image
from tests.services.interop import go_verify, verified_message
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, distribution, olareg
from tests.services.tsa import TimestampAuthority

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("sign")]

WORKFLOW = "octo-org/octo-repo/.github/workflows/release.yml@refs/tags/v1"


@pytest.fixture(scope="module")
def emulator() -> Iterator[GitHubOIDCEmulator]:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as running:
        running.set_claims(ref="refs/tags/v1")
        yield running


@pytest.fixture(scope="module", params=["olareg", "distribution"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    start = olareg if request.param == "olareg" else distribution
    with start(tmp_path_factory.mktemp(request.param)) as running:
        yield running


def client() -> RegistryClient:
    return RegistryClient(Keychain.anonymous())


def provider(emulator: GitHubOIDCEmulator) -> GitHubActionsProvider:
    return GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)


def sign(
    emulator: GitHubOIDCEmulator, image: str, options: SigningOptions | None = None
) -> SigningResult:
    with client() as c:
        return sign_image(image, provider=provider(emulator), client=c, options=options)


def referrers(ref: str, digest: str, artifact_type: str) -> list[Bundle]:
    """The bundles of ``artifact_type`` referring to ``digest``, pulled back from the registry."""
    reference = Reference.parse(ref)
    bundles = []
    with client() as c:
        for descriptor in c.list_referrers(reference, digest, artifact_type):
            data, _ = c.get_manifest(reference, descriptor.digest)
            manifest = parse_manifest(data)
            assert isinstance(manifest, ImageManifest)
            assert manifest.artifact_type == artifact_type
            assert manifest.subject is not None and manifest.subject.digest == digest
            assert manifest.config.media_type == mediatypes.OCI_EMPTY
            assert [layer.media_type for layer in manifest.layers] == [BUNDLE_MEDIA_TYPE]
            assert descriptor.annotations.get(ANNOTATION_IDENTITY) == WORKFLOW
            blob = c.get_blob(reference, manifest.layers[0].digest)
            bundles.append(Bundle.from_json(blob))
    return bundles


def platform_digests(ref: str, top: str) -> list[str]:
    with client() as c:
        data, _ = c.get_manifest(Reference.parse(ref), top)
    manifest = parse_manifest(data)
    return [d.digest for d in manifest.manifests] if isinstance(manifest, ImageIndex) else [top]


# --- item 1: single- and multi-arch on both registries, checked by the Go verifier -----------------


@pytest.mark.parametrize("platforms", [("linux/amd64",), ("linux/amd64", "linux/arm64/v8")])
def test_sign_then_go_verifier_accepts_what_the_registry_holds(
    registry: Registry, emulator: GitHubOIDCEmulator, platforms: tuple[str, ...]
) -> None:
    repo = f"octo-org/app-{len(platforms)}"
    ref = registry.ref(repo, "v1")
    with client() as c:
        pushed = push_sample_image(c, ref, platforms, index=len(platforms) > 1)

    result = sign(emulator, ref)

    assert result.digest == pushed.digest
    assert result.identity.principal == WORKFLOW
    platform_manifests = platform_digests(ref, pushed.digest)
    expected = set(platform_manifests) | {pushed.digest}
    assert {m.digest for m in result.manifests} == expected
    assert len(result.signatures) == len(expected)
    assert len(result.attestations) == len(platform_manifests)

    cases = []
    jwks = emulator.jwks()
    for digest in expected:
        signatures = referrers(ref, digest, SIGNATURE_ARTIFACT_TYPE)
        assert len(signatures) == 1, digest
        bundle = signatures[0]
        assert bundle.osm is not None
        cases.append(
            {
                "name": digest,
                "pktoken": bundle.pk_token.to_json().decode(),
                "osm": bundle.osm,
                "jwks": jwks,
                "issuer": emulator.issuer,
            }
        )
        # Ours agrees, and the payload names this digest and this repository.
        verified = verify_pktoken(
            bundle.pk_token, StaticJWKS(emulator.issuer, jwks), issuers={emulator.issuer}
        )
        payload = SimpleSigningPayload.parse(verify_osm(bundle.pk_token, bundle.osm))
        assert payload.manifest_digest == digest
        assert payload.docker_reference == Reference.parse(ref).name
        assert payload.optional["job_workflow_ref"] == WORKFLOW
        assert verified.claims["job_workflow_ref"] == WORKFLOW

        attestations = referrers(ref, digest, ATTESTATION_ARTIFACT_TYPE)
        if digest not in platform_manifests:
            assert attestations == []
            continue
        assert len(attestations) == 1
        envelope = attestations[0].dsse_envelope
        assert envelope is not None
        statement = Statement.parse(verify_envelope(envelope, verified.cic.public_key))
        assert statement.names_digest(digest)
        assert statement.predicate_type == SLSA_PROVENANCE_V1
        builder = statement.predicate["runDetails"]["builder"]["id"]
        assert builder == f"https://github.com/{WORKFLOW}"
        # One PK token for the whole run.
        assert attestations[0].pk_token.hash() == bundle.pk_token.hash()

    results = go_verify(cases)
    assert {name: (r["ok"], r["error"]) for name, r in results.items()} == {
        c["name"]: (True, "") for c in cases
    }
    for case in cases:
        message = SimpleSigningPayload.parse(verified_message(results[str(case["name"])]))
        assert message.manifest_digest == case["name"]


def test_go_verifier_refuses_a_pk_token_from_another_issuer(
    registry: Registry, emulator: GitHubOIDCEmulator
) -> None:
    # The check above can fail: the same bundle against keys the token was not signed by.
    ref = registry.ref("octo-org/negative", "v1")
    with client() as c:
        pushed = push_sample_image(c, ref, ["linux/amd64"], index=False)
    sign(emulator, ref)
    bundle = referrers(ref, pushed.digest, SIGNATURE_ARTIFACT_TYPE)[0]
    assert bundle.osm is not None
    with GitHubOIDCEmulator(key=generated_op_key(1)) as other:
        results = go_verify(
            [
                {
                    "name": "other-keys",
                    "pktoken": bundle.pk_token.to_json().decode(),
                    "osm": bundle.osm,
                    "jwks": other.jwks(),
                    "issuer": emulator.issuer,
                }
            ]
        )
    assert results["other-keys"]["ok"] is False


# --- options -------------------------------------------------------------------------------------


def test_sign_by_digest_without_recursion_signs_the_index_only(
    registry: Registry, emulator: GitHubOIDCEmulator
) -> None:
    ref = registry.ref("octo-org/norec", "v1")
    with client() as c:
        pushed = push_sample_image(c, ref)
    by_digest = f"{registry.host}/octo-org/norec@{pushed.digest}"
    result = sign(emulator, by_digest, SigningOptions(recursive=False))
    assert [m.digest for m in result.manifests] == [pushed.digest]
    assert result.attestations == []
    for child in platform_digests(ref, pushed.digest):
        assert referrers(ref, child, SIGNATURE_ARTIFACT_TYPE) == []


def test_no_provenance_and_custom_predicate(
    registry: Registry, emulator: GitHubOIDCEmulator
) -> None:
    ref = registry.ref("octo-org/sbom", "v1")
    with client() as c:
        pushed = push_sample_image(c, ref, ["linux/amd64"], index=False)
    sbom = CustomPredicate("https://spdx.dev/Document", {"spdxVersion": "SPDX-2.3"})
    result = sign(emulator, ref, SigningOptions(provenance=False, predicate=sbom))
    (manifest,) = result.manifests
    assert [a.predicate_type for a in manifest.attestations] == ["https://spdx.dev/Document"]
    (bundle,) = referrers(ref, pushed.digest, ATTESTATION_ARTIFACT_TYPE)
    assert bundle.dsse_envelope is not None
    statement = Statement.parse(bundle.dsse_envelope.payload)
    assert statement.predicate == {"spdxVersion": "SPDX-2.3"}
    with client() as c:
        (descriptor,) = c.list_referrers(
            Reference.parse(ref), pushed.digest, ATTESTATION_ARTIFACT_TYPE
        )
    assert descriptor.annotations[ANNOTATION_PREDICATE_TYPE] == "https://spdx.dev/Document"


def test_missing_token_variables_fail_before_any_write(
    registry: Registry, emulator: GitHubOIDCEmulator
) -> None:
    ref = registry.ref("octo-org/notoken", "v1")
    with client() as c:
        pushed = push_sample_image(c, ref, ["linux/amd64"], index=False)
    env = {k: v for k, v in emulator.env().items() if not k.startswith("ACTIONS_ID_TOKEN")}
    with client() as c, pytest.raises(TokenRequestError) as caught:
        sign_image(ref, provider=GitHubActionsProvider(env=env, issuer=emulator.issuer), client=c)
    assert "id-token: write" in caught.value.diagnostics()
    assert referrers(ref, pushed.digest, SIGNATURE_ARTIFACT_TYPE) == []


# --- all-or-nothing per manifest, and request counts ------------------------------------------------


def test_a_failed_push_names_what_was_signed_and_leaves_no_dangling_referrer(
    registry: Registry, emulator: GitHubOIDCEmulator
) -> None:
    ref = registry.ref("octo-org/faulty", "v1")
    with client() as c:
        pushed = push_sample_image(c, ref, ["linux/amd64", "linux/arm64"])
    platforms = platform_digests(ref, pushed.digest)
    with fault_proxy(registry.host) as proxy:
        # Every manifest PUT after the first three fails: the registry "goes down" mid-run.
        proxy.add(
            Fault("status", method="PUT", path=r"/manifests/sha256:", status=400, skip=2, times=-1)
        )
        image = f"{proxy.host}/octo-org/faulty:v1"
        with client() as c, pytest.raises(SigningError) as caught:
            sign_image(image, provider=provider(emulator), client=c)
    message = caught.value.message
    assert f"not signed: {pushed.digest} (index)" in message
    assert "signed: " in message
    assert caught.value.exit_code != 0
    # Nothing listed as a referrer points at a missing manifest or blob.
    for digest in [*platforms, pushed.digest]:
        for artifact_type in (SIGNATURE_ARTIFACT_TYPE, ATTESTATION_ARTIFACT_TYPE):
            referrers(ref, digest, artifact_type)  # fetches every manifest and blob, verified
    assert referrers(ref, pushed.digest, SIGNATURE_ARTIFACT_TYPE) == []


def test_registry_down_exits_13(registry: Registry, emulator: GitHubOIDCEmulator) -> None:
    ref = registry.ref("octo-org/down", "v1")
    with client() as c:
        push_sample_image(c, ref, ["linux/amd64"], index=False)
    with fault_proxy(registry.host) as proxy:
        proxy.add(Fault("status", method="PUT", path=r"/manifests/", status=503, times=-1))
        with client() as c, pytest.raises(SigningError) as caught:
            sign_image(f"{proxy.host}/octo-org/down:v1", provider=provider(emulator), client=c)
    assert caught.value.exit_code == EXIT_REGISTRY


def test_requests_per_referrer(registry: Registry, emulator: GitHubOIDCEmulator) -> None:
    """Requests per referrer written, once the run's one-time costs (the referrers API probe, the
    empty config blob) are paid: measured on the second image signed by one client."""
    for tag in ("warm", "v1"):
        with client() as c:
            push_sample_image(c, registry.ref("octo-org/count", tag))
    with fault_proxy(registry.host) as proxy, client() as c:
        sign_image(f"{proxy.host}/octo-org/count:warm", provider=provider(emulator), client=c)
        proxy.reset_counts()
        result = sign_image(
            f"{proxy.host}/octo-org/count:v1", provider=provider(emulator), client=c
        )
        log = proxy.describe()
        reads = proxy.count("GET", r"/manifests/(v1|sha256:)")  # not the fallback tags
        total = len(proxy.requests)
    written = len(result.signatures) + len(result.attestations)
    assert written == 5
    assert reads == 1, log  # the index; its platform manifests are named by it
    per_referrer = (total - reads) / written
    print(f"\n{registry.kind}: {per_referrer:.1f} requests per referrer\n{log}")
    # With the referrers API: HEAD empty config, POST blob, PUT manifest. Without it (the
    # referrers tag schema) also GET, PUT and re-read GET of the fallback index, and distribution
    # 2.8 takes no single-POST upload (POST + PUT).
    assert per_referrer <= (3 if registry.referrers_api else 5), log


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_sign_json_output(
    registry: Registry,
    emulator: GitHubOIDCEmulator,
    tsa: TimestampAuthority,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    ref = registry.ref("octo-org/cli", "v1")
    with client() as c:
        pushed = push_sample_image(c, ref)
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPK_SIGN_OIDC_ISSUER", emulator.issuer)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no stray credentials
    predicate = tmp_path / "scan.json"
    predicate.write_text('{"scanner": "none"}')
    code = main(
        [
            "sign",
            ref,
            "--output",
            "json",
            "--predicate",
            str(predicate),
            "--predicate-type",
            "https://example.com/scan/v1",
            "--timestamp-url",
            tsa.url,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    schema = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "sign.schema.json"
    jsonschema.validate(document, json.loads(schema.read_text()))
    assert document["image"] == ref  # as given; the same keys as verify's and inspect's
    assert document["reference"] == Reference.parse(ref).name
    assert document["digest"] == pushed.digest
    assert document["identity"] == WORKFLOW
    assert document["issuer"] == emulator.issuer
    assert len(document["signatures"]) == 3
    assert len(document["attestations"]) == 4  # provenance and the scan, per platform
    assert emulator.request_token not in captured.out + captured.err
    # Every bundle carries one timestamp by the loopback TSA over its own signature.
    for manifest in document["manifests"]:
        for artifact_type in (SIGNATURE_ARTIFACT_TYPE, ATTESTATION_ARTIFACT_TYPE):
            for bundle in referrers(ref, manifest["digest"], artifact_type):
                (timestamp,) = bundle.timestamps
                verify_timestamp(timestamp, bundle.signature_bytes(), tsa.trust)


def test_cli_sign_without_token_variables_exits_1_with_the_fix(
    registry: Registry,
    emulator: GitHubOIDCEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref = registry.ref("octo-org/cli-notoken", "v1")
    with client() as c:
        push_sample_image(c, ref, ["linux/amd64"], index=False)
    for name, value in emulator.env().items():
        if not name.startswith("ACTIONS_ID_TOKEN"):
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_URL", raising=False)
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", raising=False)
    monkeypatch.setenv("OPK_SIGN_OIDC_ISSUER", emulator.issuer)
    assert main(["sign", ref, "--no-timestamp"]) == 1
    assert "id-token: write" in capsys.readouterr().err
