"""Verifying one opk-sign bundle against one manifest digest. Pure logic, no I/O.

The steps are numbered after DESIGN.md "Verification"; each failure is its own error class, and
the identity policy runs last so that "valid, but not by whom you require" (PolicyError, exit 11)
is never confused with "not valid" (every other VerificationError, exit 12).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from opk_sign.bundle import Bundle
from opk_sign.envelope import INTOTO_PAYLOAD_TYPE, Statement, verify_envelope
from opk_sign.errors import FormatError, OSMError, PayloadMismatchError
from opk_sign.pktoken import (
    ExpiryPolicy,
    OPKeySource,
    VerifiedPKToken,
    verify_osm,
    verify_pktoken,
)
from opk_sign.pktoken.verify import MAX_AGE_24H
from opk_sign.policy import IdentityPolicy
from opk_sign.simplesigning import SimpleSigningPayload


@dataclass(frozen=True)
class VerifiedSignature:
    pk_token: VerifiedPKToken
    payload: SimpleSigningPayload


@dataclass(frozen=True)
class VerifiedAttestation:
    pk_token: VerifiedPKToken
    statement: Statement


def _pk_token(
    bundle: Bundle,
    keys: OPKeySource,
    issuers: Collection[str] | None,
    expiry: ExpiryPolicy,
    now: float | None,
) -> VerifiedPKToken:
    # 1. The PK token: CIC, issuer, GQ256 over the OP key named by the original kid,
    #    commitment in aud, expiry.
    return verify_pktoken(
        bundle.pk_token,
        keys,
        issuers=frozenset(issuers) if issuers is not None else None,
        expiry=expiry,
        now=now,
    )


def verify_signature_bundle(
    bundle: Bundle,
    *,
    digest: str,
    docker_reference: str,
    keys: OPKeySource,
    policy: IdentityPolicy,
    issuers: Collection[str] | None = None,
    expiry: ExpiryPolicy = MAX_AGE_24H,
    now: float | None = None,
) -> VerifiedSignature:
    """A signature bundle for manifest ``digest`` of repository ``docker_reference``."""
    if bundle.osm is None:
        raise FormatError("bundle: not a signature (it holds a DSSE envelope, not an OSM)")
    verified = _pk_token(bundle, keys, issuers, expiry, now)
    # 2. The OSM: signed by upk under exactly this PK token.
    message = verify_osm(bundle.pk_token, bundle.osm)
    # 3. The signed payload names this digest and this repository (no replay onto other images).
    try:
        payload = SimpleSigningPayload.parse(message)
    except FormatError as err:
        raise OSMError(f"signed payload: {err.message}") from None
    if payload.manifest_digest != digest:
        raise PayloadMismatchError(
            f"signature is for manifest {payload.manifest_digest}, not {digest}"
            " (replayed from another image)"
        )
    if payload.docker_reference != docker_reference:
        raise PayloadMismatchError(
            f"signature is for repository {payload.docker_reference!r}, not"
            f" {docker_reference!r} (replayed from another repository)"
        )
    # 4. The identity policy on the token's claims.
    policy.verify(verified.claims)
    return VerifiedSignature(verified, payload)


def verify_attestation_bundle(
    bundle: Bundle,
    *,
    digest: str,
    keys: OPKeySource,
    policy: IdentityPolicy,
    predicate_type: str | None = None,
    issuers: Collection[str] | None = None,
    expiry: ExpiryPolicy = MAX_AGE_24H,
    now: float | None = None,
) -> VerifiedAttestation:
    """An attestation bundle whose in-toto subject is manifest ``digest``."""
    envelope = bundle.dsse_envelope
    if envelope is None:
        raise FormatError("bundle: not an attestation (it holds an OSM, not a DSSE envelope)")
    verified = _pk_token(bundle, keys, issuers, expiry, now)
    # 2. The DSSE envelope: in-toto payload, signed by upk.
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise PayloadMismatchError(
            f"DSSE payloadType is {envelope.payload_type!r}, not {INTOTO_PAYLOAD_TYPE!r}"
        )
    payload = verify_envelope(envelope, verified.cic.public_key, "attestation DSSE envelope")
    # 3. The statement's subject is this manifest; the predicate type is the one asked for.
    statement = Statement.parse(payload)
    if not statement.names_digest(digest):
        raise PayloadMismatchError(
            f"attestation subject does not name {digest} (replayed from another image)"
        )
    if predicate_type is not None and statement.predicate_type != predicate_type:
        raise PayloadMismatchError(
            f"attestation predicate type is {statement.predicate_type!r}, not {predicate_type!r}"
        )
    # 4. The identity policy.
    policy.verify(verified.claims)
    return VerifiedAttestation(verified, statement)
