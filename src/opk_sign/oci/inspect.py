"""The tree of an image: index, platform manifests, and every referrer, recursively.

Like ``cosign tree`` and ``oras discover``: manifests of the image are read, referrers are shown
from their listing (artifact type, annotations, digest) without fetching their content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opk_sign.errors import RegistryError
from opk_sign.oci import limits, mediatypes
from opk_sign.oci.buildkit import (
    ATTESTATION_ARTIFACT_TYPE,
    attestation_layers,
    attestation_target,
    is_attestation_descriptor,
)
from opk_sign.oci.client import RefLike, RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.manifest import ImageIndex, ImageManifest
from opk_sign.oci.reference import Reference, as_reference


@dataclass
class TreeNode:
    descriptor: Descriptor
    manifests: list[TreeNode] = field(default_factory=list)
    referrers: list[TreeNode] = field(default_factory=list)
    #: BuildKit attestation manifests about this platform manifest (listed in the index).
    attestations: list[TreeNode] = field(default_factory=list)
    #: For a BuildKit attestation manifest: the predicate types its layers announce.
    predicate_types: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.descriptor.to_dict()
        if self.descriptor.platform is not None:
            out["platform"] = str(self.descriptor.platform)
        if self.predicate_types is not None:
            out["predicateTypes"] = list(self.predicate_types)
        if self.manifests:
            out["manifests"] = [m.to_dict() for m in self.manifests]
        if self.attestations:
            out["attestations"] = [a.to_dict() for a in self.attestations]
        out["referrers"] = [r.to_dict() for r in self.referrers]
        return out


@dataclass
class ImageTree:
    reference: Reference
    root: TreeNode

    def to_dict(self, image: str | None = None) -> dict[str, Any]:
        """The ``inspect --output json`` document (docs/schemas/inspect.schema.json): ``image`` as
        the user gave it (default: the canonical reference), ``reference`` the normalised
        registry/repository, then the top-level manifest's descriptor (its ``digest``...) and
        tree."""
        return {
            "image": str(self.reference) if image is None else image,
            "reference": self.reference.name,
            **self.root.to_dict(),
        }

    def referrer_digests(self) -> set[str]:
        found: set[str] = set()
        stack = [self.root]
        while stack:
            node = stack.pop()
            stack += node.manifests
            for referrer in node.referrers:
                found.add(referrer.descriptor.digest)
                stack.append(referrer)
        return found

    def render(self) -> str:
        """A text tree for people."""
        lines = [f"{self.reference.repo()}@{self.root.descriptor.digest}"]
        lines.append(f"  {self.root.descriptor.media_type} ({self.root.descriptor.size} bytes)")
        _render_children(self.root, "", lines)
        return "\n".join(lines)


def inspect_image(client: RegistryClient, ref: RefLike) -> ImageTree:
    reference = as_reference(ref)
    if not reference.tag and not reference.digest:
        reference = reference.with_tag("latest")
    descriptor, data = client.pull_manifest(reference)
    root = _manifest_node(client, reference, descriptor, data, 0, _Walk())
    return ImageTree(reference, root)


@dataclass
class _Walk:
    """What one inspection has listed: each manifest's referrers are listed once, however many
    subjects a registry lists it under, and the whole tree holds at most MAX_REFERRERS of them
    (a hostile registry repeating its listing under every subject would otherwise make the walk
    grow exponentially with the depth)."""

    listed: set[str] = field(default_factory=set)
    nodes: int = 0


def _manifest_node(  # noqa: PLR0917 - the recursion's state, passed down as it is
    client: RegistryClient,
    ref: Reference,
    descriptor: Descriptor,
    data: bytes,
    depth: int,
    walk: _Walk,
) -> TreeNode:
    node = TreeNode(descriptor)
    manifest = client.parse(descriptor, data)
    if isinstance(manifest, ImageIndex) and depth < limits.MAX_REFERRER_DEPTH:
        for child in manifest.manifests:
            if is_attestation_descriptor(child):
                continue  # shown under the platform manifest it is about (below)
            if child.media_type in mediatypes.INDEX_MEDIA_TYPES:
                _, child_data = client.pull_manifest(ref, child.digest)
                node.manifests.append(
                    _manifest_node(client, ref, child, child_data, depth + 1, walk)
                )
            else:
                node.manifests.append(
                    TreeNode(child, referrers=_referrers(client, ref, child.digest, 0, walk))
                )
        if any(is_attestation_descriptor(child) for child in manifest.manifests):
            _attach_attestations(client, ref, manifest, node, walk)
    node.referrers = _referrers(client, ref, descriptor.digest, 0, walk)
    return node


def _attach_attestations(
    client: RegistryClient, ref: Reference, index: ImageIndex, node: TreeNode, walk: _Walk
) -> None:
    """BuildKit's attestation manifests, each under the platform manifest it names, with the
    predicate types of its layers (one small manifest read each); one naming no manifest of the
    index stays in the index's list."""
    platforms = {child.descriptor.digest: child for child in node.manifests}
    for child in index.manifests:
        if not is_attestation_descriptor(child):
            continue
        attestation = TreeNode(child, referrers=_referrers(client, ref, child.digest, 0, walk))
        read, data = client.pull_manifest(ref, child.digest)
        parsed = client.parse(read, data)
        attestation.predicate_types = (
            [
                layer.predicate_type or layer.descriptor.media_type
                for layer in attestation_layers(parsed)
            ]
            if isinstance(parsed, ImageManifest)
            else []
        )
        target = platforms.get(attestation_target(child) or "")
        if target is None:
            node.manifests.append(attestation)
            continue
        target.attestations.append(attestation)
        # Newer BuildKit also gives the attestation manifest a `subject` and its artifactType:
        # the referrers API then lists it under its platform too. It is shown once, as the
        # attestation it is; a referrer of another type is never hidden, whatever the index
        # calls it (an index entry could name a signature's digest). Its own referrers were
        # listed under that entry (each manifest's are listed once): they move with it.
        shown = [
            r
            for r in target.referrers
            if r.descriptor.digest == child.digest
            and r.descriptor.artifact_type == ATTESTATION_ARTIFACT_TYPE
        ]
        if shown:
            target.referrers = [r for r in target.referrers if r not in shown]
            attestation.referrers = attestation.referrers or shown[0].referrers


