"""opk-sign: keyless signing of container images with OpenPubkey.

The front door of the library (docs/library.md)::

    import opk_sign

    policy = opk_sign.policy_from_fields({"repository": "octo-org/app"})
    options = opk_sign.build_verify_options(policy=policy)
    for result in opk_sign.verify_images(["ghcr.io/octo-org/app:v1"], options):
        print(result.image, result.outcome.label, result.identity.get("job_workflow_ref"))

Names are loaded on first use, so importing the package (as the CLI does) costs nothing.
"""

from __future__ import annotations

from opk_sign._lazy import lazy_exports
from opk_sign._version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (the CLI's start-up)

#: Each public name and the module that defines it.
_EXPORTS: dict[str, str] = {
    # verification
    "verify_images": "opk_sign.verify.image",
    "verify_image": "opk_sign.verify.image",
    "verify_bundle_offline": "opk_sign.verify.image",
    "VerifyOptions": "opk_sign.verify.options",
    "build_verify_options": "opk_sign.verify.options",
    "ImageResult": "opk_sign.verify.outcome",
    "Outcome": "opk_sign.verify.outcome",
    # policies
    "IdentityPolicy": "opk_sign.policy",
    "ClaimPolicy": "opk_sign.policy",
    "AllOf": "opk_sign.policy",
    "AnyOf": "opk_sign.policy",
    "policy_from_fields": "opk_sign.policy",
    "policy_from_document": "opk_sign.policy",
    # signing
    "sign_image": "opk_sign.sign.image",
    "SigningOptions": "opk_sign.sign.image",
    "SigningResult": "opk_sign.sign.image",
    "GitHubActionsProvider": "opk_sign.oidc.github",
    # formats and registries
    "Bundle": "opk_sign.bundle",
    "SignerIdentity": "opk_sign.identity",
    "Reference": "opk_sign.oci.reference",
    "RegistryClient": "opk_sign.oci.client",
    "Keychain": "opk_sign.oci.keychain",
    # errors
    "OpkSignError": "opk_sign.errors",
    "UsageError": "opk_sign.errors",
    "PolicyError": "opk_sign.errors",
    "VerificationError": "opk_sign.errors",
    "TrustError": "opk_sign.errors",
    "RegistryError": "opk_sign.errors",
}

__all__ = [
    "AllOf",
    "AnyOf",
    "Bundle",
    "ClaimPolicy",
    "GitHubActionsProvider",
    "IdentityPolicy",
    "ImageResult",
    "Keychain",
    "OpkSignError",
    "Outcome",
    "PolicyError",
    "Reference",
    "RegistryClient",
    "RegistryError",
    "SignerIdentity",
    "SigningOptions",
    "SigningResult",
    "TrustError",
    "UsageError",
    "VerificationError",
    "VerifyOptions",
    "__version__",
    "build_verify_options",
    "policy_from_document",
    "policy_from_fields",
    "sign_image",
    "verify_bundle_offline",
    "verify_image",
    "verify_images",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__, globals())


if TYPE_CHECKING:
    from opk_sign.bundle import Bundle
    from opk_sign.errors import (
        OpkSignError,
        PolicyError,
        RegistryError,
        TrustError,
        UsageError,
        VerificationError,
    )
    from opk_sign.identity import SignerIdentity
    from opk_sign.oci.client import RegistryClient
    from opk_sign.oci.keychain import Keychain
    from opk_sign.oci.reference import Reference
    from opk_sign.oidc.github import GitHubActionsProvider
    from opk_sign.policy import (
        AllOf,
        AnyOf,
        ClaimPolicy,
        IdentityPolicy,
        policy_from_document,
        policy_from_fields,
    )
    from opk_sign.sign.image import SigningOptions, SigningResult, sign_image
    from opk_sign.verify.image import verify_bundle_offline, verify_image, verify_images
    from opk_sign.verify.options import VerifyOptions, build_verify_options
    from opk_sign.verify.outcome import ImageResult, Outcome
