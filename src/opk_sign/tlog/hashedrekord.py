"""hashedrekord v0.0.2, the one entry kind Rekor v2 accepts: what is signed, by what, as logged.

The logged body ("canonicalized body") is the protobuf-JSON of ``Entry{kind: "hashedrekord",
apiVersion: "0.0.2", spec: {hashedRekordV002: {data: {algorithm, digest}, signature: {content,
verifier: {x509Certificate: {rawBytes}, keyDetails}}}}}`` canonicalized by RFC 8785 (JCS): keys
sorted, no whitespace; every value here is an ASCII string, so sorted compact JSON is JCS. A
verifier rebuilds it from the bundle and compares bytes, so a valid proof of some other entry
cannot pass for this bundle's.

What an opk-sign bundle logs: for an OSM (a compact JWS, ES256), the SHA-256 of the JWS signing
input and the signature re-encoded as DER (a JWS carries raw r||s); for a DSSE envelope, the
SHA-256 of its pre-authentication encoding and its (DER) signature. Pure logic, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from opk_sign.bundle import Bundle
from opk_sign.errors import FormatError, TransparencyError
from opk_sign.jose import CompactJWS, JSONObject, parse_json_object

KIND: Final = "hashedrekord"
API_VERSION: Final = "0.0.2"
HASH_ALGORITHM: Final = "SHA2_256"
KEY_DETAILS: Final = "PKIX_ECDSA_P256_SHA_256"
MAX_BODY_BYTES: Final = 64 * 1024


def raw_to_der(signature: bytes) -> bytes:
    """A JWS ES256 signature (32-byte r || 32-byte s) as an ASN.1 DER ECDSA-Sig-Value."""
    if len(signature) != 64:
        raise FormatError(f"ES256 signature is {len(signature)} bytes, not 64")
    return encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )


@dataclass(frozen=True)
class SignedDigest:
    """What a bundle's signature signs (a SHA-256 digest) and the signature, DER."""

    digest: bytes
    signature: bytes = field(repr=False)


def signed_digest(bundle: Bundle) -> SignedDigest:
    """The digest and DER signature a bundle's log entry must record."""
    if bundle.osm is not None:
        jws = CompactJWS.parse(bundle.osm, "bundle osm")
        return SignedDigest(hashlib.sha256(jws.signing_input).digest(), raw_to_der(jws.signature))
    assert bundle.dsse_envelope is not None  # a bundle holds exactly one content
    envelope = bundle.dsse_envelope
    if len(envelope.signatures) != 1:
        raise FormatError("a logged DSSE envelope must carry exactly one signature")
    return SignedDigest(hashlib.sha256(envelope.pae).digest(), envelope.signatures[0].sig)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def request_body(entry: SignedDigest, certificate_der: bytes) -> JSONObject:
    """The ``POST /api/v2/log/entries`` request."""
    return {
        "hashedRekordRequestV002": {
            "digest": _b64(entry.digest),
            "signature": {
                "content": _b64(entry.signature),
                "verifier": {
                    "x509Certificate": {"rawBytes": _b64(certificate_der)},
                    "keyDetails": KEY_DETAILS,
                },
            },
        }
    }


def canonical_body(entry: SignedDigest, certificate_der: bytes) -> bytes:
    """The canonicalized body the log stores for this entry (the leaf's data)."""
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "spec": {
            "hashedRekordV002": {
                "data": {"algorithm": HASH_ALGORITHM, "digest": _b64(entry.digest)},
                "signature": {
                    "content": _b64(entry.signature),
                    "verifier": {
                        "keyDetails": KEY_DETAILS,
                        "x509Certificate": {"rawBytes": _b64(certificate_der)},
                    },
                },
            }
        },
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class LoggedEntry:
    """A hashedrekord v0.0.2 body as read from a log (the monitor's view)."""

    digest: bytes
    signature: bytes = field(repr=False)
    certificate: bytes = field(repr=False)
    key_details: str = KEY_DETAILS

    @classmethod
    def parse(cls, body: bytes) -> LoggedEntry:
        if len(body) > MAX_BODY_BYTES:
            raise FormatError(f"log entry: larger than {MAX_BODY_BYTES} bytes")
        data = parse_json_object(body, "log entry")
        if data.get("kind") != KIND or data.get("apiVersion") != API_VERSION:
            raise FormatError(
                f"log entry: kind {data.get('kind')!r} version {data.get('apiVersion')!r} is not "
                f"{KIND} {API_VERSION}"
            )
        try:
            spec = _obj(_obj(data, "spec"), "hashedRekordV002")
            hashed = _obj(spec, "data")
            signature = _obj(spec, "signature")
            verifier = _obj(signature, "verifier")
            certificate = _obj(verifier, "x509Certificate")
            if hashed.get("algorithm") != HASH_ALGORITHM:
                raise FormatError(f"log entry: digest algorithm {hashed.get('algorithm')!r}")
            return cls(
                digest=_bytes(hashed, "digest"),
                signature=_bytes(signature, "content"),
                certificate=_bytes(certificate, "rawBytes"),
                key_details=str(verifier.get("keyDetails")),
            )
        except KeyError as err:
            raise FormatError(f"log entry: no {err.args[0]} (not a certificate entry?)") from None


def _obj(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise KeyError(key)
    return value


def _bytes(data: Mapping[str, Any], key: str) -> bytes:
    value = data.get(key)
    if not isinstance(value, str):
        raise KeyError(key)
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise FormatError(f"log entry: {key} is not base64") from None


def require_same_body(logged: bytes, rebuilt: bytes) -> None:
    if logged != rebuilt:
        raise TransparencyError(
            "the logged entry is not this bundle's: its body differs from the one rebuilt from "
            "the bundle (digest, signature, certificate)"
        )
