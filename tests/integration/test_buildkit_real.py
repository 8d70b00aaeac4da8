"""A real BuildKit build (issue 17, "Real parts"): buildkitd v0.32.0 and buildctl from the Go module
proxy (scripts/setup/50-buildkit.sh), running as root on loopback with the OCI worker and the native
snapshotter, build ``FROM scratch`` + ``COPY`` from a local context for two platforms with
``attest:provenance=mode=max`` and push to olareg. BuildKit's SBOM generator is a scanner image
that cannot be pulled here, so each platform's attestation manifest is then remade per BuildKit's
attestation-storage document with BuildKit's own provenance layer plus an SPDX statement
(tests/services/buildkit.py), the index re-tagged with them: inspect, sign and verify then run on
what BuildKit wrote."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_OK, EXIT_POLICY_MISMATCH
from opk_sign.oci import mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import ImageIndex, ImageManifest, canonical_json
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.payloads.buildkit import (
    SLSA_PROVENANCE_V1,
    SPDX_DOCUMENT,
    attestation_layers,
    attestation_target,
    is_attestation_descriptor,
)
from opk_sign.sign.image import SigningOptions, sign_image
from tests.services.buildkit import (
    index_entry,
    push_attestation_manifest,
    sbom_predicate,
    statement,
)
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, olareg
from tests.services.tools import tool_path

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("buildkit")]

SOURCE = "https://github.com/docker-library/busybox.git"
COMMIT = "4f0c5a1c8a3d2e9b7f6e5d4c3b2a1f0e9d8c7b6a"
REPO = "docker-library/busybox"
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


@contextlib.contextmanager
def buildkitd() -> Iterator[str]:
    """buildkitd on a unix socket in a temporary directory; yields its address."""
    # A short path: unix socket paths are limited to 108 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="opk-bk-"))
    address = f"unix://{workdir}/buildkitd.sock"
    log = workdir / "buildkitd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(tool_path("buildkitd")),
                "--root",
                str(workdir / "root"),
                "--addr",
                address,
                "--oci-worker=true",
                "--oci-worker-snapshotter=native",
                "--containerd-worker=false",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while not (workdir / "buildkitd.sock").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"buildkitd did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str]]:
    """An image BuildKit built and pushed, with SBOM attestation manifests added as above."""
    context = tmp_path_factory.mktemp("context")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    (context / "hello.txt").write_text("hello from buildkit\n")
    with olareg(tmp_path_factory.mktemp("olareg")) as registry, buildkitd() as address:
        ref = registry.ref("library/busybox", "built")
        result = subprocess.run(
            [
                str(tool_path("buildctl")),
                "--addr",
                address,
                "build",
                "--frontend",
                "dockerfile.v0",
                "--local",
                f"context={context}",
                "--local",
                f"dockerfile={context}",
                "--opt",
                "platform=linux/amd64,linux/arm64",
                "--opt",
                "attest:provenance=mode=max",
                "--opt",
                f"vcs:source={SOURCE}",
                "--opt",
                f"vcs:revision={COMMIT}",
                "--output",
                f"type=image,name={ref},push=true,registry.insecure=true",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        final = registry.ref("library/busybox", "1")
        with RegistryClient(Keychain.anonymous()) as client:
            _add_sboms(client, Reference.parse(ref), Reference.parse(final))
        yield registry, final


def _add_sboms(client: RegistryClient, built: Reference, final: Reference) -> None:
    """Each platform's attestation manifest remade with BuildKit's provenance layer and an SPDX
    statement, and the index listing them tagged ``final``."""
    descriptor, data = client.pull_manifest(built)
    index = client.parse(descriptor, data)
    assert isinstance(index, ImageIndex)
    platforms = [c for c in index.manifests if not is_attestation_descriptor(c)]
    attestations = [c for c in index.manifests if is_attestation_descriptor(c)]
    assert len(platforms) == 2 and len(attestations) == 2
    entries: list[dict[str, Any]] = []
    for attestation in attestations:
        target = attestation_target(attestation)
        (platform,) = [p for p in platforms if p.digest == target]
        read, raw = client.pull_manifest(built, attestation.digest)
        manifest = client.parse(read, raw)
        assert isinstance(manifest, ImageManifest)
        (provenance,) = attestation_layers(manifest)
        assert provenance.predicate_type == SLSA_PROVENANCE_V1
        blob = client.get_blob(built, provenance.descriptor.digest)
        subject = Descriptor(platform.media_type, platform.digest, platform.size)
        name = f"pkg:docker/{built.repository}@1?platform={platform.platform}"
        remade, _ = push_attestation_manifest(
            client,
            built,
            subject,
            [
                (SLSA_PROVENANCE_V1, blob),
                (SPDX_DOCUMENT, statement(subject, name, SPDX_DOCUMENT, sbom_predicate(name))),
            ],
        )
        entries.append(index_entry(remade, platform.digest))
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [p.to_dict() for p in platforms] + entries,
    }
    client.put_manifest(final, canonical_json(document), mediatypes.OCI_INDEX, tag=final.tag)


def test_buildkit_built_image_inspect_sign_verify(
    built: tuple[Registry, str], capsys: pytest.CaptureFixture[str]
) -> None:
    registry, ref = built
    assert main(["inspect", ref, "--output", "json"]) == EXIT_OK
    tree = json.loads(capsys.readouterr().out)
    schema = json.loads((SCHEMAS / "inspect.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(tree)
    assert [m["platform"] for m in tree["manifests"]] == ["linux/amd64", "linux/arm64"]
    for node in tree["manifests"]:
        (attestation,) = node["attestations"]
        assert attestation["predicateTypes"] == [SLSA_PROVENANCE_V1, SPDX_DOCUMENT]
        # Shown once: not again among the platform's referrers (BuildKit sets its `subject`).
        assert attestation["digest"] not in {r["digest"] for r in node["referrers"]}

    with GitHubOIDCEmulator(key=generated_op_key(0)) as emulator:
        emulator.set_claims(ref="refs/heads/master", repository=REPO)
        provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
        with RegistryClient(Keychain.anonymous()) as client:
            signed = sign_image(
                ref, provider=provider, client=client, options=SigningOptions(provenance=False)
            )
        assert {m.platform for m in signed.manifests} == {None, "linux/amd64", "linux/arm64"}
        assert len(signed.manifests) == 3  # the index and two platforms, no attestation manifest

        args = ["verify", "--issuer", emulator.issuer, "--repository", REPO, ref]
        code = main(
            [
                *args,
                "--attestation",
                SLSA_PROVENANCE_V1,
                "--attestation",
                SPDX_DOCUMENT,
                "--source-repository",
                SOURCE,
                "--source-commit",
                COMMIT,
                "--output",
                "json",
            ]
        )
        doc = json.loads(capsys.readouterr().out)
        assert code == EXIT_OK, doc["message"]
        for manifest in doc["manifests"][1:]:
            (provenance,) = [
                b for b in manifest["bundles"] if b.get("predicateType") == SLSA_PROVENANCE_V1
            ]
            assert provenance["buildkit"]["coveredBy"] == "index-signature"
            assert provenance["buildkit"]["statementType"] == "https://in-toto.io/Statement/v1"
            # A local context: BuildKit records the client's vcs hints, not a configSource.
            assert provenance["buildkit"]["source"] == {
                "repository": SOURCE,
                "commit": COMMIT,
                "from": "vcs",
            }
        assert main([*args, "--source-commit", "1" * 40]) == EXIT_POLICY_MISMATCH
    del registry
