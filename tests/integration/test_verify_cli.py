"""`opk-sign verify` end to end: images signed by `sign_image` on real loopback registries, verified
through the CLI; every exit code of the contract reached (issue 5, items 2 and 3)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.bundle import BUNDLE_MEDIA_TYPE, SIGNATURE_ARTIFACT_TYPE, Bundle
from opk_sign.cli.main import main
from opk_sign.errors import (
    EXIT_INVALID_SIGNATURE,
    EXIT_NO_SIGNATURES,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_POLICY_MISMATCH,
    EXIT_REGISTRY,
    EXIT_TRUST,
    EXIT_USAGE,
)
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import ImageManifest, parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import sign_image
from opk_sign.verify.vsa import VSA_PREDICATE_TYPE
from tests.services.faultproxy import Fault, fault_proxy
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, distribution, olareg

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("verify")]

REPO = "octo-org/octo-repo"
WORKFLOW = f"{REPO}/.github/workflows/release.yml@refs/tags/v1"
PROVENANCE = "https://slsa.dev/provenance/v1"


@dataclass(frozen=True)
class Fleet:
    """Images on one registry: signed (single and multi-arch), unsigned, signed by another repo."""

    registry: Registry
    issuer: str
    jwks: dict[str, object]
    single: str
    multi: str
    unsigned: str
    other_repo: str


def _client() -> RegistryClient:
    return RegistryClient(Keychain.anonymous())


def _sign(emulator: GitHubOIDCEmulator, ref: str) -> str:
    provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
    with _client() as c:
        return sign_image(ref, provider=provider, client=c).digest


@pytest.fixture(scope="module")
def emulator() -> Iterator[GitHubOIDCEmulator]:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as running:
        running.set_claims(ref="refs/tags/v1", repository=REPO)
        yield running


@pytest.fixture(scope="module", params=["olareg", "distribution"])
def fleet(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    emulator: GitHubOIDCEmulator,
) -> Iterator[Fleet]:
    start = olareg if request.param == "olareg" else distribution
    with start(tmp_path_factory.mktemp(request.param)) as registry, _client() as c:
        single = registry.ref("octo-org/app", "single")
        multi = registry.ref("octo-org/multi", "v1")
        unsigned = registry.ref("octo-org/unsigned", "v1")
        other = registry.ref("octo-org/other", "v1")
        push_sample_image(c, single, ("linux/amd64",), index=False)
        push_sample_image(c, multi, ("linux/amd64", "linux/arm64/v8"), index=True)
        push_sample_image(c, unsigned, ("linux/amd64",), index=False)
        push_sample_image(c, other, ("linux/amd64",), index=False)
        _sign(emulator, single)
        _sign(emulator, multi)
        emulator.set_claims(repository="evil-org/evil-repo")
        try:
            _sign(emulator, other)
        finally:
            emulator.set_claims(repository=REPO)
        yield Fleet(registry, emulator.issuer, emulator.jwks(), single, multi, unsigned, other)


def verify(fleet: Fleet, *args: str, policy: tuple[str, ...] = ("--repository", REPO)) -> int:
    return main(["verify", "--issuer", fleet.issuer, *policy, *args])


def json_out(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out.strip()
    try:
        return [json.loads(out)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in out.splitlines()]


# --- the outcomes, through the CLI ---------------------------------------------------------------


def test_signed_single_platform_image_verifies(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify(fleet, fleet.single, "--output", "json") == EXIT_OK
    (doc,) = json_out(capsys)
    assert doc["verified"] is True and doc["outcome"] == "verified" and doc["exitCode"] == 0
    assert doc["identity"]["repository"] == REPO
    assert doc["identity"]["job_workflow_ref"] == WORKFLOW
    assert len(doc["manifests"]) == 1


def test_text_report_names_the_signer(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(fleet, fleet.single) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("OK ") and REPO in out and WORKFLOW in out


def test_index_verifies_with_every_platform(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify(fleet, fleet.multi, "--output", "json") == EXIT_OK
    (doc,) = json_out(capsys)
    platforms = [m["platform"] for m in doc["manifests"]]
    assert platforms == [None, "linux/amd64", "linux/arm64/v8"]


def test_platform_flag_verifies_the_index_and_one_platform(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify(fleet, fleet.multi, "--platform", "linux/arm64", "--output", "json") == 0
    (doc,) = json_out(capsys)
    assert [m["platform"] for m in doc["manifests"]] == [None, "linux/arm64/v8"]
    assert verify(fleet, fleet.multi, "--platform", "linux/s390x") == EXIT_USAGE


def test_required_provenance_attestation(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(fleet, fleet.multi, "--attestation", PROVENANCE) == EXIT_OK
    capsys.readouterr()
    assert verify(fleet, fleet.single, "--attestation", "https://spdx.dev/Document") == (
        EXIT_POLICY_MISMATCH
    )
    out = capsys.readouterr().out
    assert "missing-attestation (exit 11)" in out
    assert "no attestation of type https://spdx.dev/Document" in out
    assert verify(fleet, fleet.single, "-o", "json", "--attestation", "https://spdx.dev/Document")
    (doc,) = json_out(capsys)
    assert (doc["outcome"], doc["exitCode"]) == ("missing-attestation", 11)


def test_unsigned_image_is_exit_10(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(fleet, fleet.unsigned) == EXIT_NO_SIGNATURES
    assert "no opk-sign signatures" in capsys.readouterr().out


def test_policy_mismatch_names_claim_and_value(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify(fleet, fleet.other_repo) == EXIT_POLICY_MISMATCH
    out = capsys.readouterr().out
    assert "claim 'repository' is 'evil-org/evil-repo'" in out
    assert f"the policy requires {REPO!r}" in out


def test_signature_moved_onto_another_image_is_exit_12(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The attacker copies the signed image's signature referrer onto the unsigned image.
    victim = fleet.registry.ref("octo-org/replayed", "v1")
    with _client() as c:
        target = push_sample_image(c, victim, ("linux/amd64",), index=False)
        source = Reference.parse(fleet.single)
        digest = c.resolve(source).digest
        (referrer,) = c.list_referrers(source, digest, SIGNATURE_ARTIFACT_TYPE)
        data, _ = c.get_manifest(source, referrer.digest)
        manifest = parse_manifest(data)
        assert isinstance(manifest, ImageManifest)
        bundle = Bundle.from_json(c.get_blob(source, manifest.layers[0].digest))
        subject = c.resolve(Reference.parse(victim))
        assert subject.digest == target.digest
        c.attach_artifact(
            Reference.parse(victim),
            subject,
            SIGNATURE_ARTIFACT_TYPE,
            bundle.to_json(),
            BUNDLE_MEDIA_TYPE,
            {},
        )
    assert verify(fleet, victim) == EXIT_INVALID_SIGNATURE
    assert "replayed from another" in capsys.readouterr().out


def test_registry_503_is_exit_13_not_unsigned(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    with fault_proxy(f"http://{fleet.registry.host}") as proxy:
        proxy.add(Fault("status", status=503, times=-1))
        image = fleet.single.replace(fleet.registry.host, proxy.host)
        assert verify(fleet, image) == EXIT_REGISTRY
    assert "503" in capsys.readouterr().out


def test_unreachable_jwks_is_exit_14(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    # A job signed with an issuer that has since gone away: its keys cannot be had.
    with GitHubOIDCEmulator(key=generated_op_key(1)) as gone:
        gone.set_claims(ref="refs/tags/v1", repository=REPO)
        image = fleet.registry.ref("octo-org/gone", "v1")
        with _client() as c:
            push_sample_image(c, image, ("linux/amd64",), index=False)
        _sign(gone, image)
        issuer = gone.issuer
    assert main(["verify", "--issuer", issuer, "--repository", REPO, image]) == EXIT_TRUST
    assert "could not fetch" in capsys.readouterr().out


def test_usage_errors_are_exit_2(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", fleet.single]) == EXIT_USAGE  # no policy
    assert "no identity policy" in capsys.readouterr().err
    assert main(["verify", "--repository", REPO]) == EXIT_USAGE  # no image
    assert main(["verify", "--owner-regex", "(", "--issuer", fleet.issuer, fleet.single]) == 2
    assert verify(fleet, fleet.single, "--expiry-policy", "forever") == EXIT_USAGE


# --- batch, JSON lines, VSA ----------------------------------------------------------------------


def test_batch_reports_each_image_and_the_worst_exit_code(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    images = tmp_path / "images.txt"
    images.write_text(f"# fleet\n{fleet.single}\n{fleet.multi}  # the index\n{fleet.unsigned}\n")
    assert verify(fleet, "--images-from", str(images), "--output", "json") == EXIT_NO_SIGNATURES
    docs = json_out(capsys)
    assert [d["outcome"] for d in docs] == ["verified", "verified", "no-signatures"]
    assert verify(fleet, fleet.single, fleet.other_repo, fleet.unsigned) == EXIT_POLICY_MISMATCH
    out = capsys.readouterr().out
    assert "1 of 3 images verified" in out and "IMAGE" in out


def test_vsa_is_written_for_each_verified_image(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    vsa = tmp_path / "vsa.jsonl"
    args = ("--attestation", PROVENANCE, "--vsa", str(vsa))
    assert verify(fleet, fleet.single, fleet.multi, *args) == EXIT_OK
    statements = [json.loads(line) for line in vsa.read_text().splitlines()]
    assert len(statements) == 2
    for statement in statements:
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert statement["predicateType"] == VSA_PREDICATE_TYPE
        predicate = statement["predicate"]
        assert predicate["verificationResult"] == "PASSED"
        assert predicate["verifiedLevels"] == ["SLSA_BUILD_LEVEL_2"]
        assert predicate["resourceUri"].startswith(f"oci://{fleet.registry.host}/octo-org/")
        digest = predicate["resourceUri"].rsplit("@sha256:", 1)[1]
        assert statement["subject"][0]["digest"] == {"sha256": digest}


# --- offline: a bundle file and a JWKS file, with the network cut -------------------------------


def _bundle_file(fleet: Fleet, tmp_path: Path) -> tuple[Path, Path, str]:
    source = Reference.parse(fleet.single)
    with _client() as c:
        digest = c.resolve(source).digest
        (referrer,) = c.list_referrers(source, digest, SIGNATURE_ARTIFACT_TYPE)
        data, _ = c.get_manifest(source, referrer.digest)
        manifest = parse_manifest(data)
        assert isinstance(manifest, ImageManifest)
        blob = c.get_blob(source, manifest.layers[0].digest)
    bundle, jwks = tmp_path / "bundle.json", tmp_path / "jwks.json"
    bundle.write_bytes(blob)
    jwks.write_text(json.dumps(fleet.jwks))
    return bundle, jwks, f"{source.name}@{digest}"


def test_bundle_file_verifies_offline(fleet: Fleet, tmp_path: Path) -> None:
    bundle, jwks, image = _bundle_file(fleet, tmp_path)
    args = ("--bundle", str(bundle), "--jwks", str(jwks))
    assert verify(fleet, image, *args) == EXIT_OK
    other = image.rsplit("@", 1)[0] + "@sha256:" + "0" * 64
    assert verify(fleet, other, *args) == EXIT_INVALID_SIGNATURE
    assert verify(fleet, image, *args, policy=("--repository", "x/y")) == EXIT_POLICY_MISMATCH
    assert verify(fleet, fleet.single, *args) == EXIT_USAGE  # a tag: the digest is needed


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_bundle_file_verifies_with_the_network_cut(fleet: Fleet, tmp_path: Path) -> None:
    bundle, jwks, image = _bundle_file(fleet, tmp_path)
    probe = subprocess.run(["unshare", "-rn", "true"], check=False, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot create a network namespace here")
    argv = [
        *("unshare", "-rn", sys.executable, "-m", "opk_sign.cli", "verify"),
        *("--issuer", fleet.issuer, "--repository", REPO),
        *("--bundle", str(bundle), "--jwks", str(jwks), image),
    ]
    # Inside the namespace not even loopback is up: any network use would fail the run.
    cut = subprocess.run(
        [*argv[:3], "-c", "import socket;socket.create_connection(('127.0.0.1', 1), 1)"],
        check=False,
        capture_output=True,
    )
    assert b"Network is unreachable" in cut.stderr
    done = subprocess.run(argv, check=False, capture_output=True, text=True)
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    assert done.stdout.startswith("OK ")
    # And without the JWKS file it must try the network, and fail with a trust error.
    online = [a for a in argv if a not in ("--jwks", str(jwks))]
    failed = subprocess.run(online, check=False, capture_output=True, text=True)
    assert failed.returncode == EXIT_TRUST, failed.stdout + failed.stderr


def test_a_missing_tag_or_repository_is_not_found_exit_15(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 12: a typo is its own outcome, never 13 (which a CI job retries).
    for missing in (
        fleet.registry.ref("octo-org/app", "no-such-tag"),
        fleet.registry.ref("octo-org/no-such-repo", "v1"),
    ):
        assert verify(fleet, missing, "--output", "json") == EXIT_NOT_FOUND
        doc = json_out(capsys)[0]
        assert doc["outcome"] == "not-found" and doc["exitCode"] == EXIT_NOT_FOUND
        assert "no such image" in doc["message"]
