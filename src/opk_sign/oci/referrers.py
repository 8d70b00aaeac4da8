"""Referrers: the OCI 1.1 referrers API answer and the referrers tag-schema fallback index.

Pure logic; the registry client does the I/O (see ``RegistryClient.list_referrers`` and
docs/registry.md). On a registry without the referrers API, the referrers of ``sha256:<hex>`` are
listed in an image index tagged ``sha256-<hex>``. That index is shared mutable state: writers read
it, merge their entry in, write it back, and read again to check nobody's write was lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opk_sign.errors import FormatError
from opk_sign.oci import limits, mediatypes
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.digest import split_digest
from opk_sign.oci.manifest import canonical_json, load_json_object


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: ``<alg>-<hex>``, truncated to 32 and 64 characters."""
    algorithm, encoded = split_digest(digest)
    return f"{algorithm[:32]}-{encoded[:64]}"


def parse_referrers_index(data: bytes) -> list[Descriptor]:
    """The descriptors of a referrers answer or fallback index (OCI image index)."""
    doc = load_json_object(data, "referrers index")
    media_type = doc.get("mediaType", mediatypes.OCI_INDEX)
    if media_type != mediatypes.OCI_INDEX:
        raise FormatError(f"referrers index has media type {media_type!r}, not an OCI index")
    manifests = doc.get("manifests")
    if manifests is None:
        return []
    if not isinstance(manifests, list):
        raise FormatError("referrers index: manifests must be a list")
    if len(manifests) > limits.MAX_REFERRERS:
        raise FormatError(f"referrers index lists more than {limits.MAX_REFERRERS} referrers")
    return [Descriptor.from_dict(entry) for entry in manifests]


def filter_by_artifact_type(
    descriptors: Iterable[Descriptor], artifact_type: str | None
) -> list[Descriptor]:
    if artifact_type is None:
        return list(descriptors)
    return [d for d in descriptors if d.artifact_type == artifact_type]


def referrer_entry(descriptor: Descriptor) -> Descriptor:
    """The index entry of a referrer: mediaType, digest, size, artifactType and annotations."""
    return Descriptor(
        media_type=descriptor.media_type,
        digest=descriptor.digest,
        size=descriptor.size,
        annotations=dict(descriptor.annotations),
        artifact_type=descriptor.artifact_type,
    )


def merge_referrers_index(existing: bytes | None, additions: Sequence[Descriptor]) -> bytes | None:
    """The fallback index with ``additions`` merged in, or None if it already lists them all.

    Entries already present are kept byte for byte (unknown fields included) and in order; new
    ones are appended; an entry is identified by its digest, so a referrer is never listed twice.
    """
    doc: dict[str, Any]
    if existing is None:
        doc = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []}
    else:
        doc = load_json_object(existing, "referrers index")
        parse_referrers_index(existing)  # refuse anything that is not a valid index
        doc.setdefault("manifests", [])
        if doc["manifests"] is None:
            doc["manifests"] = []
    present = {entry["digest"] for entry in doc["manifests"]}
    new = []
    for descriptor in additions:
        if descriptor.digest not in present:
            present.add(descriptor.digest)
            new.append(referrer_entry(descriptor).to_dict())
    if not new:
        return None
    doc["manifests"] = [*doc["manifests"], *new]
    return canonical_json(doc)


def lists_all(index: bytes | None, digests: Iterable[str]) -> bool:
    if index is None:
        return False
    listed = {d.digest for d in parse_referrers_index(index)}
    return all(d in listed for d in digests)
