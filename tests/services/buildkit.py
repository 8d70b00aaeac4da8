"""Images laid out exactly as BuildKit writes them with attestations, without running BuildKit.

BuildKit's docs/attestations/attestation-storage.md (v0.32.0, read from the module source the
setup script builds from) is the specification followed here:

- the index lists the runnable platform manifests, then one *attestation manifest* per platform:
  an OCI image manifest with ``artifactType: application/vnd.docker.attestation.manifest.v1+json``,
  the empty config, a ``subject`` naming the platform manifest, and one layer per in-toto
  statement (``application/vnd.in-toto+json``, annotated ``in-toto.io/predicate-type``);
- its index descriptor has platform ``unknown/unknown`` and the annotations
  ``vnd.docker.reference.type: attestation-manifest`` and ``vnd.docker.reference.digest``;
- statements are in-toto Statement v1 (BuildKit v0.32; v0.1 before), SLSA provenance v1 by
  default (``version=v0.2`` on request), laid out as BuildKit's docs/attestations/
  slsa-definitions.md says (``configSource`` for a Git context, ``vcs`` metadata for a local one).

SBOMs: BuildKit's SBOM generator is a scanner *image* (docker/buildkit-syft-scanner) that cannot be
pulled here, so SBOM statements (SPDX 2.3, predicate type https://spdx.dev/Document) are made here
in the same storage layout. The real buildkitd path (scripts/setup/50-buildkit.sh) is used by
tests/integration/test_buildkit_real.py when it can run; these builders keep the other tests fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opk_sign.oci import mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor, Platform
from opk_sign.oci.manifest import canonical_json
from opk_sign.oci.reference import Reference
from opk_sign.payloads.buildkit import (
    ATTESTATION_ARTIFACT_TYPE,
    ATTESTATION_MANIFEST,
    INTOTO_MEDIA_TYPE,
    PREDICATE_TYPE_ANNOTATION,
    REFERENCE_DIGEST,
    REFERENCE_TYPE,
    SLSA_PROVENANCE_V02,
    SLSA_PROVENANCE_V1,
    SPDX_DOCUMENT,
    STATEMENT_V1,
)

EMPTY_CONFIG = b"{}"
BUILD_TYPE = "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"
DEFAULT_REPOSITORY = "https://github.com/docker-library/busybox.git"
DEFAULT_COMMIT = "d3a7b8f0c1e2d3a4b5c6d7e8f9a0b1c2d3e4f5a6"


@dataclass
class BuildKitImage:
    """What was pushed: the index, its platform manifests and each one's attestation manifest."""

    index: Descriptor
    platforms: dict[str, Descriptor] = field(default_factory=dict)
    attestations: dict[str, Descriptor] = field(default_factory=dict)  # by platform text
    #: Each attestation manifest's layers by predicate type.
    layers: dict[str, dict[str, Descriptor]] = field(default_factory=dict)


def purl(repository: str, tag: str, platform: str) -> str:
    return f"pkg:docker/{repository}@{tag}?platform={platform.replace('/', '%2F')}"


def statement(subject: Descriptor, name: str, predicate_type: str, predicate: Any) -> bytes:
    """An in-toto Statement v1 about ``subject`` as BuildKit serialises it."""
    algorithm, _, value = subject.digest.partition(":")
    return json.dumps(
        {
            "_type": STATEMENT_V1,
            "predicateType": predicate_type,
            "subject": [{"name": name, "digest": {algorithm: value}}],
            "predicate": predicate,
        },
        indent=2,
    ).encode()


