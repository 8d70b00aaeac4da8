"""The offline kit (issue 12, item 2): `opk-sign download` writes an image's bundles and the trust
material to verify them; `opk-sign verify --from-dir` verifies from it inside a network namespace
with no usable interface, and refuses a kit with any file changed, each with its code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.bundle import SIGNATURE_ARTIFACT_TYPE
from opk_sign.cli.main import main
from opk_sign.errors import (
    EXIT_INVALID_SIGNATURE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_POLICY_MISMATCH,
    EXIT_USAGE,
)
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import SigningOptions, sign_image
from opk_sign.verify.kit import KIT_FILE
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import olareg
from tests.services.tsa import TimestampAuthority

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("offline-kit")]

REPO = "octo-org/app"
PROVENANCE = "https://slsa.dev/provenance/v1"


@dataclass(frozen=True)
class Kit:
    directory: Path
    image: str  # NAME@DIGEST
    issuer: str


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, tsa: TimestampAuthority) -> Iterator[Kit]:
    work = tmp_path_factory.mktemp("kit")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("OPK_SIGN_TRUST_DIR", str(work / "no-trust"))
    monkeypatch.setenv("DOCKER_CONFIG", str(work / "no-docker-config"))
    try:
        with (
            GitHubOIDCEmulator(key=generated_op_key(0)) as emulator,
            olareg(work / "registry") as registry,
            RegistryClient(Keychain.anonymous()) as client,
        ):
            emulator.set_claims(repository=REPO, ref="refs/tags/v1")
            tag = registry.ref("octo-org/app", "v1")
            push_sample_image(client, tag, ("linux/amd64", "linux/arm64/v8"), index=True)
            provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
            options = SigningOptions(timestamp_url=tsa.url)
            digest = sign_image(tag, provider=provider, client=client, options=options).digest
            pem = work / "tsa.pem"
            pem.write_bytes(tsa.chain_pem)
            directory = work / "app-kit"
            argv = ["download", tag, "--dir", str(directory), "--issuer", emulator.issuer]
            assert main([*argv, "--tsa-certs", str(pem)]) == EXIT_OK
            name = Reference.parse(tag).name
            yield Kit(directory, f"{name}@{digest}", emulator.issuer)
    finally:
        monkeypatch.undo()


def offline(kit: Kit, directory: Path | None = None, *extra: str) -> list[str]:
    return [
        *(sys.executable, "-m", "opk_sign.cli", "verify", "--issuer", kit.issuer),
        *("--from-dir", str(directory or kit.directory), "--repository", REPO),
        *("--attestation", PROVENANCE, "--no-trust-repo", *extra, kit.image),
    ]


def test_the_kit_is_an_oci_layout_with_its_trust_material(kit: Kit) -> None:
    names = {p.relative_to(kit.directory).as_posix() for p in kit.directory.rglob("*")}
    for name in (
        "oci-layout",
        "index.json",
        KIT_FILE,
        "opk-sign/jwks.json",
        "opk-sign/tsa-certs.pem",
    ):
        assert name in names
    doc = json.loads((kit.directory / KIT_FILE).read_text())
    assert doc["image"].endswith("octo-org/app:v1") and doc["digest"] == kit.image.split("@")[1]
    assert [m["platform"] for m in doc["manifests"]] == [None, "linux/amd64", "linux/arm64/v8"]
    # index, 2 platforms: a signature each, and a provenance attestation per platform.
    assert doc["bundles"] == 5 and doc["skipped"] == []


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_verify_from_the_kit_with_no_network(kit: Kit) -> None:
    if subprocess.run(["unshare", "-rn", "true"], check=False).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    cut = subprocess.run(
        [
            "unshare",
            "-rn",
            sys.executable,
            "-c",
            "import socket;socket.create_connection(('127.0.0.1', 1), 1)",
        ],
        check=False,
        capture_output=True,
    )
    assert b"Network is unreachable" in cut.stderr
    done = subprocess.run(
        ["unshare", "-rn", *offline(kit)], check=False, capture_output=True, text=True
    )
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    assert done.stdout.startswith("OK ")
    # The timestamps were checked with the kit's TSA certificates: an hour-old token is fine
    # today, and --expiry-policy does not matter; a policy mismatch is still 11.
    other = [a if a != REPO else "evil-org/app" for a in offline(kit)]
    refused = subprocess.run(
        ["unshare", "-rn", *other], check=False, capture_output=True, text=True
    )
    assert refused.returncode == EXIT_POLICY_MISMATCH, refused.stdout + refused.stderr


def _files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def _tampered(kit: Kit, tmp_path: Path, name: str, position: int) -> Path:
    copy = tmp_path / f"kit-{name.replace('/', '_')}-{position}"
    shutil.copytree(kit.directory, copy)
    path = copy / name
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    return copy


def test_every_file_of_the_kit_is_covered(kit: Kit) -> None:
    # What the tampering test below goes through: every file the kit has.
    files = _files(kit.directory)
    assert len([f for f in files if f.startswith("blobs/")]) == 3 + 5 * 2  # manifests, referrers
    assert KIT_FILE in files


def test_a_kit_with_any_byte_of_any_file_changed_is_refused(
    kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file, a bit flipped at its start, middle and end: refused (12, "altered" or "does not
    match"), never verified, never another code."""
    passed: list[str] = []
    for name in _files(kit.directory):
        size = (kit.directory / name).stat().st_size
        for position in sorted({0, size // 2, size - 2}):
            copy = _tampered(kit, tmp_path, name, position)
            code = main(offline(kit, copy)[3:])
            out = capsys.readouterr().out
            if code != EXIT_INVALID_SIGNATURE or not ("altered" in out or "match" in out):
                passed.append(f"{name}@{position}: exit {code}: {out[:300]}")
            shutil.rmtree(copy)
    assert passed == []


def test_a_kit_with_a_file_added_or_removed_is_refused(
    kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    added = tmp_path / "added"
    shutil.copytree(kit.directory, added)
    (added / "opk-sign" / "policy.json").write_text('{"repository": "evil-org/app"}')
    assert main(offline(kit, added)[3:]) == EXIT_INVALID_SIGNATURE
    assert "does not list it" in capsys.readouterr().out
    removed = tmp_path / "removed"
    shutil.copytree(kit.directory, removed)
    (removed / "opk-sign" / "tsa-certs.pem").unlink()
    assert main(offline(kit, removed)[3:]) == EXIT_INVALID_SIGNATURE
    assert "missing" in capsys.readouterr().out


def test_the_image_must_be_named_by_a_digest_the_kit_holds(
    kit: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = offline(kit)[3:]
    name = kit.image.split("@")[0]
    assert main([*argv[:-1], f"{name}:v1"]) == EXIT_USAGE
    assert main([*argv[:-1], f"{name}@sha256:{'0' * 64}"]) == EXIT_NOT_FOUND
    assert "is not of sha256:000" in capsys.readouterr().out


def test_a_kit_for_another_issuer_is_a_usage_error(
    kit: Kit, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        a if a != kit.issuer else "https://token.actions.githubusercontent.com"
        for a in offline(kit)[3:]
    ]
    assert main(argv) == EXIT_USAGE
    assert f"--issuer {kit.issuer}" in capsys.readouterr().err


def test_download_refuses_a_directory_that_is_not_empty(
    kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    image = kit.image
    assert main(["download", image, "--dir", str(full), "--issuer", kit.issuer]) == EXIT_USAGE
    assert (full / "keep.txt").read_text() == "mine" and len(list(full.iterdir())) == 1


@pytest.mark.skipif(shutil.which("oras") is None, reason="needs oras (scripts/setup)")
def test_oras_reads_the_kit_as_an_oci_layout(kit: Kit) -> None:
    """Another implementation reads what download writes: oras lists the image's signature and
    attestation referrers from the layout (its referrers found by their subjects)."""
    digest = kit.image.split("@", 1)[1]
    done = subprocess.run(
        ["oras", "discover", "--oci-layout", f"{kit.directory}@{digest}", "--format", "json"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    index = json.loads((kit.directory / "index.json").read_text())
    listed = [
        m["digest"] for m in index["manifests"] if m.get("artifactType") == SIGNATURE_ARTIFACT_TYPE
    ]
    assert listed and any(d in done.stdout for d in listed), done.stdout


# --- hostile kits (the red team's findings) ------------------------------------------------------


def _copy(kit: Kit, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(kit.directory, copy)
    return copy


def test_trust_material_from_outside_replaces_the_kits_whole(
    kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Your own --jwks without the key: the kit's JWKS and archive, which have it, are not used
    # (else whoever edits the kit could add a key next to your JWKS).
    empty = tmp_path / "empty-jwks.json"
    empty.write_text('{"keys": []}')
    assert main([*offline(kit)[3:-1], "--jwks", str(empty), kit.image]) == EXIT_INVALID_SIGNATURE
    assert "invalid (exit 12)" in capsys.readouterr().out
    # The kit's own JWKS, named explicitly, is your choice.
    mine = kit.directory / "opk-sign" / "jwks.json"
    assert main([*offline(kit)[3:-1], "--jwks", str(mine), kit.image]) == EXIT_OK


def test_a_fifo_symlink_or_missing_blob_is_refused_without_hanging(
    kit: Kit, tmp_path: Path
) -> None:
    fifo = _copy(kit, tmp_path, "fifo")
    os.mkfifo(fifo / "blobs" / "sha256" / ("a" * 64))
    linked = _copy(kit, tmp_path, "linked")
    shutil.move(linked / "blobs", tmp_path / "elsewhere")
    (linked / "blobs").symlink_to(tmp_path / "elsewhere")
    missing = _copy(kit, tmp_path, "missing")
    (missing / "blobs" / "sha256" / kit.image.split(":")[-1]).unlink()
    for directory in (fifo, linked, missing):
        done = subprocess.run(
            offline(kit, directory), check=False, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == EXIT_INVALID_SIGNATURE, (directory, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr


def _reseal(directory: Path, change: dict[str, object]) -> None:
    """What anyone holding a kit can do without a key: edit kit.json and make every digest
    agree again. The kit must then still be judged by its bundles, never crash the reader."""
    from opk_sign.oci.digest import sha256_digest

    kit_json = directory / KIT_FILE
    doc = json.loads(kit_json.read_text())
    doc.update(change)
    description = {k: v for k, v in doc.items() if k != "digests"}
    canonical = json.dumps(description, indent=2, ensure_ascii=False) + "\n"
    index = json.loads((directory / "index.json").read_text())
    index["annotations"]["dev.opk-sign.kit.description"] = sha256_digest(canonical.encode())
    (directory / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    doc["digests"]["index.json"] = sha256_digest((directory / "index.json").read_bytes())
    kit_json.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


@pytest.mark.parametrize(
    "change",
    [
        {"manifests": 5},
        {"digest": ["x"]},
        {"manifests": [{"digest": "\n\x1b[1A\x1b[2Kforged"}]},
        {"issuer": 7},
    ],
    ids=["manifests-not-a-list", "digest-not-a-string", "escape-sequences", "issuer-not-a-string"],
)
def test_a_resealed_kit_json_of_the_wrong_shape_is_refused_cleanly(
    kit: Kit, tmp_path: Path, change: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    copy = _copy(kit, tmp_path, "resealed")
    _reseal(copy, change)
    assert main(offline(kit, copy)[3:]) == EXIT_INVALID_SIGNATURE
    assert "\x1b" not in capsys.readouterr().out


def test_download_refuses_a_symlink_or_a_missing_parent(
    kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    for where in (tmp_path / "link", tmp_path / "no" / "such" / "kit"):
        argv = ["download", kit.image, "--dir", str(where), "--issuer", kit.issuer]
        assert main(argv) == EXIT_USAGE, where
    assert not (tmp_path / "no").exists()  # nothing created on the way
    assert "does not exist" in capsys.readouterr().err
