"""The OCI registry layer: references, credentials, the registry client, referrers, copy, inspect.

The public surface is re-exported here; see docs/registry.md.
"""

from __future__ import annotations

from opk_sign.oci.client import RegistryClient
from opk_sign.oci.credentials import Credential, ExplicitCredentials, Keychain
from opk_sign.oci.descriptor import Descriptor, Platform
from opk_sign.oci.dockerconfig import DockerConfig
from opk_sign.oci.manifest import ImageIndex, ImageManifest, parse_manifest
from opk_sign.oci.reference import Reference

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
