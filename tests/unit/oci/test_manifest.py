"""Manifests, descriptors and the OCI 1.1 artifact manifest opk-sign writes."""

from __future__ import annotations

import hashlib
import json

import pytest

from opk_sign.errors import FormatError
from opk_sign.oci import mediatypes
from opk_sign.oci.descriptor import Descriptor, Platform
from opk_sign.oci.manifest import (
    ImageIndex,
    ImageManifest,
    build_artifact_manifest,
    empty_descriptor,
    media_type_of,
    parse_manifest,
)

SUBJECT = Descriptor(mediatypes.OCI_INDEX, "sha256:" + "1" * 64, 491, platform=Platform("a", "b"))
LAYER = Descriptor("application/vnd.example.bundle+json", "sha256:" + "2" * 64, 1234)


def test_artifact_manifest_has_the_storage_layout() -> None:
    data = build_artifact_manifest(SUBJECT, "application/vnd.example.sig", LAYER, {"k": "v"})
    document = json.loads(data)
    assert document == {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
            "size": 2,
        },
        "layers": [LAYER.to_dict()],
        "subject": {"mediaType": mediatypes.OCI_INDEX, "digest": SUBJECT.digest, "size": 491},
        "annotations": {"k": "v"},
    }
    manifest = parse_manifest(data)
    assert isinstance(manifest, ImageManifest)
    assert manifest.config == empty_descriptor()
    assert manifest.effective_artifact_type == "application/vnd.example.sig"
    assert manifest.raw == data
    assert "annotations" not in json.loads(build_artifact_manifest(SUBJECT, "a/b", LAYER, {}))
    with pytest.raises(FormatError):
        build_artifact_manifest(SUBJECT, "", LAYER, {})


def test_descriptor_round_trip_keeps_unknown_fields() -> None:
    raw = {
        "mediaType": mediatypes.OCI_MANIFEST,
        "digest": "sha256:" + "3" * 64,
        "size": 7,
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        "annotations": {"a": "b"},
        "artifactType": "x/y",
        "urls": ["https://example.com/blob"],
        "data": "e30=",
        "x-future": [1, 2],
    }
    descriptor = Descriptor.from_dict(raw)
    assert str(descriptor.platform) == "linux/arm64/v8"
    assert descriptor.to_dict() == raw
    assert Platform.parse("linux/arm64/v8") == descriptor.platform


@pytest.mark.parametrize(
    "raw",
    [
        "x",
        {"digest": "sha256:1", "size": 1},
        {"mediaType": "a/b", "digest": "nocolon", "size": 1},
        {"mediaType": "a/b", "digest": "sha256:1", "size": -1},
        {"mediaType": "a/b", "digest": "sha256:1", "size": True},
        {"mediaType": "a/b", "digest": "sha256:1", "size": 1, "annotations": {"a": 1}},
        {"mediaType": "a/b", "digest": "sha256:1", "size": 1, "urls": "x"},
    ],
)
def test_invalid_descriptors(raw: object) -> None:
    with pytest.raises(FormatError):
        Descriptor.from_dict(raw)


def test_parse_index_and_media_type_detection() -> None:
    index = json.dumps(
        {"schemaVersion": 2, "manifests": [SUBJECT.to_dict()], "annotations": {"a": "b"}}
    ).encode()
    parsed = parse_manifest(index)
    assert isinstance(parsed, ImageIndex)
    assert parsed.media_type == mediatypes.OCI_INDEX
    assert media_type_of(index, mediatypes.DOCKER_MANIFEST_LIST) == mediatypes.DOCKER_MANIFEST_LIST
    docker = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.DOCKER_MANIFEST,
            "config": LAYER.to_dict(),
            "layers": [],
        }
    ).encode()
    assert parse_manifest(docker).media_type == mediatypes.DOCKER_MANIFEST
    with pytest.raises(FormatError, match="schemaVersion"):
        parse_manifest(b'{"schemaVersion": 1, "fsLayers": []}')
    with pytest.raises(FormatError):
        parse_manifest(b'{"schemaVersion": 2}')
    with pytest.raises(FormatError):
        parse_manifest(b"[]")
