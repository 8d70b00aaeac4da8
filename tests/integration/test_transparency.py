"""Transparency (issue 14, docs/transparency.md) end to end: signing logs every bundle in a real
Rekor v2 log (sigstore/rekor-tiles on loopback), verification checks the entries offline (inside
a network namespace with no interfaces), and each check refuses its own tampering."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.bundle import ATTESTATION_ARTIFACT_TYPE, SIGNATURE_ARTIFACT_TYPE, Bundle
from opk_sign.cli.main import main
from opk_sign.errors import (
    EXIT_INVALID_SIGNATURE,
    EXIT_OK,
    EXIT_REGISTRY,
    EXIT_USAGE,
    SigningError,
    TransparencyError,
)
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import SigningOptions, SigningResult, sign_image
from opk_sign.tlog.cert import parse_certificate
from opk_sign.tlog.checkpoint import TlogTrust
from opk_sign.tlog.hashedrekord import LoggedEntry
from opk_sign.tlog.note import SIG_COSIGNATURE_V1, VerifierKey
from opk_sign.tlog.verify import verify_tlog
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, olareg
from tests.services.rekor import RekorLog, new_log_key, rekor_log

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("transparency")]

REPO = "octo-org/app"


@dataclass(frozen=True)
class World:
    emulator: GitHubOIDCEmulator
    registry: Registry
    log: RekorLog
    other_log: RekorLog  # another origin, another key
    work: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("transparency")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("OPK_SIGN_TRUST_DIR", str(work / "no-trust"))
    monkeypatch.setenv("DOCKER_CONFIG", str(work / "no-docker-config"))
    try:
        with (
            GitHubOIDCEmulator(key=generated_op_key(0)) as emulator,
            olareg(work / "registry") as registry,
            rekor_log(work / "log") as log,
            rekor_log(work / "other-log", origin="other.test") as other_log,
        ):
            emulator.set_claims(repository=REPO, ref="refs/tags/v1")
            yield World(emulator, registry, log, other_log, work)
    finally:
        monkeypatch.undo()


def client() -> RegistryClient:
    return RegistryClient(Keychain.anonymous())


def sign(world: World, tag: str, tlog: str = "never", tlog_url: str = "") -> SigningResult:
    with client() as c:
        push_sample_image(c, tag, ("linux/amd64",), index=False)
        provider = GitHubActionsProvider(env=world.emulator.env(), issuer=world.emulator.issuer)
        options = SigningOptions(tlog=tlog, tlog_url=tlog_url or "https://log.invalid")
        return sign_image(tag, provider=provider, client=c, options=options)


def bundles(ref: str, digest: str) -> list[Bundle]:
    reference = Reference.parse(ref)
    found = []
    with client() as c:
        for artifact_type in (SIGNATURE_ARTIFACT_TYPE, ATTESTATION_ARTIFACT_TYPE):
            for descriptor in c.list_referrers(reference, digest, artifact_type):
                data, _ = c.get_manifest(reference, descriptor.digest)
                manifest = parse_manifest(data)
                layer = manifest.layers[0]  # type: ignore[union-attr]
                found.append(Bundle.from_json(c.get_blob(reference, layer.digest)))
    return found


@dataclass(frozen=True)
class Signed:
    tag: str
    digest: str
    bundles: list[Bundle]


@pytest.fixture(scope="module")
def logged(world: World) -> Signed:
    tag = world.registry.ref(REPO, "logged")
    result = sign(world, tag, tlog="always", tlog_url=world.log.url)
    return Signed(tag, result.digest, bundles(tag, result.digest))


def test_sign_tlog_always_puts_a_verified_entry_in_every_bundle(
    world: World, logged: Signed
) -> None:
    assert len(logged.bundles) == 2  # the signature and the provenance attestation
    for bundle in logged.bundles:
        (entry,) = bundle.tlog_entries
        assert entry["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.2"}
        # What rekor-tiles writes, and verify_tlog now checks: the log ID is the whole hash
        # behind the checkpoint key's note key ID; no integrated time, no inclusion promise.
        assert base64.b64decode(entry["logId"]["keyId"]) == world.log.key.log_id
        assert entry.get("integratedTime", "0") == "0" and entry.get("inclusionPromise") is None
        (verified,) = verify_tlog(bundle, world.log.trust(), required=True)
        assert verified.origin == "rekor.test"
        # The certificate the log holds carries the PK token and the Fulcio claims.
        body = LoggedEntry.parse(base64.b64decode(entry["canonicalizedBody"]))
        certified = parse_certificate(body.certificate)
        assert certified.pk_token.to_json() == bundle.pk_token.to_json()
        assert certified.fulcio[8] == world.emulator.issuer
        assert certified.fulcio[12] == f"https://github.com/{REPO}"
        assert certified.fulcio[14] == "refs/tags/v1"
    # Both entries are in the log's tiles, the last checkpoint covering them.
    assert (world.log.storage / "checkpoint").read_text().startswith("rekor.test\n")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_verify_require_tlog_passes_with_no_network(world: World, logged: Signed) -> None:
    if subprocess.run(["unshare", "-rn", "true"], check=False).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    kit = world.work / "kit"
    keys = world.log.keys_file(world.work / "tlog-keys.txt")
    argv = ["download", logged.tag, "--dir", str(kit), "--issuer", world.emulator.issuer]
    assert main([*argv, "--tlog-keys", str(keys)]) == EXIT_OK
    assert (kit / "opk-sign" / "tlog-keys.txt").read_text() == keys.read_text()
    name = Reference.parse(logged.tag).name
    verify = [
        *(sys.executable, "-m", "opk_sign.cli", "verify", "--issuer", world.emulator.issuer),
        *("--from-dir", str(kit), "--repository", REPO, "--no-trust-repo"),
        *("--require-tlog", "--tlog-keys", str(keys), f"{name}@{logged.digest}"),
    ]
    done = subprocess.run(["unshare", "-rn", *verify], check=False, capture_output=True, text=True)
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    # The kit carries the log keys: --require-tlog alone is enough.
    bare = [a for a in verify if a not in ("--tlog-keys", str(keys))]
    done = subprocess.run(["unshare", "-rn", *bare], check=False, capture_output=True, text=True)
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    # The same kit under the other log's key: the entries are refused, still offline.
    other = world.other_log.keys_file(world.work / "other-keys.txt")
    verify[verify.index(str(keys))] = str(other)
    done = subprocess.run(["unshare", "-rn", *verify], check=False, capture_output=True, text=True)
    assert done.returncode == EXIT_INVALID_SIGNATURE, done.stdout + done.stderr
    assert "not a trusted log" in done.stdout + done.stderr


def test_verify_online_require_tlog_and_a_stripped_entry_is_12(
    world: World, logged: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = world.log.keys_file(world.work / "tlog-keys-online.txt")
    common = ["verify", "--issuer", world.emulator.issuer, "--repository", REPO, "--no-trust-repo"]
    capsys.readouterr()
    assert main([*common, "--require-tlog", "--tlog-keys", str(keys), logged.tag]) == EXIT_OK
    # The entry that was verified is reported: in the text and in the JSON document.
    assert f"logged:         signature in {world.log.origin}, entry " in capsys.readouterr().out
    assert main([*common, "--tlog-keys", str(keys), "-o", "json", logged.tag]) == EXIT_OK
    (check,) = json.loads(capsys.readouterr().out)["manifests"][0]["bundles"]
    (entry,) = check["transparencyLog"]
    assert entry["origin"] == world.log.origin and 0 <= entry["logIndex"] < entry["treeSize"]
    # Signed without a log (as if the entry had been stripped): refused when required...
    bare = world.registry.ref(REPO, "bare")
    sign(world, bare, tlog="never")
    capsys.readouterr()
    code = main([*common, "--require-tlog", "--tlog-keys", str(keys), bare])
    assert code == EXIT_INVALID_SIGNATURE
    assert "no transparency log entry, and one is required" in capsys.readouterr().out
    # ... and by a policy file saying `transparency: required`.
    policy = world.work / "policy.yml"
    policy.write_text(
        f"issuer: {world.emulator.issuer}\nrepository: {REPO}\ntransparency: required\n"
    )
    argv = ["verify", "--issuer", world.emulator.issuer, "--policy", str(policy)]
    argv += ["--no-trust-repo", "--tlog-keys", str(keys)]
    assert main([*argv, bare]) == EXIT_INVALID_SIGNATURE
    assert main([*argv, logged.tag]) == EXIT_OK
    # Not required: a bundle without an entry verifies as before (and reports no entry).
    capsys.readouterr()
    assert main([*common, "--tlog-keys", str(keys), "-o", "json", bare]) == EXIT_OK
    (check,) = json.loads(capsys.readouterr().out)["manifests"][0]["bundles"]
    assert "transparencyLog" not in check
    # Required without any trusted log key: a usage error, before anything is read.
    assert main([*common, "--require-tlog", bare]) == EXIT_USAGE


def _proof(bundle: Bundle) -> dict[str, object]:
    proof = bundle.tlog_entries[0]["inclusionProof"]
    assert isinstance(proof, dict)
    return proof


def _with_entry(bundle: Bundle, entry: dict[str, object]) -> Bundle:
    return replace(bundle, tlog_entries=(entry,))


def test_a_tampered_inclusion_proof_is_refused(world: World) -> None:
    # Three more entries, so that the proofs have hashes to tamper with.
    tag = world.registry.ref(REPO, "proofs")
    result = sign(world, tag, tlog="always", tlog_url=world.log.url)
    bundle = bundles(tag, result.digest)[0]
    entry = copy.deepcopy(bundle.tlog_entries[0])
    proof = entry["inclusionProof"]
    assert isinstance(proof, dict) and proof["hashes"], "the log has more than one entry"
    first = bytearray(base64.b64decode(proof["hashes"][0]))
    first[0] ^= 1
    proof["hashes"][0] = base64.b64encode(first).decode()
    with pytest.raises(TransparencyError, match="does not lead to the checkpoint's root"):
        verify_tlog(_with_entry(bundle, entry), world.log.trust())
    # A proof for another position in the tree.
    entry = copy.deepcopy(bundle.tlog_entries[0])
    moved = int(entry.get("logIndex", "0")) ^ 1
    entry["logIndex"] = entry["inclusionProof"]["logIndex"] = str(moved)
    with pytest.raises(TransparencyError, match="inclusion proof"):
        verify_tlog(_with_entry(bundle, entry), world.log.trust())


def test_a_checkpoint_signed_by_another_key_is_refused(world: World, logged: Signed) -> None:
    impostor = new_log_key("rekor.test", world.work / "impostor.pem")
    with pytest.raises(TransparencyError, match="not signed by a trusted key of that log"):
        verify_tlog(logged.bundles[0], TlogTrust((impostor,)))


def test_a_checkpoint_of_another_origin_is_refused(world: World) -> None:
    tag = world.registry.ref(REPO, "other-origin")
    result = sign(world, tag, tlog="always", tlog_url=world.other_log.url)
    bundle = bundles(tag, result.digest)[0]
    assert verify_tlog(bundle, world.other_log.trust())[0].origin == "other.test"
    # The trusted key's name is the origin: the other log's checkpoint is not the trusted log's,
    # even re-labelled with the trusted key's name.
    with pytest.raises(TransparencyError, match="'other.test' is not a trusted log"):
        verify_tlog(bundle, world.log.trust())
    renamed = VerifierKey("other.test", world.log.key.sig_type, world.log.key.key)
    with pytest.raises(TransparencyError, match="not signed by a trusted key of that log"):
        verify_tlog(bundle, TlogTrust((renamed,)))


def test_a_valid_proof_of_another_entry_is_refused(world: World, logged: Signed) -> None:
    signature, attestation = sorted(logged.bundles, key=lambda b: b.osm is None)
    # The attestation's entry (a valid proof in the same log, by the same PK token) moved onto
    # the signature bundle.
    swapped = _with_entry(signature, attestation.tlog_entries[0])
    with pytest.raises(TransparencyError, match="body differs from the one rebuilt"):
        verify_tlog(swapped, world.log.trust())


def test_a_witness_quorum_not_met_is_refused(world: World, logged: Signed) -> None:
    absent = VerifierKey("witness.test/absent", SIG_COSIGNATURE_V1, bytes(range(32)))
    trust = TlogTrust((world.log.key,), (absent,), 1)
    with pytest.raises(TransparencyError, match="cosigned by 0 trusted witness"):
        verify_tlog(logged.bundles[0], trust)
    assert verify_tlog(logged.bundles[0], TlogTrust((world.log.key,), (absent,), 0))


def test_tlog_auto_logs_for_a_public_repository_only(world: World) -> None:
    public = world.registry.ref(REPO, "auto-public")
    result = sign(world, public, tlog="auto", tlog_url=world.log.url)
    assert all(b.tlog_entries for b in bundles(public, result.digest))
    world.emulator.set_claims(repository_visibility="private")
    try:
        private = world.registry.ref(REPO, "auto-private")
        size = (world.log.storage / "checkpoint").read_text().split("\n")[1]
        result = sign(world, private, tlog="auto", tlog_url=world.log.url)
        assert not any(b.tlog_entries for b in bundles(private, result.digest))
        assert (world.log.storage / "checkpoint").read_text().split("\n")[1] == size
    finally:
        world.emulator.set_claims(repository_visibility="public")


def test_a_failing_log_fails_signing_before_anything_is_pushed(world: World) -> None:
    tag = world.registry.ref(REPO, "log-down")
    with client() as c:
        top = push_sample_image(c, tag, ("linux/amd64",), index=False)
        provider = GitHubActionsProvider(env=world.emulator.env(), issuer=world.emulator.issuer)
        options = SigningOptions(tlog="always", tlog_url="http://127.0.0.1:9/")
        with pytest.raises(SigningError, match="could not reach the transparency log") as caught:
            sign_image(tag, provider=provider, client=c, options=options)
    assert caught.value.exit_code == EXIT_REGISTRY
    assert bundles(tag, top.digest) == []


def test_sigstore_python_verifies_what_opk_sign_logged(world: World, logged: Signed) -> None:
    # An independent client as the oracle: sigstore-python's own inclusion-proof and checkpoint
    # checks (internal API: there is no public one taking a custom log key) accept every entry
    # opk-sign stored, under the loopback log's key, and refuse a tampered one.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from sigstore._internal.merkle import verify_merkle_inclusion
    from sigstore._internal.rekor.checkpoint import verify_checkpoint
    from sigstore._internal.trust import Keyring, RekorKeyring
    from sigstore.errors import VerificationError
    from sigstore.models import TransparencyLogEntry
    from sigstore_models.common import v1 as common_v1
    from sigstore_models.rekor.v1 import TransparencyLogEntry as Inner

    der = ed25519.Ed25519PublicKey.from_public_bytes(world.log.key.key).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = common_v1.PublicKey.from_json(
        json.dumps({"rawBytes": base64.b64encode(der).decode(), "keyDetails": "PKIX_ED25519"})
    )
    keyring = RekorKeyring(Keyring([public]))
    for bundle in logged.bundles:
        entry = TransparencyLogEntry(Inner.from_json(json.dumps(bundle.tlog_entries[0])))
        verify_merkle_inclusion(entry)
        verify_checkpoint(keyring, entry)
    tampered = copy.deepcopy(logged.bundles[0].tlog_entries[0])
    body = bytearray(base64.b64decode(tampered["canonicalizedBody"]))
    body[-3] ^= 1
    tampered["canonicalizedBody"] = base64.b64encode(body).decode()
    with pytest.raises(VerificationError):
        verify_merkle_inclusion(TransparencyLogEntry(Inner.from_json(json.dumps(tampered))))


def test_witnessed_checkpoints_meet_the_quorum(world: World) -> None:
    # A real witness (transparency-dev's omniwitness, cosignature/v1) asked by the log to cosign
    # every checkpoint (--witness-policy-path): the entries carry its cosignature.
    from tests.services.rekor import witness

    work = world.work / "witnessed"
    (work / "log").mkdir(parents=True)
    key = new_log_key("witnessed.test", work / "log" / "log-key.pem")
    with (
        witness(work / "w1", "witnessed.test", key, "http://127.0.0.1:1/") as w1,
        rekor_log(work / "log", origin="witnessed.test", witnesses=[w1], key=key) as log,
    ):
        tag = world.registry.ref(REPO, "witnessed")
        result = sign(world, tag, tlog="always", tlog_url=log.url)
        bundle = bundles(tag, result.digest)[0]
    (verified,) = verify_tlog(bundle, log.trust(quorum=1), required=True)
    assert list(verified.cosigners) == [w1.key.name]
    keys = log.keys_file(work / "keys.txt")
    assert f"witness {w1.key.encode()}" in keys.read_text()
    # Another witness required as well: the quorum of 2 is not met.
    other = VerifierKey("witness.test/other", SIG_COSIGNATURE_V1, bytes(32 * [7]))
    with pytest.raises(TransparencyError, match="cosigned by 1 trusted witness"):
        verify_tlog(bundle, TlogTrust((log.key,), (w1.key, other), 2))
    # A witness of the same name with another key did not cosign.
    with pytest.raises(TransparencyError, match="cosigned by 0 trusted witness"):
        verify_tlog(bundle, TlogTrust((log.key,), (replace(w1.key, key=bytes(32 * [9])),), 1))


def _junk_entry(world: World, log: RekorLog) -> None:
    """Log a certificate whose PK token (in the repository's name) has a broken GQ proof: it is
    self-signed by the key its CIC commits to, so only the GQ check can tell it is junk."""
    import hashlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from opk_sign.pktoken import PKToken
    from opk_sign.sign.image import obtain_signer
    from opk_sign.tlog.cert import build_certificate
    from opk_sign.tlog.client import log_entry
    from opk_sign.tlog.hashedrekord import SignedDigest

    provider = GitHubActionsProvider(env=world.emulator.env(), issuer=world.emulator.issuer)
    signer = obtain_signer(provider)
    doc = json.loads(signer.pk_token.to_json())
    op = doc["signatures"][0]  # [OP, CIC]: the OP's signature is the GQ256 proof
    op["signature"] = ("B" if op["signature"][5] == "A" else "A").join(
        (op["signature"][:5], op["signature"][6:])
    )
    forged = PKToken.from_json(json.dumps(doc))
    key = signer.user_key.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    certificate = build_certificate(forged, key, signer.claims)
    digest = hashlib.sha256(b"not an image").digest()
    signature_der = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    log_entry(log.url, SignedDigest(digest, signature_der), certificate)


def test_the_monitor_reports_the_signatures_in_a_repository_name(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    work = world.work / "monitor"
    release = "octo-org/app/.github/workflows/release.yml"
    with rekor_log(work / "log", origin="monitored.test") as log:
        expected = sign(world, world.registry.ref(REPO, "m1"), tlog="always", tlog_url=log.url)
        world.emulator.set_claims(workflow_file=".github/workflows/sneaky.yml")
        try:
            sneaky = sign(world, world.registry.ref(REPO, "m2"), tlog="always", tlog_url=log.url)
        finally:
            world.emulator.set_claims(workflow_file=".github/workflows/release.yml")
        world.emulator.set_claims(repository="other-org/else")
        try:
            sign(world, world.registry.ref("other-org/else", "m3"), tlog="always", tlog_url=log.url)
            world.emulator.set_claims(repository=REPO)
            _junk_entry(world, log)
        finally:
            world.emulator.set_claims(repository=REPO)
        keys = log.keys_file(work / "keys.txt")
        state = work / "state.json"
        argv = ["log", "monitor", "--repository", REPO, "--log-url", log.tiles_url]
        argv += ["--state", str(state), "--tlog-keys", str(keys)]
        argv += ["--issuer", world.emulator.issuer, "--expect-workflow", release]
        capsys.readouterr()
        assert main(argv) == 1  # the sneaky workflow's signature
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        signatures = [line for line in lines if not line.get("junk")]
        junk = [line for line in lines if line.get("junk")]
        # Two bundles per image (signature, provenance) for each of the two images in REPO's
        # name; nothing of other-org/else; the forged certificate as junk.
        assert len(signatures) == 4
        assert {s["repository"] for s in signatures} == {REPO}
        assert {s["digest"] for s in signatures} == {expected.digest, sneaky.digest}
        assert {s["kind"] for s in signatures} == {"signature", "https://slsa.dev/provenance/v1"}
        by_workflow = {s["workflow"].partition("@")[0]: s["expected"] for s in signatures}
        assert by_workflow == {release: True, "octo-org/app/.github/workflows/sneaky.yml": False}
        assert all(s["ref"] == "refs/tags/v1" and s["sha"] and s["time"] for s in signatures)
        (forged,) = junk
        assert forged["repository"] == REPO and "GQ256" in forged["reason"], forged
        assert "workflow" not in forged and "image" not in forged
        # The next run starts where this one ended: nothing new, nothing unexpected.
        assert main(argv) == 0
        assert capsys.readouterr().out == ""
        sign(world, world.registry.ref(REPO, "m4"), tlog="always", tlog_url=log.url)
        assert main(argv) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2
        # A first run from the newest checkpoint (its right edge from the hash tiles) sees only
        # what comes after.
        latest = ["log", "monitor", "--repository", REPO, "--log-url", log.tiles_url]
        latest += ["--state", str(work / "latest.json"), "--tlog-keys", str(keys), "--from-latest"]
        latest += ["--issuer", world.emulator.issuer, "--expect-workflow", release]
        assert main(latest) == 0
        assert capsys.readouterr().out == ""
        assert json.loads((work / "latest.json").read_text())["size"] > 0
        sign(world, world.registry.ref(REPO, "m4b"), tlog="always", tlog_url=log.url)
        assert main(latest) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2
        # The owner's view covers both of its repositories' signatures, if asked by owner.
        owner = ["log", "monitor", "--owner", "octo-org", "--log-url", log.tiles_url]
        owner += ["--state", str(work / "owner.json"), "--tlog-keys", str(keys)]
        assert main([*owner, "--issuer", world.emulator.issuer, "--expect-workflow", release]) == 1
        # A state that does not match the log (another history): refused as inconsistent.
        doc = json.loads(state.read_text())
        doc["compactRange"][0] = base64.b64encode(bytes(32)).decode()
        state.write_text(json.dumps(doc))
        sign(world, world.registry.ref(REPO, "m5"), tlog="always", tlog_url=log.url)
        capsys.readouterr()
        assert main(argv) == EXIT_INVALID_SIGNATURE
        # m5's signatures were read, but nothing unverified is reported.
        captured = capsys.readouterr()
        assert "do not add up to its signed checkpoint" in captured.err
        assert captured.out == ""


def _hostile_entry(world: World, log: RekorLog, repository: str) -> None:
    """Log what anyone can (red team F2): a genuine signature of ``repository``'s run whose
    self-signed certificate's description is 3000 '[' (json.loads: RecursionError)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from opk_sign.sign.image import obtain_signer
    from opk_sign.tlog.cert import DESCRIPTION_OID
    from opk_sign.tlog.client import log_entry
    from opk_sign.tlog.hashedrekord import SignedDigest

    world.emulator.set_claims(repository=repository)
    try:
        provider = GitHubActionsProvider(env=world.emulator.env(), issuer=world.emulator.issuer)
        signer = obtain_signer(provider)
    finally:
        world.emulator.set_claims(repository=REPO)
    key = signer.user_key.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "x"),
            x509.NameAttribute(DESCRIPTION_OID, "[" * 3000),
        ]
    )
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier(signer.pk_token.to_json()), False)
        .sign(key, hashes.SHA256())
    )
    digest = hashlib.sha256(b"anything").digest()
    signature_der = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    der = certificate.public_bytes(serialization.Encoding.DER)
    log_entry(log.url, SignedDigest(digest, signature_der), der)


