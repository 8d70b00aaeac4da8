"""SLSA verification summary attestations (VSA v1) for verified images. Pure logic.

A VSA records that this verifier checked ``resourceUri`` against a policy and what it relied on
(the signature and attestation referrers). It is an unsigned in-toto Statement v1: a consumer
that trusts this run (e.g. a later CI stage of the same workflow) can read the decision without
verifying again. https://slsa.dev/spec/v1.0/verification_summary
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Final

from opk_sign._version import __version__
from opk_sign.oci.mediatypes import INDEX_MEDIA_TYPES
from opk_sign.payloads.intoto import Statement, Subject
from opk_sign.payloads.provenance import SLSA_PROVENANCE_V1
from opk_sign.verify.outcome import ImageResult, Outcome

VSA_PREDICATE_TYPE: Final = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID: Final = "https://github.com/opk-sign/opk-sign/verify"


def build_vsa(
    result: ImageResult, *, policy: str, verified_at: dt.datetime | None = None
) -> Statement:
    """The VSA of a verified image. ``policy`` is the policy's one-line description."""
    if not result.verified or result.digest is None or result.reference is None:
        raise ValueError("a VSA is written only for a verified image")
    when = verified_at or dt.datetime.now(dt.UTC)
    inputs = [
        {
            "uri": f"oci://{result.reference}@{check.referrer}",
            "digest": {"sha256": check.referrer.removeprefix("sha256:")},
        }
        for manifest in result.manifests
        for check in manifest.checks
        if check.outcome is Outcome.VERIFIED and check.referrer.startswith("sha256:")
    ]
    # Build level 2 (signed provenance from a hosted build platform) only when a provenance
    # attestation was verified for every platform, not merely a signature.
    platforms = [m for m in result.manifests if m.media_type not in INDEX_MEDIA_TYPES]
    proven = bool(platforms) and all(
        any(
            c.kind == "attestation"
            and c.predicate_type == SLSA_PROVENANCE_V1
            and c.outcome is Outcome.VERIFIED
            for c in m.checks
        )
        for m in platforms
    )
    levels = ["SLSA_BUILD_LEVEL_2"] if proven else []
    predicate = {
        "verifier": {"id": VERIFIER_ID, "version": {"opk-sign": __version__}},
        "timeVerified": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resourceUri": f"oci://{result.reference}@{result.digest}",
        "policy": {
            "uri": "opk-sign:identity-policy",
            "digest": {"sha256": hashlib.sha256(policy.encode()).hexdigest()},
            "description": policy,
        },
        "inputAttestations": inputs,
        "verificationResult": "PASSED",
        "verifiedLevels": levels,
        "identity": result.identity,
    }
    subject = Subject.for_oci_digest(result.reference, result.digest)
    return Statement.build([subject], VSA_PREDICATE_TYPE, predicate)