def provenance_predicate(
    version: str,
    *,
    repository: str | None,
    commit: str | None,
    directory: str = ".",
    vcs: bool = False,
    platform: str = "linux/amd64",
) -> tuple[str, dict[str, Any]]:
    """BuildKit's SLSA provenance (``mode=max`` fields that matter here): a Git context names
    ``configSource`` (uri with ``#commit:dir``, digest.sha1); ``vcs`` puts them in BuildKit's vcs
    metadata instead (a local context built with ``vcs:source``/``vcs:revision``)."""
    config: dict[str, Any] = {}
    metadata: dict[str, Any] = {"source": {"locations": {}, "infos": []}, "layers": {}}
    if vcs:
        metadata["vcs"] = {"source": repository, "revision": commit, "localdir:context": "."}
    elif repository is not None:
        config = {"uri": f"{repository}#{commit}:{directory}", "digest": {"sha1": commit}}
    request = {
        "frontend": "dockerfile.v0",
        "args": {"context": f"{repository}#{commit}:{directory}", "platform": platform},
        "locals": [] if not vcs else [{"name": "context"}, {"name": "dockerfile"}],
    }
    if version == "v1":
        external: dict[str, Any] = {"request": request}
        if config:
            external["configSource"] = {**config, "path": "Dockerfile"}
        else:
            external["configSource"] = {"path": "Dockerfile"}
        return SLSA_PROVENANCE_V1, {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {"buildConfig": {"llbDefinition": []}},
                "resolvedDependencies": [
                    {"uri": config["uri"], "digest": config["digest"]} if config else {}
                ],
            },
            "runDetails": {
                "builder": {"id": ""},
                "metadata": {
                    "invocationID": os.urandom(8).hex(),
                    "startedOn": "2026-12-03T05:00:00Z",
                    "finishedOn": "2026-12-03T05:00:01Z",
                    "buildkit_metadata": metadata,
                    "buildkit_hermetic": False,
                    "buildkit_completeness": {"request": True, "resolvedDependencies": True},
                },
            },
        }
    if version != "v0.2":
        raise ValueError(version)
    invocation: dict[str, Any] = {"parameters": request, "environment": {"platform": platform}}
    invocation["configSource"] = (
        {**config, "entryPoint": "Dockerfile"} if config else {"entryPoint": "Dockerfile"}
    )
    return SLSA_PROVENANCE_V02, {
        "builder": {"id": ""},
        "buildType": "https://mobyproject.org/buildkit@v1",
        "materials": [{"uri": config["uri"], "digest": config["digest"]}] if config else [],
        "invocation": invocation,
        "buildConfig": {"llbDefinition": []},
        "metadata": {
            "buildInvocationID": os.urandom(8).hex(),
            "completeness": {"parameters": True, "environment": True, "materials": False},
            "reproducible": False,
            "https://mobyproject.org/buildkit@v1#metadata": metadata,
            "https://mobyproject.org/buildkit@v1#hermetic": False,
        },
    }


def sbom_predicate(name: str) -> dict[str, Any]:
    """A small SPDX 2.3 document, the shape BuildKit's syft scanner writes."""
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"sbom-{name}",
        "documentNamespace": f"https://docker.com/docker.io/{name}-{os.urandom(4).hex()}",
        "creationInfo": {
            "creators": [
                "Organization: Anchore, Inc",
                "Tool: syft-v1.0.0",
                "Tool: buildkit-v0.32.0",
            ],
            "created": "2026-12-03T05:00:00Z",
        },
        "packages": [
            {
                "name": "hello",
                "SPDXID": "SPDXRef-Package-hello",
                "versionInfo": "1.0",
                "downloadLocation": "NOASSERTION",
            }
        ],
    }


def push_attestation_manifest(
    client: RegistryClient,
    ref: Reference,
    subject: Descriptor,
    statements: Sequence[tuple[str, bytes]],
) -> tuple[Descriptor, dict[str, Descriptor]]:
    """Push an attestation manifest (by digest, untagged) holding ``statements``
    (predicate type, bytes); returns its descriptor and its layers by predicate type."""
    config = client.put_blob(ref, EMPTY_CONFIG, "application/vnd.oci.empty.v1+json")
    layers: dict[str, Descriptor] = {}
    layer_docs = []
    for predicate_type, data in statements:
        blob = client.put_blob(ref, data, INTOTO_MEDIA_TYPE)
        layers[predicate_type] = blob
        layer_docs.append(
            {
                "mediaType": INTOTO_MEDIA_TYPE,
                "digest": blob.digest,
                "size": blob.size,
                "annotations": {PREDICATE_TYPE_ANNOTATION: predicate_type},
            }
        )
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": ATTESTATION_ARTIFACT_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": config.digest,
            "size": config.size,
            "data": "e30=",
        },
        "layers": layer_docs,
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
    }
    data = canonical_json(document)
    digest = client.put_manifest(ref, data, mediatypes.OCI_MANIFEST)
    return Descriptor(mediatypes.OCI_MANIFEST, digest, len(data)), layers


