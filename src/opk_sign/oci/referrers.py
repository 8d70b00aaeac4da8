"""Referrers: the OCI 1.1 referrers API answer and the referrers tag-schema fallback index.

Pure logic; the registry client does the I/O (see ``RegistryClient.list_referrers`` and
docs/registry.md). On a registry without the referrers API, the referrers of ``sha256:<hex>`` are
listed in an image index tagged ``sha256-<hex>``. That index is shared mutable state: writers read
it, merge their entry in, write it back, and read again to check nobody's write was lost; how long
they wait before that read is :class:`SettlePolicy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opk_sign.errors import FormatError
from opk_sign.oci import limits, mediatypes
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.digest import sha256_digest, split_digest
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


def index_digest(index: bytes | None) -> str | None:
    """What a writer compares to tell whether anyone wrote the index since it last looked."""
    return None if index is None else sha256_digest(index)


@dataclass(frozen=True)
class SettlePolicy:
    """How long a writer of a fallback index waits after its write before reading it back.

    A registry that ignores ``If-Match`` (distribution) keeps the last write of the tag: a writer
    that read the index before our write landed and writes after it drops our entries, and only
    a read of ours after that stale write landed can see the loss. So the confirming read waits
    out the longest read-to-write time we expect of a concurrent writer (docs/registry.md):

    - quiet, while we have seen no other writer: ``quiet`` seconds, or ``factor`` times our own
      read-to-write time if that is longer (a concurrent writer is assumed to be no more than that
      much slower than us, or than ``quiet``);
    - contended, once another writer's change of the index has been seen (its digest is not the
      one we wrote, or our entries were dropped): ``contended`` seconds plus ``factor`` times
      our read-to-write time (and no less than the quiet wait). Writers are then known to be
      about, and a crowd of them on one index is slower than one. Contended waits grow by a
      random fraction up to ``jitter``, so that writers that collided do not go on in lock step.
    """

    quiet: float = 0.15
    contended: float = 0.5
    factor: float = 4.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if min(self.quiet, self.contended, self.factor, self.jitter) < 0:
            raise ValueError("settle times, factor and jitter must not be negative")

    def wait(self, read_to_write: float, *, contended: bool, draw: float) -> float:
        """Seconds to wait after a write; ``draw`` is uniform in [0, 1) (the jitter)."""
        measured = self.factor * max(0.0, read_to_write)
        quiet = max(self.quiet, measured)
        if not contended:
            return quiet
        return max(quiet, (self.contended + measured) * (1.0 + self.jitter * draw))
