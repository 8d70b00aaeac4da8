"""Verification: one bundle against one manifest (pure), and images from registries (I/O)."""

from opk_sign.verify.bundle import (
    VerifiedAttestation,
    VerifiedSignature,
    verify_attestation_bundle,
    verify_signature_bundle,
)

__all__ = [
    "VerifiedAttestation",
    "VerifiedSignature",
    "verify_attestation_bundle",
    "verify_signature_bundle",
]