def _referrers(
    client: RegistryClient, ref: Reference, digest: str, depth: int, walk: _Walk
) -> list[TreeNode]:
    if depth >= limits.MAX_REFERRER_DEPTH or digest in walk.listed:
        return []
    walk.listed.add(digest)
    found = sorted(
        client.list_referrers(ref, digest), key=lambda d: (d.artifact_type or "", d.digest)
    )
    walk.nodes += len(found)
    if walk.nodes > limits.MAX_REFERRERS:
        raise RegistryError(
            f"{ref.name}: the registry lists more than {limits.MAX_REFERRERS} referrers in this "
            "image's tree; refusing to walk further",
            hint="inspect a single manifest by digest, or ask the registry's owner",
        )
    return [
        TreeNode(r, referrers=_referrers(client, ref, r.digest, depth + 1, walk)) for r in found
    ]


def _render_children(node: TreeNode, prefix: str, lines: list[str]) -> None:
    items: list[tuple[str, TreeNode | None, list[str]]] = []
    for child in node.manifests:
        label = str(child.descriptor.platform or child.descriptor.media_type)
        detail = []
        if child.predicate_types is not None:  # an attestation manifest naming no platform
            label = "attestation manifest"
            detail = [f"predicate type: {t}" for t in child.predicate_types]
        items.append((f"{label} {child.descriptor.digest}", child, detail))
    for attestation in node.attestations:
        detail = [f"predicate type: {t}" for t in attestation.predicate_types or []]
        items.append((f"attestation manifest {attestation.descriptor.digest}", attestation, detail))
    for referrer in node.referrers:
        d = referrer.descriptor
        detail = [f"{k}={v}" for k, v in sorted(d.annotations.items())]
        items.append((f"{d.artifact_type or d.media_type} {d.digest}", referrer, detail))
    for i, (label, child_node, detail) in enumerate(items):
        last = i == len(items) - 1
        lines.append(f"{prefix}{'└── ' if last else '├── '}{label}")
        inner = prefix + ("    " if last else "│   ")
        lines.extend(f"{inner}  {line}" for line in detail)
        if child_node is not None:
            _render_children(child_node, inner, lines)
