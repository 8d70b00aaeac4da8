"""DSSE (Dead Simple Signing Envelope) v1: the pre-authentication encoding, the envelope, and
ECDSA P-256 signatures over it.

Pure logic. The envelope keeps the payload bytes exactly as received (and the base64 text they
came in), so what is verified is what was signed, never a re-serialisation.
Spec: https://github.com/secure-systems-lab/dsse/blob/master/protocol.md and envelope.md.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from opk_sign.errors import FormatError, SignatureError
from opk_sign.jose import JSONObject, PublicKey

#: The payload type of an in-toto Statement.
INTOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"

#: Largest payload we accept in an envelope; a provenance statement is a few KiB.
MAX_PAYLOAD_BYTES: Final = 4 * 1024 * 1024
#: Signatures per envelope we are willing to look at.
MAX_SIGNATURES: Final = 16
#: A DER ECDSA P-256 signature is at most 72 bytes.
_MAX_DER_SIGNATURE: Final = 72

_STD_B64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_B64: Final = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSEv1 pre-authentication encoding: what the signature covers.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, lengths as ASCII decimal of the byte
    counts.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def _b64_encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64_decode(text: Any, field_name: str) -> bytes:
    """Standard or URL-safe base64 (DSSE allows either), padded or not, strictly canonical."""
    if not isinstance(text, str):
        raise FormatError(f"DSSE envelope: {field_name} must be a base64 string")
    url_safe = bool(re.search(r"[-_]", text))
    pattern = _URL_B64 if url_safe else _STD_B64
    if not pattern.fullmatch(text) or len(text.rstrip("=")) % 4 == 1:
        raise FormatError(f"DSSE envelope: {field_name} is not base64")
    padded = text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4)
    try:
        data = (base64.urlsafe_b64decode if url_safe else base64.b64decode)(padded)
    except (binascii.Error, ValueError):
        raise FormatError(f"DSSE envelope: {field_name} is not base64") from None
    encoder = base64.urlsafe_b64encode if url_safe else base64.b64encode
    canonical = encoder(data).decode("ascii")
    # Padding is optional, but when present it must be complete.
    if text not in (canonical, canonical.rstrip("=")):
        raise FormatError(f"DSSE envelope: {field_name} is non-canonical base64")
    return data


@dataclass(frozen=True)
class EnvelopeSignature:
    """One DSSE signature: raw signature bytes and an optional, unauthenticated key id hint."""

    sig: bytes = field(repr=False)
    keyid: str = ""

    def to_dict(self) -> JSONObject:
        out: JSONObject = {}
        if self.keyid:
            out["keyid"] = self.keyid
        out["sig"] = _b64_encode(self.sig)
        return out


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope. ``payload`` holds the bytes exactly as decoded from what was received."""

    payload_type: str
    payload: bytes = field(repr=False)
    signatures: tuple[EnvelopeSignature, ...]
    #: The payload's base64 text as received (None: encode ``payload`` canonically).
    payload_b64: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.payload_type:
            raise FormatError("DSSE envelope: payloadType is empty")
        if len(self.payload) > MAX_PAYLOAD_BYTES:
            raise FormatError(f"DSSE envelope: payload larger than {MAX_PAYLOAD_BYTES} bytes")
        if not 1 <= len(self.signatures) <= MAX_SIGNATURES:
            raise FormatError(
                f"DSSE envelope: needs 1 to {MAX_SIGNATURES} signatures, has {len(self.signatures)}"
            )
        for sig in self.signatures:
            if not sig.sig:
                raise FormatError("DSSE envelope: empty signature")

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        if not isinstance(data, Mapping):
            raise FormatError("DSSE envelope: expected a JSON object")
        unknown = set(data) - {"payload", "payloadType", "signatures"}
        if unknown:
            raise FormatError(f"DSSE envelope: unexpected members {sorted(unknown)}")
        payload_type = data.get("payloadType")
        if not isinstance(payload_type, str):
            raise FormatError("DSSE envelope: payloadType must be a string")
        payload_b64 = data.get("payload")
        payload = _b64_decode(payload_b64, "payload")
        raw_sigs = data.get("signatures")
        if not isinstance(raw_sigs, list):
            raise FormatError("DSSE envelope: signatures must be a list")
        signatures = []
        for i, raw in enumerate(raw_sigs):
            if not isinstance(raw, Mapping):
                raise FormatError(f"DSSE envelope: signature {i} must be a JSON object")
            unknown = set(raw) - {"sig", "keyid"}
            if unknown:
                raise FormatError(f"DSSE envelope: signature {i}: unexpected {sorted(unknown)}")
            keyid = raw.get("keyid", "")
            if not isinstance(keyid, str):
                raise FormatError(f"DSSE envelope: signature {i}: keyid must be a string")
            signatures.append(EnvelopeSignature(_b64_decode(raw.get("sig"), f"sig {i}"), keyid))
        return cls(payload_type, payload, tuple(signatures), payload_b64=str(payload_b64))

    def to_dict(self) -> JSONObject:
        payload = self.payload_b64 if self.payload_b64 is not None else _b64_encode(self.payload)
        return {
            "payload": payload,
            "payloadType": self.payload_type,
            "signatures": [s.to_dict() for s in self.signatures],
        }

    @property
    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)


def sign_envelope(
    payload_type: str, payload: bytes, key: ec.EllipticCurvePrivateKey, keyid: str = ""
) -> Envelope:
    """An envelope with one ECDSA P-256 SHA-256 signature (ASN.1 DER) over the PAE."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise FormatError("DSSE signing key must be an ECDSA P-256 key")
    signature = key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    return Envelope(payload_type, payload, (EnvelopeSignature(signature, keyid),))


def verify_envelope(envelope: Envelope, key: PublicKey, what: str = "DSSE envelope") -> bytes:
    """The payload, once a signature of the envelope verifies with ``key`` (P-256, DER).

    The first signature that verifies is enough; the key id hints are not trusted.
    """
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError(f"{what}: only ECDSA P-256 keys are supported")
    message = envelope.pae
    for signature in envelope.signatures:
        if len(signature.sig) > _MAX_DER_SIGNATURE:
            continue
        try:
            key.verify(signature.sig, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            continue
        return envelope.payload
    raise SignatureError(f"{what}: no signature verifies with the signer's key (upk)")
