"""``opk-sign inspect`` and ``opk-sign copy`` on a multi-arch image with referrers (issue 3, item 5).

The image starts on distribution (referrers in the tag fallback), is copied to olareg (the
referrers API) and back; after each step an independent client (``oras discover``, ``crane``)
lists the same referrers and digests as ``opk-sign inspect``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from opk_sign.cli.main import main
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.reference import Reference
from tests.integration.registry.conftest import unique
from tests.services.images import push_sample_image
from tests.services.registries import Registry
from tests.services.tools import tool_path

pytestmark = pytest.mark.integration

SIGNATURE = "application/vnd.dev.opk-sign.test.signature.v1+json"
ATTESTATION = "application/vnd.dev.opk-sign.test.attestation.v1+json"
BUNDLE = "application/vnd.dev.opk-sign.test.bundle.v1+json"
SCHEMA = Path(__file__).resolve().parents[3] / "docs" / "schemas" / "inspect.schema.json"

Edge = tuple[str, str, str]  # (subject digest, referrer digest, artifact type)


def signed_image(client: RegistryClient, ref: str) -> tuple[Descriptor, set[Edge]]:
    """A two-platform image with a signature on the index, a signature and an attestation on
    each platform manifest, and a countersignature on the first attestation."""
    index = push_sample_image(client, ref)
    edges: set[Edge] = set()

    def attach(subject: Descriptor, artifact_type: str, name: str) -> Descriptor:
        stored = client.attach_artifact(
            ref, subject, artifact_type, name.encode(), BUNDLE, {"name": name}
        )
        edges.add((subject.digest, stored.digest, artifact_type))
        return stored

    attach(index, SIGNATURE, "index signature")
    attestations = []
    for descriptor, _ in list(client.walk(ref))[1:]:
        attach(descriptor, SIGNATURE, f"{descriptor.platform} signature")
        attestations.append(attach(descriptor, ATTESTATION, f"{descriptor.platform} provenance"))
    attach(attestations[0], SIGNATURE, "countersignature")
    return index, edges


def inspect_json(ref: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["inspect", ref, "--output", "json"]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    assert document["image"] == ref  # as given; the same keys as sign's and verify's
    assert document["reference"] == Reference.parse(ref).name
    return document


def tree_edges(node: dict[str, Any]) -> set[Edge]:
    edges: set[Edge] = set()
    for referrer in node["referrers"]:
        edges.add((node["digest"], referrer["digest"], referrer["artifactType"]))
        edges |= tree_edges(referrer)
    for child in node.get("manifests", []):
        edges |= tree_edges(child)
    return edges


def oras_edges(ref: str, digests: list[str]) -> set[Edge]:
    """What ``oras discover`` finds, recursively, for each manifest digest of the image."""
    edges: set[Edge] = set()

    def walk(node: dict[str, Any]) -> None:
        for referrer in node.get("referrers") or []:
            edges.add((node["digest"], referrer["digest"], referrer["artifactType"]))
            walk(referrer)

    repository = ref.rsplit(":", 1)[0]
    oras = [str(tool_path("oras")), "discover", "--plain-http", "--format", "json"]
    for digest in digests:
        result = subprocess.run(
            [*oras, f"{repository}@{digest}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        walk(json.loads(result.stdout))
    return edges


def crane_digest(ref: str) -> str:
    result = subprocess.run(
        [str(tool_path("crane")), "digest", "--insecure", ref],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def without_references(node: dict[str, Any]) -> dict[str, Any]:
    """The tree without where it was read from (``image`` and ``reference``)."""
    return {k: v for k, v in node.items() if k not in ("image", "reference")}


def test_inspect_and_copy_there_and_back(
    distribution_registry: Registry,
    olareg_registry: Registry,
    client: RegistryClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = distribution_registry.ref(unique("app"), "v1")
    index, edges = signed_image(client, source)
    assert len(edges) == 6

    tree = inspect_json(source, capsys)
    assert tree["digest"] == index.digest
    assert [m["platform"] for m in tree["manifests"]] == ["linux/amd64", "linux/arm64"]
    assert tree_edges(tree) == edges
    countersigned = next(
        r
        for m in tree["manifests"]
        for r in m["referrers"]
        if r["annotations"]["name"] == "linux/amd64 provenance"
    )
    assert [r["annotations"]["name"] for r in countersigned["referrers"]] == ["countersignature"]
    digests = [index.digest, *(m["digest"] for m in tree["manifests"])]
    assert oras_edges(source, digests) == edges

    assert main(["inspect", source]) == 0
    text = capsys.readouterr().out
    for expected in ("linux/amd64", "linux/arm64", SIGNATURE, ATTESTATION, "name=countersignature"):
        assert expected in text

    # distribution (fallback) -> olareg (referrers API)
    there = olareg_registry.ref(unique("copied"), "v1")
    assert main(["copy", source, there, "--output", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["digest"] == index.digest
    assert report["manifests"] == 3
    assert len(report["referrers"]) == 6
    assert without_references(inspect_json(there, capsys)) == without_references(tree)
    assert crane_digest(there) == index.digest
    assert oras_edges(there, digests) == edges

    # olareg -> distribution, a new repository: the fallback indexes are written afresh
    back = distribution_registry.ref(unique("back"), "v2")
    assert main(["copy", there, back]) == 0
    assert "6 referrers" in capsys.readouterr().out
    assert without_references(inspect_json(back, capsys)) == without_references(tree)
    assert crane_digest(back) == index.digest
    assert oras_edges(back, digests) == edges


def test_copy_within_a_registry_mounts_blobs_and_is_idempotent(
    registry: Registry, client: RegistryClient, capsys: pytest.CaptureFixture[str]
) -> None:
    source = registry.ref(unique("app"), "v1")
    _, edges = signed_image(client, source)
    target = registry.ref(unique("mirror"), "v1")
    assert main(["copy", source, target, "--output", "json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["blobsMounted"] > 0
    assert first["blobsCopied"] == 0
    assert main(["copy", source, target, "--output", "json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["blobsPresent"] == first["blobsMounted"]
    assert second["blobsMounted"] == second["blobsCopied"] == 0
    copied = inspect_json(target, capsys)
    assert tree_edges(copied) == edges  # copying twice lists each referrer once


def test_copy_refuses_a_digest_that_is_not_the_source(
    registry: Registry, client: RegistryClient, capsys: pytest.CaptureFixture[str]
) -> None:
    source = registry.ref(unique("app"), "v1")
    push_sample_image(client, source)
    target = registry.ref(unique("x")) + "@sha256:" + "0" * 64
    assert main(["copy", source, target]) == 2
    assert "names digest" in capsys.readouterr().err
    assert main(["inspect", "Not/A/Valid:Reference!"]) == 2
    assert "invalid" in capsys.readouterr().err
