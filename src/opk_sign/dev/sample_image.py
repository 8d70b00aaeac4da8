"""Small synthetic container images for the demo and local experiments (`opk-sign dev
push-sample`): random layers, a config per platform, and an OCI index over the platforms."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

from opk_sign.oci import mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor, Platform
from opk_sign.oci.manifest import canonical_json
from opk_sign.oci.reference import Reference

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")


def push_sample_image(
    client: RegistryClient,
    reference: Reference,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    *,
    layer_size: int = 1024,
) -> Descriptor:
    """Push a random image under ``reference``'s tag; an index when there are several platforms.

    Returns the descriptor of what the tag names.
    """
    if not platforms:
        raise ValueError("at least one platform")
    tag = reference.tag or "latest"
    children = []
    for text in platforms:
        platform = Platform.parse(text)
        data = _platform_manifest(client, reference, platform, layer_size)
        if len(platforms) == 1:
            digest = client.put_manifest(reference, data, mediatypes.OCI_MANIFEST, tag=tag)
            return Descriptor(mediatypes.OCI_MANIFEST, digest, len(data), platform=platform)
        digest = client.put_manifest(reference, data, mediatypes.OCI_MANIFEST)
        children.append(Descriptor(mediatypes.OCI_MANIFEST, digest, len(data), platform=platform))
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [child.to_dict() for child in children],
    }
    data = canonical_json(index)
    digest = client.put_manifest(reference, data, mediatypes.OCI_INDEX, tag=tag)
    return Descriptor(mediatypes.OCI_INDEX, digest, len(data))


def _platform_manifest(
    client: RegistryClient, reference: Reference, platform: Platform, layer_size: int
) -> bytes:
    content = os.urandom(layer_size)
    layer = client.put_blob(reference, content, mediatypes.OCI_LAYER_GZIP)
    config: dict[str, Any] = {
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(content).hexdigest()]},
    }
    if platform.variant:
        config["variant"] = platform.variant
    config_descriptor = client.put_blob(reference, canonical_json(config), mediatypes.OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": config_descriptor.to_dict(),
        "layers": [layer.to_dict()],
    }
    return canonical_json(manifest)
