"""``opk-sign sign --images-from FILE`` (issue 17, item 3): one key, one ID token, one PK token for
every image of the run, each image signed and reported on its own, and a partial failure naming
what was and was not signed. The speed (50 images in one run against 50 processes, at least 10x):
bench/sign_images_from.py, bench/RESULTS.md."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from opk_sign.bundle import SIGNATURE_ARTIFACT_TYPE, Bundle
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_NOT_FOUND, EXIT_OK
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import ImageManifest, parse_manifest
from opk_sign.oci.reference import Reference
from tests.services.images import push_sample_image
from tests.services.oidc import CountingEmulator, generated_op_key
from tests.services.registries import Registry, olareg

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("sign-batch")]

IMAGES = 50


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
    registry: Registry,
    emulator: CountingEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
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
    listing = tmp_path / "images.txt"
    listing.write_text("# the fleet\n" + "\n".join(images) + "\n" + images[0] + "  # again\n")
    emulator.reset_counts()

    assert sign(emulator, "--images-from", str(listing), "--output", "json") == EXIT_OK

    assert [p for p in emulator.requests if p.endswith("/token")] == ["GET /token"]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [doc["image"] for doc in lines] == [*images, images[0]]
    assert all(len(doc["signatures"]) == 1 for doc in lines)
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
