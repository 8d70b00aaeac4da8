"""Sample images for the registry tests: the library's generator with the tests' defaults
(two layers per platform, always an index unless asked for a plain manifest)."""

from __future__ import annotations

from collections.abc import Sequence

from opk_sign._dev.sample_image import DEFAULT_PLATFORMS
from opk_sign._dev.sample_image import push_sample_image as _push
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor

__all__ = ["DEFAULT_PLATFORMS", "push_sample_image"]


def push_sample_image(
    client: RegistryClient,
    repo_ref: str,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    *,
    layers: int = 2,
    layer_size: int = 2048,
    index: bool = True,
    tar_layers: bool = False,
) -> Descriptor:
    """Push a random image to ``repo_ref`` (its tag, else ``latest``); returns what the tag names.
    ``tar_layers``: real gzipped tar layers, which a runtime can unpack (containerd)."""
    return _push(
        client,
        repo_ref,
        platforms,
        layers=layers,
        layer_size=layer_size,
        index=index,
        tar_layers=tar_layers,
    )
