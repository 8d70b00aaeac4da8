"""RFC 3161 timestamps over signatures: asking a timestamp authority (I/O), and checking a
timestamp against trusted TSA certificate chains (pure).

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

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client import VerificationError as RFC3161VerificationError

from opk_sign.bundle import MAX_TIMESTAMP_BYTES, Timestamp
from opk_sign.errors import NetworkError, TimestampError, TrustError
from opk_sign.http import DEFAULT_HTTP, RETRY_STATUSES, new_session, require_secure_url

#: The public TSA signing uses unless told otherwise: Sigstore's timestamp authority.
DEFAULT_TIMESTAMP_URL: Final = "https://timestamp.sigstore.dev/api/v1/timestamp"
#: Environment variable naming the TSA (CLI and action), e.g. a private or loopback one.
TIMESTAMP_URL_VAR: Final = "OPK_SIGN_TIMESTAMP_URL"

REQUEST_MEDIA_TYPE: Final = "application/timestamp-query"
RESPONSE_MEDIA_TYPE: Final = "application/timestamp-reply"
#: The status and the token: a response is barely larger than the token it carries.
MAX_RESPONSE_BYTES: Final = MAX_TIMESTAMP_BYTES + 1024
#: Certificates in a trust file; a TSA chain has three or four.
MAX_TRUSTED_CERTIFICATES: Final = 64
SHA256_OID: Final = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")

#: DER ``PKIStatusInfo { status granted(0) }``, to rebuild a TimeStampResp around a stored token.
_GRANTED: Final = bytes.fromhex("3003020100")
_TSA_HINT: Final = (
    "check the TSA URL (--timestamp-url, OPK_SIGN_TIMESTAMP_URL, or the action's timestamp-url "
    "input), or sign without timestamps (--no-timestamp)"
)


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
        return cls.from_certificates(certificates)

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
    response = _parse(ts.rfc3161)
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


def _parse(token: bytes) -> TimeStampResponse:
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


# --- asking a TSA (I/O) ---------------------------------------------------------------------------


def request_timestamp(
    url: str, signature: bytes, session: requests.Session | None = None
) -> Timestamp:
    """A timestamp over ``signature`` from the TSA at ``url`` (RFC 3161 over HTTP POST).

    The response must grant the request and answer exactly it: same nonce, SHA-256 imprint of
    ``signature``, the TSA's certificate included. Transport failures raise
    :class:`NetworkError`; a refusal or a response that does not match, :class:`TimestampError`.
    The TSA's certificate chain is not checked here: that is the verifier's trust decision.
    """
    require_secure_url(url, "the timestamp authority URL")
    if not signature:
        raise TimestampError("nothing to timestamp: the signature is empty")
    request = (
        TimestampRequestBuilder()
        .data(signature)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    body = _post(url, request.as_bytes(), session)
    try:
        response = decode_timestamp_response(body)
        status = response.status
    except ValueError as err:
        raise TimestampError(
            f"the timestamp authority {url} answered something that is not an RFC 3161 "
            f"response: {err}",
            hint=_TSA_HINT,
        ) from None
    if status != PKIStatus.GRANTED:
        detail = "; ".join(response.status_string) or "no reason given"
        raise TimestampError(
            f"the timestamp authority {url} refused the request: status {status} ({detail})",
            hint=_TSA_HINT,
        )
    try:
        token = response.time_stamp_token()
    except ValueError as err:
        raise TimestampError(f"the timestamp authority {url} sent no token: {err}") from None
    timestamp = Timestamp(token)
    stated = _parse(token)
    info = stated.tst_info
    if info.nonce != request.nonce:
        raise TimestampError(
            f"the timestamp authority {url} answered another request (nonce {info.nonce}, "
            f"sent {request.nonce})"
        )
    if info.message_imprint.hash_algorithm != SHA256_OID or info.message_imprint.message != (
        hashlib.sha256(signature).digest()
    ):
        raise TimestampError(
            f"the timestamp authority {url} timestamped other data than the signature sent"
        )
    if not stated.signed_data.certificates:
        raise TimestampError(
            f"the timestamp authority {url} left out its certificate although it was requested"
        )
    return timestamp


def _post(url: str, query: bytes, session: requests.Session | None) -> bytes:
    http = new_session() if session is None else session
    try:
        with http.post(
            url,
            data=query,
            headers={"Content-Type": REQUEST_MEDIA_TYPE, "Accept": RESPONSE_MEDIA_TYPE},
            timeout=DEFAULT_HTTP.timeout,
            allow_redirects=False,
            stream=True,
        ) as response:
            status = response.status_code
            if status in RETRY_STATUSES:
                raise NetworkError(
                    f"the timestamp authority {url} is unavailable: HTTP {status} after retries",
                    hint=_TSA_HINT,
                )
            body = bytearray()
            for chunk in response.iter_content(16 * 1024):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise TimestampError(
                        f"the timestamp authority {url} answered more than "
                        f"{MAX_RESPONSE_BYTES} bytes"
                    )
    except requests.RequestException as err:
        raise NetworkError(
            f"could not reach the timestamp authority {url}: {err}", hint=_TSA_HINT
        ) from None
    finally:
        if session is None:
            http.close()
    if status not in (200, 201):
        text = bytes(body[:200]).decode("utf-8", "replace").strip()
        raise TimestampError(
            f"the timestamp authority {url} answered HTTP {status}" + (f": {text}" if text else ""),
            hint=_TSA_HINT,
        )
    return bytes(body)


__all__ = [
    "DEFAULT_TIMESTAMP_URL",
    "TIMESTAMP_URL_VAR",
    "TSAChain",
    "TSATrust",
    "request_timestamp",
    "verify_timestamp",
]
