"""RFC 3161 timestamps over signatures: checking a timestamp against trusted TSA certificate
chains. Pure logic; asking a TSA for one is :mod:`opk_sign.trust.tsa`.

A timestamp proves that a signature existed at a time: its message imprint is the SHA-256 of the
signature bytes (``Bundle.signature_bytes()``: the OSM's decoded signature segment, or the DSSE
signature), signed by a TSA whose certificate carries the time-stamping extended key usage. A
verifier that trusts the TSA can then judge the PK token at the timestamp's time instead of now,
so a signature still verifies after the token's 24-hour window (docs/timestamps.md).

Bundles store the ``TimeStampToken`` (a CMS ``ContentInfo``); the TSA's ``TimeStampResp`` around
it carries only the status, which is checked when the token is requested.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from rfc3161_client import (
    TimeStampResponse,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client import VerificationError as RFC3161VerificationError

from opk_sign.bundle import Timestamp
from opk_sign.errors import TimestampError, TrustError

#: Certificates in a trust file; a TSA chain has three or four.
MAX_TRUSTED_CERTIFICATES: Final = 64
SHA256_OID: Final = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")

#: DER ``PKIStatusInfo { status granted(0) }``, to rebuild a TimeStampResp around a stored token.
_GRANTED: Final = bytes.fromhex("3003020100")


# --- trust ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TSAChain:
    """One trusted TSA: its certificates from the signing certificate (if given) to the root."""

    certificates: tuple[x509.Certificate, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.certificates:
            raise TrustError("a TSA certificate chain needs at least its root certificate")
        if not _self_signed(self.certificates[-1]):
            raise TrustError(
                "a TSA certificate chain must end with its self-signed root; this one ends with "
                f"{self.certificates[-1].subject.rfc4514_string()!r}",
                hint="give each chain leaf first, root last, as the TSA's "
                "/api/v1/timestamp/certchain serves it",
            )

    @property
    def root(self) -> x509.Certificate:
        return self.certificates[-1]

    @property
    def name(self) -> str:
        return self.certificates[0].subject.rfc4514_string()

    def verifier_builder(self) -> VerifierBuilder:
        # A chain that starts with the TSA's own (non-CA) certificate pins it: the token must be
        # signed by exactly that certificate. A chain of CA certificates only trusts any
        # time-stamping certificate they issued (the token carries it).
        first = self.certificates[0]
        leaf = None if _is_ca(first) else first
        return VerifierBuilder(
            tsa_certificate=leaf,
            intermediates=list(self.certificates[1 if leaf else 0 : -1]),
            roots=[self.root],
        )


@dataclass(frozen=True)
class TSATrust:
    """The timestamp authorities a verifier trusts: one or more certificate chains."""

    chains: tuple[TSAChain, ...]

    def __post_init__(self) -> None:
        if not self.chains:
            raise TrustError("no trusted TSA certificates")

    @classmethod
    def from_certificates(cls, certificates: Sequence[x509.Certificate]) -> TSATrust:
        """Chains from certificates in order, each leaf first and ending with a self-signed root."""
        if len(certificates) > MAX_TRUSTED_CERTIFICATES:
            raise TrustError(f"more than {MAX_TRUSTED_CERTIFICATES} TSA certificates")
        chains: list[TSAChain] = []
        current: list[x509.Certificate] = []
        for certificate in certificates:
            current.append(certificate)
            if _self_signed(certificate):
                chains.append(TSAChain(tuple(current)))
                current = []
        if current:
            TSAChain(tuple(current))  # raises, naming the certificate the chain stops at
        return cls(tuple(chains))

    @classmethod
    def from_pem(cls, data: bytes) -> TSATrust:
        """Chains from PEM certificates (``GET /api/v1/timestamp/certchain``; several may follow
        one another)."""
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError as err:
            raise TrustError(
                f"TSA certificates: not PEM certificates ({err})",
                hint="expected -----BEGIN CERTIFICATE----- blocks, leaf first, root last",
            ) from None
        try:
            for certificate in certificates:  # parsed lazily: read every part we use now
                _ = (certificate.subject, certificate.issuer, certificate.extensions)
                certificate.public_key()
            return cls.from_certificates(certificates)
        except ValueError as err:
            raise TrustError(f"TSA certificates: a certificate is malformed ({err})") from None

    @classmethod
    def from_file(cls, path: Path | str) -> TSATrust:
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise TrustError(f"cannot read TSA certificates {path}: {err.strerror}") from None
        try:
            return cls.from_pem(data)
        except TrustError as err:
            raise TrustError(f"{path}: {err.message}", hint=err.hint) from None


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _self_signed(certificate: x509.Certificate) -> bool:
    if certificate.subject != certificate.issuer:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# --- verification (pure) --------------------------------------------------------------------------


def verify_timestamp(ts: Timestamp, signature: bytes, trust: TSATrust) -> datetime:
    """The time (UTC) at which ``signature`` provably existed, by a TSA ``trust`` holds.

    Checks, in order: the token parses; its message imprint is SHA-256 and equals the SHA-256 of
    ``signature``; its CMS signature verifies with a certificate that chains, at the token's own
    time, to a trusted chain, is the chain's pinned TSA certificate when the chain names one, and
    carries the critical time-stamping EKU. Raises :class:`TimestampError` naming what failed.
    """
    response = parse_token(ts.rfc3161)
    info = response.tst_info
    imprint = info.message_imprint
    if imprint.hash_algorithm != SHA256_OID:
        raise TimestampError(
            "timestamp message imprint uses hash "
            f"{imprint.hash_algorithm.dotted_string}, not SHA-256"
        )
    digest = hashlib.sha256(signature).digest()
    if imprint.message != digest:
        raise TimestampError(
            "timestamp is over another signature: its message imprint is "
            f"{imprint.message.hex()}, the signature's SHA-256 is {digest.hex()}"
        )
    reasons = []
    for chain in trust.chains:
        try:
            chain.verifier_builder().build().verify(response, digest)
        except (RFC3161VerificationError, ValueError) as err:
            reasons.append(f"{chain.name}: {err}")
            continue
        return _utc(info.gen_time)
    raise TimestampError(
        f"timestamp is not signed by a trusted TSA ({'; '.join(reasons)})",
        hint="pass the certificate chain of the TSA the signer used (e.g. its "
        "/api/v1/timestamp/certchain)",
    )


def parse_token(token: bytes) -> TimeStampResponse:
    """The stored token inside a rebuilt granted TimeStampResp, its TSTInfo read once."""
    body = _GRANTED + token
    try:
        response = decode_timestamp_response(b"\x30" + _der_length(len(body)) + body)
        if response.time_stamp_token() != token:
            raise ValueError("trailing bytes after the TimeStampToken")
        info = response.tst_info
        _ = (info.message_imprint.hash_algorithm, info.message_imprint.message, info.gen_time)
        if len(response.signed_data.signer_infos) != 1:
            raise ValueError("expected exactly one signer")
    except ValueError as err:
        raise TimestampError(f"malformed RFC 3161 timestamp token: {err}") from None
    return response


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


__all__ = [
    "TSAChain",
    "TSATrust",
    "verify_timestamp",
]
