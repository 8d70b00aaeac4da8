"""The OCI registry layer: references, credentials, the registry client, referrers, copy, inspect.

Pure modules (reference, digest, descriptor, manifest, mediatypes, limits, referrers) apart from
the I/O ones (credentials, dockerconfig, keychain, auth, transport, client, copy, inspect); see
docs/registry.md. Public names are re-exported here, loaded on first use so that importing a pure
module does not load the HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Credential": "opk_sign.oci.credentials",
    "Descriptor": "opk_sign.oci.descriptor",
    "DockerConfig": "opk_sign.oci.dockerconfig",
    "ExplicitCredentials": "opk_sign.oci.credentials",
    "ImageIndex": "opk_sign.oci.manifest",
    "ImageManifest": "opk_sign.oci.manifest",
    "Keychain": "opk_sign.oci.keychain",
    "Platform": "opk_sign.oci.descriptor",
    "Reference": "opk_sign.oci.reference",
    "RegistryClient": "opk_sign.oci.client",
    "parse_manifest": "opk_sign.oci.manifest",
}
__all__ = [
    "Credential",
    "Descriptor",
    "DockerConfig",
    "ExplicitCredentials",
    "ImageIndex",
    "ImageManifest",
    "Keychain",
    "Platform",
    "Reference",
    "RegistryClient",
    "parse_manifest",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'opk_sign.oci' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from opk_sign.oci.client import RegistryClient
    from opk_sign.oci.credentials import Credential, ExplicitCredentials
    from opk_sign.oci.descriptor import Descriptor, Platform
    from opk_sign.oci.dockerconfig import DockerConfig
    from opk_sign.oci.keychain import Keychain
    from opk_sign.oci.manifest import ImageIndex, ImageManifest, parse_manifest
    from opk_sign.oci.reference import Reference
