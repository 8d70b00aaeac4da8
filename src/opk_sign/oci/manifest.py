"""Image manifests and indexes: parsing what registries hold, building OCI 1.1 artifact manifests.

Pure functions over bytes; the registry client does the I/O. Parsed models keep the exact bytes
they came from (``raw``) and every field they do not model, so nothing is re-serialised by accident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opk_sign.errors import FormatError
from opk_sign.jose import parse_json
from opk_sign.oci import limits, mediatypes
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.digest import sha256_digest


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    raw: bytes = b""

    @property
    def effective_artifact_type(self) -> str | None:
        """``artifactType``, else the config media type unless that is the empty type (OCI 1.1)."""
        if self.artifact_type:
            return self.artifact_type
        if self.config.media_type not in (mediatypes.OCI_EMPTY, mediatypes.OCI_CONFIG):
            return self.config.media_type
        return None

    def blobs(self) -> tuple[Descriptor, ...]:
        return (self.config, *self.layers)


@dataclass(frozen=True)
class ImageIndex:
    media_type: str
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    raw: bytes = b""


Manifest = ImageManifest | ImageIndex


def load_json_object(data: bytes, what: str) -> dict[str, Any]:
    """A registry's JSON document, parsed strictly (no duplicate members, bounded size, depth and
    numbers): whatever a registry sends ends as a FormatError, never another exception."""
    try:
        doc = parse_json(data, what, max_bytes=limits.MAX_MANIFEST_BYTES)
    except FormatError as err:
        raise FormatError(f"{what} is not JSON we accept: {err.message}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{what} is not a JSON object")
    return doc


def media_type_of(data: bytes, header_media_type: str | None = None) -> str:
    """The media type of manifest bytes: ``mediaType``, else the header, else their shape."""
    doc = load_json_object(data, "manifest")
    return _media_type(doc, header_media_type)


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """Parse an image manifest or index; ``media_type`` is the Content-Type the registry sent."""
    doc = load_json_object(data, "manifest")
    if doc.get("schemaVersion") != 2:
        raise FormatError(f"unsupported manifest schemaVersion {doc.get('schemaVersion')!r}")
    kind = _media_type(doc, media_type)
    subject = Descriptor.from_dict(doc["subject"]) if doc.get("subject") is not None else None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise FormatError("artifactType must be a string")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise FormatError("annotations must be an object")
    if kind in mediatypes.INDEX_MEDIA_TYPES:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise FormatError("index without a manifests list")
        if len(manifests) > limits.MAX_INDEX_MANIFESTS:
            raise FormatError(
                f"index lists {len(manifests)} manifests (at most {limits.MAX_INDEX_MANIFESTS})"
            )
        return ImageIndex(
            media_type=kind,
            manifests=tuple(Descriptor.from_dict(m) for m in manifests),
            subject=subject,
            artifact_type=artifact_type,
            annotations=dict(annotations),
            raw=data,
        )
    if kind in mediatypes.IMAGE_MANIFEST_MEDIA_TYPES:
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise FormatError("image manifest without a layers list")
        return ImageManifest(
            media_type=kind,
            config=Descriptor.from_dict(doc.get("config")),
            layers=tuple(Descriptor.from_dict(layer) for layer in layers),
            subject=subject,
            artifact_type=artifact_type,
            annotations=dict(annotations),
            raw=data,
        )
    raise FormatError(f"unsupported manifest media type {kind!r}")


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """Compact JSON in insertion order: we write these bytes, so our digest is the stored one."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def empty_descriptor() -> Descriptor:
    """The OCI 1.1 empty config: ``{}`` as ``application/vnd.oci.empty.v1+json``."""
    return Descriptor(
        mediatypes.OCI_EMPTY, sha256_digest(mediatypes.EMPTY_JSON), len(mediatypes.EMPTY_JSON)
    )


def build_artifact_manifest(
    subject: Descriptor,
    artifact_type: str,
    layer: Descriptor,
    annotations: Mapping[str, str],
) -> bytes:
    """An OCI 1.1 artifact manifest: empty config, one layer, ``subject``, ``artifactType``."""
    if not artifact_type:
        raise FormatError("an artifact manifest needs an artifactType")
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty_descriptor().to_dict(),
        "layers": [layer.to_dict()],
        "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_dict(),
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return canonical_json(doc)


def _media_type(doc: Mapping[str, Any], header: str | None) -> str:
    field_type = doc.get("mediaType")
    if isinstance(field_type, str) and field_type:
        return field_type
    header = (header or "").split(";", 1)[0].strip()
    if header in mediatypes.MANIFEST_MEDIA_TYPES:
        return header
    # OCI manifests may omit mediaType; the shape says which it is.
    if "manifests" in doc:
        return mediatypes.OCI_INDEX
    if "config" in doc or "layers" in doc:
        return mediatypes.OCI_MANIFEST
    raise FormatError("cannot tell the manifest's media type")