def index_entry(attestation: Descriptor, target: str) -> dict[str, Any]:
    """The index descriptor BuildKit writes for an attestation manifest."""
    return {
        "mediaType": attestation.media_type,
        "digest": attestation.digest,
        "size": attestation.size,
        "annotations": {REFERENCE_DIGEST: target, REFERENCE_TYPE: ATTESTATION_MANIFEST},
        "platform": {"architecture": "unknown", "os": "unknown"},
    }


def push_buildkit_image(
    client: RegistryClient,
    repo_ref: str,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    *,
    repository: str | None = DEFAULT_REPOSITORY,
    commit: str | None = DEFAULT_COMMIT,
    directory: str = "latest/glibc",
    provenance: str | None = "v1",
    sbom: bool = True,
    vcs: bool = False,
    extra_tags: Sequence[str] = (),
    commits: Mapping[str, str] | None = None,
) -> BuildKitImage:
    """Push a multi-platform image as ``buildx build --provenance=mode=max --sbom=true`` leaves
    it: each platform a tiny image (one layer), then its attestation manifest; the index tagged
    with ``repo_ref``'s tag (else ``latest``) and ``extra_tags``."""
    ref = Reference.parse(repo_ref)
    tag = ref.tag or "latest"
    image = BuildKitImage(index=Descriptor(mediatypes.OCI_INDEX, "sha256:" + "0" * 64, 0))
    entries: list[dict[str, Any]] = []
    attestation_entries: list[dict[str, Any]] = []
    for text in platforms:
        platform = Platform.parse(text)
        layer = client.put_blob(ref, os.urandom(256), mediatypes.OCI_LAYER_GZIP)
        config = client.put_blob(
            ref,
            canonical_json(
                {
                    "architecture": platform.architecture,
                    "os": platform.os,
                    "config": {"Cmd": ["/hello"]},
                    "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
                }
            ),
            mediatypes.OCI_CONFIG,
        )
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "config": config.to_dict(),
                "layers": [layer.to_dict()],
            }
        )
        digest = client.put_manifest(ref, manifest, mediatypes.OCI_MANIFEST)
        child = Descriptor(mediatypes.OCI_MANIFEST, digest, len(manifest), platform=platform)
        image.platforms[text] = child
        entries.append(child.to_dict())
        statements: list[tuple[str, bytes]] = []
        name = purl(ref.repository, tag, text)
        if provenance is not None:
            predicate_type, predicate = provenance_predicate(
                provenance,
                repository=repository,
                commit=(commits or {}).get(text, commit),
                directory=directory,
                vcs=vcs,
                platform=text,
            )
            statements.append((predicate_type, statement(child, name, predicate_type, predicate)))
        if sbom:
            statements.append(
                (SPDX_DOCUMENT, statement(child, name, SPDX_DOCUMENT, sbom_predicate(name)))
            )
        if statements:
            attestation, layers = push_attestation_manifest(client, ref, child, statements)
            image.attestations[text] = attestation
            image.layers[text] = layers
            attestation_entries.append(index_entry(attestation, digest))
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": entries + attestation_entries,
        }
    )
    digest = client.put_manifest(ref, index, mediatypes.OCI_INDEX, tag=tag)
    for extra in extra_tags:
        client.put_manifest(ref, index, mediatypes.OCI_INDEX, tag=extra)
    image.index = Descriptor(mediatypes.OCI_INDEX, digest, len(index))
    return image