def test_a_hostile_certificate_in_the_log_does_not_stop_the_monitor(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real log takes the entry (it checks the signature only); the monitor reads on past it,
    # reports the signature logged after it, and saves its state.
    work = world.work / "hostile"
    release = "octo-org/app/.github/workflows/release.yml"
    with rekor_log(work / "log", origin="hostile.test") as log:
        _hostile_entry(world, log, "other-org/else")
        signed = sign(world, world.registry.ref(REPO, "h1"), tlog="always", tlog_url=log.url)
        keys = log.keys_file(work / "keys.txt")
        state = work / "state.json"
        argv = ["log", "monitor", "--repository", REPO, "--log-url", log.tiles_url]
        argv += ["--state", str(state), "--tlog-keys", str(keys)]
        argv += ["--issuer", world.emulator.issuer, "--expect-workflow", release]
        capsys.readouterr()
        assert main(argv) == EXIT_OK
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert {line["digest"] for line in lines} == {signed.digest} and len(lines) == 2
        assert json.loads(state.read_text())["size"] == 3


def test_the_trust_repository_distributes_the_keys_and_requires_entries(
    world: World, logged: Signed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A trust repository whose policy for the name says `transparency: required` and whose
    # tlog/keys.txt target names the log: verification by default needs no flag at all.
    from tests.services.tuf import StaticServer, cli

    monkeypatch.setenv("OPK_SIGN_TRUST_DIR", str(tmp_path / "trust"))
    bare = world.registry.ref(REPO, "bare-tuf")
    sign(world, bare, tlog="never")
    work, keys, out = tmp_path / "repo", tmp_path / "keys", tmp_path / "published"
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    policy = {"issuer": world.emulator.issuer, "repository": REPO, "transparency": "required"}
    (inputs / "team.json").write_text(json.dumps(policy))
    (inputs / "tlog.txt").write_text(world.log.trust().encode())
    for step in (
        ("init", work, "--keys-dir", keys),
        ("set-policy", work, "team", inputs / "team.json", "--keys-dir", keys),
        ("map", work, f"{world.registry.host}/{REPO}", "team", "--keys-dir", keys),
        ("set-tlog-keys", work, inputs / "tlog.txt", "--keys-dir", keys),
        ("publish", work, out),
    ):
        assert cli("trust", "repo", *step) == 0, step
    (inputs / "bad.txt").write_text("log not-a-key\n")
    assert cli("trust", "repo", "set-tlog-keys", work, inputs / "bad.txt", "--keys-dir", keys) == 2
    with StaticServer() as server:
        server.serve(out)
        root = out / "metadata" / "1.root.json"
        assert cli("trust", "init", "--root", root, "--url", server.url) == 0
        assert cli("verify", "--issuer", world.emulator.issuer, logged.tag) == EXIT_OK
        assert cli("verify", "--issuer", world.emulator.issuer, bare) == EXIT_INVALID_SIGNATURE


def test_the_cli_flags_reach_the_log(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = world.registry.ref(REPO, "cli")
    with client() as c:
        top = push_sample_image(c, tag, ("linux/amd64",), index=False)
    for name, value in world.emulator.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPK_SIGN_OIDC_ISSUER", world.emulator.issuer)
    argv = ["sign", tag, "--no-timestamp", "--tlog-url", world.log.url]
    assert main([*argv, "--tlog", "always", "--no-provenance"]) == EXIT_OK
    (bundle,) = bundles(tag, top.digest)
    assert verify_tlog(bundle, world.log.trust(), required=True)
    # The default comes from OPK_SIGN_TLOG (tests/conftest.py: never), else auto.
    monkeypatch.setenv("OPK_SIGN_TLOG", "auto")
    assert main([*argv, "--no-provenance"]) == EXIT_OK
    assert all(b.tlog_entries for b in bundles(tag, top.digest))
    capsys.readouterr()
    assert main([*argv, "--tlog", "sometimes"]) == EXIT_USAGE
    assert (
        main(["sign", tag, "--tlog", "always", "--tlog-url", "http://log.example/"]) == EXIT_USAGE
    )
    assert "https" in capsys.readouterr().err


def test_a_log_with_an_ecdsa_checkpoint_key(world: World) -> None:
    # c2sp.org/signed-note's ECDSA type (0x02): key ID the hash of the SPKI, as Rekor v2 signs.
    work = world.work / "ecdsa"
    (work / "log").mkdir(parents=True)
    key = new_log_key("ecdsa.test", work / "log" / "log-key.pem", ecdsa=True)
    with rekor_log(work / "log", origin="ecdsa.test", key=key) as log:
        tag = world.registry.ref(REPO, "ecdsa")
        result = sign(world, tag, tlog="always", tlog_url=log.url)
    for bundle in bundles(tag, result.digest):
        (verified,) = verify_tlog(bundle, log.trust(), required=True)
        assert verified.origin == "ecdsa.test"
        # An ECDSA key's log ID is the SHA-256 of its SPKI (the note key ID its first 4 bytes).
        log_id = base64.b64decode(bundle.tlog_entries[0]["logId"]["keyId"])
        assert log_id == key.log_id == hashlib.sha256(key.key).digest()
    with pytest.raises(TransparencyError, match="not signed by a trusted key"):
        verify_tlog(bundle, TlogTrust((new_log_key("ecdsa.test", work / "x.pem", ecdsa=True),)))
