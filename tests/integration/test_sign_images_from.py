"""``opk-sign sign --images-from FILE`` (issue 17, item 3): one key, one ID token, one PK token for
every image of the run, each image signed and reported on its own, and a partial failure naming
what was and was not signed. The speed (50 images in one run against 50 processes, at least 10x):
bench/sign_images_from.py, bench/RESULTS.md."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from opk_sign.bundle import SIGNATURE_ARTIFACT_TYPE, Bundle
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_NOT_FOUND
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import ImageManifest, parse_manifest
from opk_sign.oci.reference import Reference
from tests.services.images import push_sample_image
from tests.services.oidc import CountingEmulator, generated_op_key
from tests.services.registries import Registry, olareg

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("sign-batch")]

IMAGES = 50
OPK_SIGN = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "opk-sign"


@pytest.fixture(scope="module")
def emulator() -> Iterator[CountingEmulator]:
    running = CountingEmulator(key=generated_op_key(0))
    with running:
        running.set_claims(ref="refs/tags/v1", repository="octo-org/fleet")
        yield running


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with olareg(tmp_path_factory.mktemp("olareg")) as running:
        yield running


def sign(emulator: CountingEmulator, *args: str) -> int:
    env = {**emulator.env(), "OPK_SIGN_OIDC_ISSUER": emulator.issuer}
    with mock.patch.dict(os.environ, env):
        return main(["sign", "--no-timestamp", *args])


def pk_token_of_signature(client: RegistryClient, image: str) -> bytes:
    reference = Reference.parse(image)
    assert reference.digest is not None
    (descriptor,) = client.list_referrers(reference, reference.digest, SIGNATURE_ARTIFACT_TYPE)
    data, _ = client.get_manifest(reference, descriptor.digest)
    manifest = parse_manifest(data)
    assert isinstance(manifest, ImageManifest)
    bundle = Bundle.from_json(client.get_blob(reference, manifest.layers[0].digest))
    return bundle.pk_token.to_json()


def test_fifty_images_one_token_request_one_pk_token(
    registry: Registry, emulator: CountingEmulator, tmp_path: Path
) -> None:
    """As a process, as CI runs it: with 2 CPUs or more the batch is shared with a forked copy
    (sign.batch, 16 images per process at least); a missing image in a share is reported on its
    own and the rest is signed."""
    images = []
    with RegistryClient(Keychain.anonymous()) as client:
        for number in range(IMAGES):
            pushed = push_sample_image(
                client,
                registry.ref(f"fleet/app-{number}", "v1"),
                ("linux/amd64",),
                index=False,
                layer_size=64,
            )
            images.append(f"{registry.host}/fleet/app-{number}@{pushed.digest}")
    missing = registry.ref("fleet/missing", "v1")
    listed = [*images[:7], missing, *images[7:], images[0]]
    listing = tmp_path / "images.txt"
    listing.write_text("# the fleet\n" + "\n".join(listed[:-1]) + f"\n{images[0]}  # again\n")
    emulator.reset_counts()
    env = {
        **os.environ,
        **emulator.env(),
        "OPK_SIGN_OIDC_ISSUER": emulator.issuer,
        "OPK_SIGN_TLOG": "never",
    }

    proc = subprocess.run(
        [str(OPK_SIGN), "sign", "--no-timestamp", "--images-from", str(listing), "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert proc.returncode == EXIT_NOT_FOUND, proc.stderr
    assert [p for p in emulator.requests if p.endswith("/token")] == ["GET /token"]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [doc["image"] for doc in lines] == listed
    failed = [doc for doc in lines if doc.get("signed") is False]
    assert [(doc["image"], doc["exitCode"]) for doc in failed] == [(missing, EXIT_NOT_FOUND)]
    assert all(len(doc["signatures"]) == 1 for doc in lines if doc not in failed)
    assert f"{IMAGES + 1} of {IMAGES + 2} images signed" in proc.stderr  # with the duplicate
    assert f"not signed: {missing}" in proc.stderr
    with RegistryClient(Keychain.anonymous()) as client:
        tokens = {pk_token_of_signature(client, image) for image in images}
    assert len(tokens) == 1  # one PK token for every image (the duplicate signed once)


def test_a_partial_failure_names_what_was_and_was_not_signed(
    registry: Registry,
    emulator: CountingEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with RegistryClient(Keychain.anonymous()) as client:
        good = push_sample_image(client, registry.ref("fleet/good", "v1"), index=True)
    present = f"{registry.host}/fleet/good@{good.digest}"
    missing = registry.ref("fleet/missing", "v1")
    listing = tmp_path / "images.txt"
    listing.write_text(f"{missing}\n{present}\n")

    assert sign(emulator, "--images-from", str(listing)) == EXIT_NOT_FOUND

    captured = capsys.readouterr()
    assert f"NOT SIGNED {missing} (exit 15)" in captured.out
    assert f"Signed {present}" in captured.out
    assert "1 of 2 images signed" in captured.err
    assert f"not signed: {missing}" in captured.err and f"signed: {present}" in captured.err


def test_image_and_images_from_are_exclusive(
    emulator: CountingEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("127.0.0.1:1/a/b:v1\n")
    assert sign(emulator, "127.0.0.1:1/a/b:v1", "--images-from", str(listing)) == 2
    assert sign(emulator) == 2
    assert "give IMAGE or --images-from FILE" in capsys.readouterr().err
