"""A batch never loses the others (issue 11, class 5, "what it must show" 3): 200 images, 5 of them
on a hostile registry, through the CLI: 195 verified, each hostile one with its own outcome; the
same batch interrupted with SIGINT reports what was decided and exits 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_INVALID_SIGNATURE, EXIT_NO_SIGNATURES, EXIT_REGISTRY
from opk_sign.oci import mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import sign_image
from tests.services.hostile_registry import (
    EMPTY,
    Answer,
    HostileRegistry,
    image_manifest,
    sha,
)
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import olareg

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("batch")]

REPO = "octo-org/app"


def manifest(note: str) -> bytes:
    return image_manifest(note=note)


@dataclass(frozen=True)
class Batch:
    images: list[str]
    #: Each hostile image and the outcome it must get.
    hostile: dict[str, int]
    issuer: str
    listing: Path


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    root = tmp_path_factory.mktemp("batch")
    with (
        GitHubOIDCEmulator(key=generated_op_key(0)) as emulator,
        olareg(root / "olareg") as registry,
        HostileRegistry() as hostile,
        RegistryClient(Keychain.anonymous()) as client,
    ):
        emulator.set_claims(ref="refs/tags/v1", repository=REPO)
        first = registry.ref(REPO, "t0")
        pushed = push_sample_image(client, first, ("linux/amd64",), index=False)
        provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
        sign_image(first, provider=provider, client=client)
        _, data = client.pull_manifest(first)
        for n in range(1, 195):  # 195 names of one signed manifest
            client.put_manifest(first, data, pushed.media_type, tag=f"t{n}")
        unsigned, garbage_signed = manifest("unsigned"), manifest("garbage")
        artifact = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "artifactType": "application/vnd.dev.opk-sign.signature.v1+json",
                "config": {"mediaType": mediatypes.OCI_EMPTY, "digest": sha(EMPTY), "size": 2},
                "layers": [
                    {
                        "mediaType": "application/vnd.dev.opk-sign.bundle.v1+json",
                        "digest": sha(b"[" * 5000),
                        "size": 5000,
                    }
                ],
                "subject": {
                    "mediaType": mediatypes.OCI_MANIFEST,
                    "digest": sha(garbage_signed),
                    "size": len(garbage_signed),
                },
            }
        ).encode()
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": mediatypes.OCI_MANIFEST,
                        "digest": sha(artifact),
                        "size": len(artifact),
                        "artifactType": "application/vnd.dev.opk-sign.signature.v1+json",
                    }
                ],
            }
        ).encode()
        hostile.script(
            {
                "base": Answer(200, EMPTY),
                "manifest:deep": Answer(200, b"[" * 200_000, mediatypes.OCI_MANIFEST),
                "manifest:refused": Answer(400, b'{"errors": [' * 3, "application/json"),
                "manifest:truncated": Answer(
                    200, manifest("cut")[:40], mediatypes.OCI_MANIFEST, declared_length=400
                ),
                "manifest:unsigned": Answer(200, unsigned, mediatypes.OCI_MANIFEST),
                f"referrers:{sha(unsigned)}": Answer(
                    200,
                    b'{"schemaVersion":2,"mediaType":"'
                    + mediatypes.OCI_INDEX.encode()
                    + b'","manifests":[]}',
                    mediatypes.OCI_INDEX,
                ),
                "manifest:garbage": Answer(200, garbage_signed, mediatypes.OCI_MANIFEST),
                f"referrers:{sha(garbage_signed)}": Answer(200, index, mediatypes.OCI_INDEX),
                f"manifest:{sha(artifact)}": Answer(200, artifact, mediatypes.OCI_MANIFEST),
                f"blob:{sha(b'[' * 5000)}": Answer(200, b"[" * 5000, "application/octet-stream"),
            }
        )
        hostile_images = {
            f"{hostile.host}/{REPO}:deep": EXIT_REGISTRY,
            f"{hostile.host}/{REPO}:refused": EXIT_REGISTRY,
            f"{hostile.host}/{REPO}:truncated": EXIT_REGISTRY,
            f"{hostile.host}/{REPO}:unsigned": EXIT_NO_SIGNATURES,
            f"{hostile.host}/{REPO}:garbage": EXIT_INVALID_SIGNATURE,
        }
        good = [registry.ref(REPO, f"t{n}") for n in range(195)]
        images = list(good)
        for n, image in enumerate(hostile_images):  # spread among the others
            images.insert(30 + 40 * n, image)
        listing = root / "images.txt"
        listing.write_text("".join(f"{image}\n" for image in images))
        yield Batch(images, hostile_images, emulator.issuer, listing)


def cli_args(batch: Batch, *extra: str) -> list[str]:
    return [
        "verify",
        "--images-from",
        str(batch.listing),
        "--repository",
        REPO,
        "--issuer",
        batch.issuer,
        "--no-trust-repo",
        *extra,
    ]


def test_200_images_5_hostile_each_gets_its_own_outcome(
    batch: Batch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    vsa = tmp_path / "vsa.jsonl"
    code = main(cli_args(batch, "--output", "json", "--vsa", str(vsa)))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [doc["image"] for doc in lines] == batch.images  # all 200, in order
    outcomes = {doc["image"]: doc["exitCode"] for doc in lines}
    assert sum(code == 0 for code in outcomes.values()) == 195
    for image, expected in batch.hostile.items():
        assert outcomes[image] == expected, (image, outcomes[image])
    assert code == EXIT_REGISTRY  # the worst of them
    assert len(vsa.read_text().splitlines()) == 195


def test_the_text_report_and_summary_table_list_every_image(
    batch: Batch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(cli_args(batch))
    out = capsys.readouterr().out
    assert "195 of 200 images verified" in out
    table = out.split("\nIMAGE ", 1)[1]
    for image in batch.hostile:
        assert image in table  # its row in the summary table (its failure is printed above)


def test_the_batch_interrupted_prints_what_was_decided_and_exits_130(
    batch: Batch, tmp_path: Path
) -> None:
    vsa = tmp_path / "vsa.jsonl"
    command = [sys.executable, "-m", "opk_sign.cli", *cli_args(batch, "--output", "json")]
    command += ["--jobs", "1", "--vsa", str(vsa)]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        assert proc.stdout is not None
        seen = [proc.stdout.readline() for _ in range(20)]
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    decided = [json.loads(line) for line in seen + rest.splitlines() if line.strip()]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert 20 <= len(decided) < 200  # stopped early, everything decided reported
    verified = sum(doc["verified"] for doc in decided)
    assert len(vsa.read_text().splitlines()) == verified  # their VSAs were written
