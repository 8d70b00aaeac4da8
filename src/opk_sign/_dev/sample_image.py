"""Small synthetic container images for the demo, tests and local experiments (`opk-sign dev
push-sample`): random layers, a config per platform, and an OCI index over the platforms."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
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
    reference: Reference | str,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    *,
    layers: int = 1,
    layer_size: int = 1024,
    index: bool | None = None,
    tar_layers: bool = False,
) -> Descriptor:
    """Push a random image under ``reference``'s tag (else ``latest``); returns what it names.

    Each platform gets ``layers`` random layers and a config. ``index`` None makes an OCI index
    when there are several platforms; True always makes one; False pushes a single platform's
    image manifest. ``tar_layers``: each layer a real gzipped tar (one file of random text),
    so that a runtime can unpack the image (containerd's pulls); else random bytes.
    """
    ref = Reference.parse(reference) if isinstance(reference, str) else reference
    if not platforms:
        raise ValueError("at least one platform")
    if index is None:
        index = len(platforms) > 1
    if not index and len(platforms) != 1:
        raise ValueError("a single-platform image (index=False) needs exactly one platform")
    tag = ref.tag or "latest"
    children = []
    for text in platforms:
        platform = Platform.parse(text)
        data = _platform_manifest(client, ref, platform, layers, layer_size, tar_layers=tar_layers)
        if not index:
            digest = client.put_manifest(ref, data, mediatypes.OCI_MANIFEST, tag=tag)
            return Descriptor(mediatypes.OCI_MANIFEST, digest, len(data))
        digest = client.put_manifest(ref, data, mediatypes.OCI_MANIFEST)
        children.append(Descriptor(mediatypes.OCI_MANIFEST, digest, len(data), platform=platform))
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [child.to_dict() for child in children],
    }
    data = canonical_json(document)
    digest = client.put_manifest(ref, data, mediatypes.OCI_INDEX, tag=tag)
    return Descriptor(mediatypes.OCI_INDEX, digest, len(data))


def _tar_layer(number: int, size: int) -> tuple[bytes, bytes]:
    """A gzipped tar holding one file of ``size`` random hex characters: (blob, diff)."""
    text = os.urandom((size + 1) // 2).hex()[:size].encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(f"sample-{number}.txt")
        info.size, info.mode, info.mtime = len(text), 0o644, 0
        archive.addfile(info, io.BytesIO(text))
    diff = buffer.getvalue()
    return gzip.compress(diff, mtime=0), diff


def _platform_manifest(
    client: RegistryClient,
    ref: Reference,
    platform: Platform,
    layers: int,
    layer_size: int,
    *,
    tar_layers: bool = False,
) -> bytes:
    layer_descriptors = []
    diff_ids = []
    for number in range(layers):
        if tar_layers:
            content, diff = _tar_layer(number, layer_size)
        else:
            content = diff = os.urandom(layer_size)
        layer_descriptors.append(client.put_blob(ref, content, mediatypes.OCI_LAYER_GZIP))
        diff_ids.append("sha256:" + hashlib.sha256(diff).hexdigest())
    config: dict[str, Any] = {
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if platform.variant:
        config["variant"] = platform.variant
    config_descriptor = client.put_blob(ref, canonical_json(config), mediatypes.OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": config_descriptor.to_dict(),
        "layers": [layer.to_dict() for layer in layer_descriptors],
    }
    return canonical_json(manifest)
