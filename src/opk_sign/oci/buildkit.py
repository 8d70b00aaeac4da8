"""BuildKit's attestation storage in an image index (pure): which index entries are attestation
manifests, what they are about, and their in-toto layers (BuildKit's
docs/attestations/attestation-storage.md; the statements themselves:
:mod:`opk_sign.payloads.buildkit`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from opk_sign.errors import FormatError
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.manifest import ImageIndex, ImageManifest

REFERENCE_TYPE: Final = "vnd.docker.reference.type"
REFERENCE_DIGEST: Final = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST: Final = "attestation-manifest"
#: The artifactType newer BuildKit gives attestation manifests (with a ``subject``).
ATTESTATION_ARTIFACT_TYPE: Final = "application/vnd.docker.attestation.manifest.v1+json"
INTOTO_MEDIA_TYPE: Final = "application/vnd.in-toto+json"
PREDICATE_TYPE_ANNOTATION: Final = "in-toto.io/predicate-type"

MAX_ATTESTATION_LAYERS: Final = 64


def is_attestation_descriptor(descriptor: Descriptor) -> bool:
    """Whether an index entry is a BuildKit attestation manifest (not something to run)."""
    return descriptor.annotations.get(REFERENCE_TYPE) == ATTESTATION_MANIFEST


def attestation_target(descriptor: Descriptor) -> str | None:
    """The digest of the manifest an attestation-manifest entry is about (a hint), if named."""
    target = descriptor.annotations.get(REFERENCE_DIGEST)
    return target if isinstance(target, str) and target else None


def attestations_in_index(index: ImageIndex) -> dict[str, list[Descriptor]]:
    """The index's attestation-manifest entries by the digest they name (in listing order)."""
    found: dict[str, list[Descriptor]] = {}
    for child in index.manifests:
        target = attestation_target(child)
        if is_attestation_descriptor(child) and target is not None:
            found.setdefault(target, []).append(child)
    return found


@dataclass(frozen=True)
class AttestationLayer:
    """One statement of an attestation manifest, as listed (digest, size, hinted type)."""

    descriptor: Descriptor
    #: The ``in-toto.io/predicate-type`` annotation: a hint for which layer to fetch.
    predicate_type: str | None


def attestation_layers(manifest: ImageManifest) -> list[AttestationLayer]:
    """The in-toto layers of an attestation manifest (layers of other media types are ignored,
    as the storage format says); at most :data:`MAX_ATTESTATION_LAYERS`."""
    layers = [layer for layer in manifest.layers if layer.media_type == INTOTO_MEDIA_TYPE]
    if len(layers) > MAX_ATTESTATION_LAYERS:
        raise FormatError(
            f"attestation manifest: {len(layers)} in-toto layers, over {MAX_ATTESTATION_LAYERS}"
        )
    out = []
    for layer in layers:
        hint = layer.annotations.get(PREDICATE_TYPE_ANNOTATION)
        out.append(AttestationLayer(layer, hint if isinstance(hint, str) and hint else None))
    return out
