"""Verifying one opk-sign bundle against one manifest digest. Pure logic, no I/O.

The steps are numbered after docs/verify.md ("What is checked"); each failure is its own error
class, and the identity policy runs last so that "valid, but not by whom you require"
(PolicyError, exit 11) is never confused with "not valid" (every other VerificationError,
exit 12).

Time: a PK token is judged at ``now`` by the expiry policy (24 hours after ``iat`` by default),
unless the verifier trusts TSA certificates (``tsa``) and the bundle carries RFC 3161 timestamps:
then every timestamp must be by a trusted TSA over the bundle's signature bytes and lie inside
the token's validity window, and the token is judged at the earliest timestamp's time instead, so
a signature keeps verifying after the window has passed (docs/timestamps.md).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opk_sign.bundle import Bundle
from opk_sign.errors import (
    FormatError,
    OSMError,
    PayloadMismatchError,
    PolicyError,
    TimestampError,
)
from opk_sign.payloads import INTOTO_PAYLOAD_TYPE, Statement, verify_envelope
from opk_sign.payloads.simplesigning import SimpleSigningPayload
from opk_sign.pktoken import (
    ExpiryPolicy,
    OPKeySource,
    VerifiedPKToken,
    verify_osm,
    verify_pktoken,
)
from opk_sign.pktoken.verify import MAX_AGE_24H, PKTokenCache
from opk_sign.policy import IdentityPolicy

if TYPE_CHECKING:
    # cryptography.x509 and rfc3161_client: loaded only to check timestamps (issue 13).
    from opk_sign.trust.timestamp import TSATrust


@dataclass(frozen=True)
class VerifiedSignature:
    pk_token: VerifiedPKToken
    payload: SimpleSigningPayload
    #: When trusted timestamps proved the signature existed (earliest first); empty without.
    timestamps: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class VerifiedAttestation:
    pk_token: VerifiedPKToken
    statement: Statement
    timestamps: tuple[datetime, ...] = ()


def _timestamps(bundle: Bundle, tsa: TSATrust | None, expiry: ExpiryPolicy) -> tuple[datetime, ...]:
    # 1. Timestamps, only when the verifier trusts TSA certificates and the bundle has any: each
    #    is by a trusted TSA (time-stamping EKU) over the SHA-256 of this bundle's signature
    #    bytes, and its time lies in the PK token's window [iat, end) under the expiry policy.
    #    The claims are read here and authenticated in step 2, which rejects a forged token.
    if tsa is None or not bundle.timestamps:
        return ()
    from opk_sign.trust.timestamp import verify_timestamp

    signature = bundle.signature_bytes()
    iat, end = expiry.window(bundle.pk_token.claims())
    times = []
    for index, timestamp in enumerate(bundle.timestamps):
        moment = verify_timestamp(timestamp, signature, tsa)
        when = int(moment.timestamp())
        if when < iat:
            why = "made before the PK token was issued"
        elif end is not None and when >= end:
            why = "made after the PK token's window had ended"
        else:
            times.append(moment)
            continue
        until = _iso(end) if end is not None else "no end"
        raise TimestampError(
            f"timestamp {index} ({moment.isoformat()}) lies outside the PK token's validity "
            f"window [{_iso(iat)}, {until}) under the {expiry.name!r} expiry policy: {why}"
        )
    return tuple(sorted(times))


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _pk_token(
    bundle: Bundle,
    keys: OPKeySource,
    issuers: Collection[str] | None,
    expiry: ExpiryPolicy,
    at: float | None,
    *,
    cache: PKTokenCache | None,
) -> VerifiedPKToken:
    # 2. The PK token: CIC, issuer, GQ256 over the OP key named by the original kid,
    #    commitment in aud, expiry (at the earliest trusted timestamp's time, else now).
    return verify_pktoken(
        bundle.pk_token,
        keys,
        issuers=frozenset(issuers) if issuers is not None else None,
        expiry=expiry,
        now=at,
        cache=cache,
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
    tsa: TSATrust | None = None,
    signed_repositories: Collection[str] = (),
    pktoken_cache: PKTokenCache | None = None,
) -> VerifiedSignature:
    """A signature bundle for manifest ``digest`` of repository ``docker_reference``, or of one
    of ``signed_repositories`` (where a copied or mirrored image was signed: named by whoever
    writes the policy, never by the registry).

    With ``tsa``, the bundle's timestamps (if any) must verify and the token's expiry is judged
    at the earliest one's time; without, or without timestamps, at ``now``. ``pktoken_cache``
    (the run's) spares the CIC and GQ256 checks of a token verified before against the same OP
    key; the expiry is judged every time.
    """
    if bundle.osm is None:
        raise FormatError("bundle: not a signature (it holds a DSSE envelope, not an OSM)")
    times = _timestamps(bundle, tsa, expiry)
    at = times[0].timestamp() if times else now
    verified = _pk_token(bundle, keys, issuers, expiry, at, cache=pktoken_cache)
    # 3. The OSM: signed by upk under exactly this PK token (its signature is what the
    #    timestamps cover).
    message = verify_osm(bundle.pk_token, bundle.osm)
    # 4. The signed payload names this digest and this repository (no replay onto other images).
    try:
        payload = SimpleSigningPayload.parse(message)
    except FormatError as err:
        raise OSMError(f"signed payload: {err.message}") from None
    if payload.manifest_digest != digest:
        raise PayloadMismatchError(
            f"signature is for manifest {payload.manifest_digest}, not {digest}"
            " (replayed from another image)"
        )
    if payload.docker_reference != docker_reference and (
        payload.docker_reference not in signed_repositories
    ):
        named = "".join(f", {name!r}" for name in signed_repositories)
        # The remedy only for a signer the policy accepts: never invite a user to name the
        # repository of a signature made by someone else.
        try:
            policy.verify(verified.claims)
        except PolicyError:
            hint = None
        else:
            hint = (
                f"if this image is a copy of one signed in {payload.docker_reference}, say so: "
                f"--signed-repository {payload.docker_reference}"
            )
        raise PayloadMismatchError(
            f"signature is for repository {payload.docker_reference!r}, not"
            f" {docker_reference!r}{named} (replayed from another repository)",
            hint=hint,
        )
    # 5. The identity policy on the token's claims.
    policy.verify(verified.claims)
    return VerifiedSignature(verified, payload, times)


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
    tsa: TSATrust | None = None,
    pktoken_cache: PKTokenCache | None = None,
) -> VerifiedAttestation:
    """An attestation bundle whose in-toto subject is manifest ``digest``; ``tsa`` as for
    :func:`verify_signature_bundle`."""
    envelope = bundle.dsse_envelope
    if envelope is None:
        raise FormatError("bundle: not an attestation (it holds an OSM, not a DSSE envelope)")
    times = _timestamps(bundle, tsa, expiry)
    at = times[0].timestamp() if times else now
    verified = _pk_token(bundle, keys, issuers, expiry, at, cache=pktoken_cache)
    # 3. The DSSE envelope: in-toto payload, signed by upk (the signature the timestamps cover).
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise PayloadMismatchError(
            f"DSSE payloadType is {envelope.payload_type!r}, not {INTOTO_PAYLOAD_TYPE!r}"
        )
    payload = verify_envelope(envelope, verified.cic.public_key, "attestation DSSE envelope")
    # 4. The statement's subject is this manifest; the predicate type is the one asked for.
    statement = Statement.parse(payload)
    if not statement.names_digest(digest):
        raise PayloadMismatchError(
            f"attestation subject does not name {digest} (replayed from another image)"
        )
    if predicate_type is not None and statement.predicate_type != predicate_type:
        raise PayloadMismatchError(
            f"attestation predicate type is {statement.predicate_type!r}, not {predicate_type!r}"
        )
    # 5. The identity policy.
    policy.verify(verified.claims)
    return VerifiedAttestation(verified, statement, times)
