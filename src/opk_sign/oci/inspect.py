"""The tree of an image: index, platform manifests, and every referrer, recursively.

Like ``cosign tree`` and ``oras discover``: manifests of the image are read, referrers are shown
from their listing (artifact type, annotations, digest) without fetching their content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opk_sign.oci import limits, mediatypes
from opk_sign.oci.client import RefLike, RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.manifest import ImageIndex
from opk_sign.oci.reference import Reference, as_reference


@dataclass
class TreeNode:
    descriptor: Descriptor
    manifests: list[TreeNode] = field(default_factory=list)
    referrers: list[TreeNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = self.descriptor.to_dict()
        if self.descriptor.platform is not None:
            out["platform"] = str(self.descriptor.platform)
        if self.manifests:
            out["manifests"] = [m.to_dict() for m in self.manifests]
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
    root = _manifest_node(client, reference, descriptor, data, depth=0)
    return ImageTree(reference, root)


def _manifest_node(
    client: RegistryClient, ref: Reference, descriptor: Descriptor, data: bytes, depth: int
) -> TreeNode:
    node = TreeNode(descriptor)
    manifest = client.parse(descriptor, data)
    if isinstance(manifest, ImageIndex) and depth < limits.MAX_REFERRER_DEPTH:
        for child in manifest.manifests:
            if child.media_type in mediatypes.INDEX_MEDIA_TYPES:
                _, child_data = client.pull_manifest(ref, child.digest)
                node.manifests.append(_manifest_node(client, ref, child, child_data, depth + 1))
            else:
                node.manifests.append(
                    TreeNode(child, referrers=_referrers(client, ref, child.digest, 0))
                )
    node.referrers = _referrers(client, ref, descriptor.digest, 0)
    return node


def _referrers(client: RegistryClient, ref: Reference, digest: str, depth: int) -> list[TreeNode]:
    if depth >= limits.MAX_REFERRER_DEPTH:
        return []
    return [
        TreeNode(r, referrers=_referrers(client, ref, r.digest, depth + 1))
        for r in sorted(
            client.list_referrers(ref, digest),
            key=lambda d: (d.artifact_type or "", d.digest),
        )
    ]


def _render_children(node: TreeNode, prefix: str, lines: list[str]) -> None:
    items: list[tuple[str, TreeNode | None, list[str]]] = []
    for child in node.manifests:
        label = str(child.descriptor.platform or child.descriptor.media_type)
        items.append((f"{label} {child.descriptor.digest}", child, []))
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
