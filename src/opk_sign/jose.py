"""JOSE building blocks, strict: base64url, Go-compatible JSON, compact JWS, JWKs, signatures.

Pure logic, no I/O. Everything that parses raises :class:`FormatError` naming the field, so a
malformed input never surfaces as a ``ValueError`` or ``KeyError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from opk_sign.errors import FormatError, SignatureError

JSONObject = dict[str, Any]

_B64URL_CHARS: Final = re.compile(r"[A-Za-z0-9_-]*")

#: Algorithms a user (CIC) key may use, as the reference implementation allows.
USER_KEY_ALGS: Final = frozenset({"ES256", "RS256", "EdDSA"})

#: Largest JSON document we parse from a token segment; real ones are a few KiB.
MAX_JSON_BYTES: Final = 1 << 20
MAX_JSON_DEPTH: Final = 32
#: Digits of the longest JSON integer we accept (a Unix time in nanoseconds has 19).
MAX_JSON_INT_DIGITS: Final = 64


# --- base64url ---------------------------------------------------------------------------------


def b64encode(data: bytes) -> str:
    """URL-safe base64 without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str | bytes, field: str = "value") -> bytes:
    """Strict URL-safe base64 without padding: no '=', no whitespace, no non-zero trailing bits.

    Strictness makes the encoding unique, so a token cannot be altered in its text while keeping
    its bytes (and its hash) unchanged.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise FormatError(f"{field}: not base64url (non-ASCII bytes)") from None
    if not isinstance(text, str) or not _B64URL_CHARS.fullmatch(text):
        raise FormatError(f"{field}: not unpadded base64url (only A-Z a-z 0-9 - _ are allowed)")
    if len(text) % 4 == 1:
        raise FormatError(f"{field}: not base64url (impossible length {len(text)})")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise FormatError(f"{field}: not base64url") from None
    if b64encode(data) != text:
        raise FormatError(f"{field}: non-canonical base64url (non-zero trailing bits)")
    return data


# --- JSON --------------------------------------------------------------------------------------


def _go_float(value: float) -> str:
    # Go's encoding/json writes integral floats below 1e21 without a fraction or exponent.
    if not math.isfinite(value):
        raise FormatError("JSON numbers must be finite")
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


_GO_ESCAPES: Final = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _go_string(value: str) -> str:
    # Go decodes an unpaired surrogate escape to U+FFFD; do the same so the bytes agree.
    text = json.dumps(_LONE_SURROGATE.sub("\ufffd", value), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES:
        text = text.replace(char, escaped)
    return text


def _go_json_text(obj: Any) -> str:
    if isinstance(obj, str):
        return _go_string(obj)
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if obj is None:
        return "null"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return _go_float(obj)
    if isinstance(obj, Mapping):
        items = sorted(obj.items(), key=lambda kv: str(kv[0]).encode("utf-8"))
        return "{" + ",".join(f"{_go_string(str(k))}:{_go_json_text(v)}" for k, v in items) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_go_json_text(v) for v in obj) + "]"
    raise FormatError(f"cannot encode {type(obj).__name__} as JSON")


def go_json(obj: Any) -> bytes:
    """The bytes Go's ``json.Marshal`` produces for a map: compact, keys sorted by bytes at every
    level, ``<`` ``>`` ``&`` U+2028 U+2029 escaped, other non-ASCII left as UTF-8.

    OpenPubkey hashes such bytes (the CIC commitment, the PK token hash in OSM ``kid``), so ours
    must be identical to the Go reference's.
    """
    return _go_json_text(obj).encode("utf-8")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> JSONObject:
    obj: JSONObject = {}
    for key, value in pairs:
        if key in obj:
            raise FormatError(f"duplicate JSON member {key!r}")
        obj[key] = value
    return obj


def _depth(obj: Any, limit: int) -> None:
    """Refuse a value nested deeper than ``limit`` (the top value is level 1). Level by level,
    visiting only containers: every PK token, bundle and manifest passes here."""
    level = [obj] if type(obj) in _CONTAINERS else []
    depth = 1
    while level:
        children: list[Any] = []
        for item in level:
            values = item.values() if type(item) is dict else item
            if values and depth + 1 > limit:
                raise FormatError(f"JSON nested deeper than {limit} levels")
            children.extend(v for v in values if type(v) in _CONTAINERS)
        level = children
        depth += 1


#: What json.loads builds that can hold values (exact types: nothing else comes out of it).
_CONTAINERS: Final = (dict, list)


def _reject_constant(name: str) -> Any:
    raise FormatError(f"JSON constant {name} is not allowed")


def _bounded_int(text: str) -> int:
    # Python refuses ints over 4,300 digits with a bare ValueError; nothing we read needs more
    # than a few dozen (sizes, times, ids), so a longer one is hostile and refused before int().
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise FormatError(f"JSON integer of {len(text)} digits (at most {MAX_JSON_INT_DIGITS})")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_JSON_INT_DIGITS:
        raise FormatError(f"JSON number of {len(text)} characters")
    return float(text)


def parse_json(
    data: bytes | str, field: str, *, max_bytes: int = MAX_JSON_BYTES, depth: int = MAX_JSON_DEPTH
) -> Any:
    """Parse JSON strictly: UTF-8, no duplicate members, no NaN/Infinity, integers of at most
    :data:`MAX_JSON_INT_DIGITS` digits, bounded size and depth. Every failure is a FormatError."""
    if isinstance(data, bytes):
        if len(data) > max_bytes:
            raise FormatError(f"{field}: larger than {max_bytes} bytes")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{field}: not UTF-8") from None
    elif len(data) > max_bytes:
        raise FormatError(f"{field}: larger than {max_bytes} bytes")
    try:
        value = json.loads(
            data,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            parse_float=_bounded_float,
        )
    except FormatError as err:
        raise FormatError(f"{field}: {err.message}") from None
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise FormatError(f"{field}: not valid JSON ({err.__class__.__name__})") from None
    _depth(value, depth)
    return value


def parse_json_object(data: bytes | str, field: str) -> JSONObject:
    value = parse_json(data, field)
    if not isinstance(value, dict):
        raise FormatError(f"{field}: expected a JSON object, got {type(value).__name__}")
    return value


def require_str(obj: Mapping[str, Any], key: str, field: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        what = "missing" if value is None else f"not a string ({type(value).__name__})"
        raise FormatError(f"{field}: member {key!r} is {what}")
    return value


# --- compact JWS -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompactJWS:
    """A compact JWS ``protected.payload.signature``, segments kept exactly as received."""

    protected_b64: str
    payload_b64: str
    signature_b64: str

    @classmethod
    def parse(cls, token: str | bytes, field: str = "JWS") -> CompactJWS:
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise FormatError(f"{field}: not ASCII") from None
        if not isinstance(token, str):
            raise FormatError(f"{field}: expected a string")
        parts = token.split(".")
        if len(parts) != 3:
            raise FormatError(f"{field}: expected 3 dot-separated segments, got {len(parts)}")
        jws = cls(*parts)
        # Decode every segment once now so that a malformed one fails here, naming itself.
        jws.header(field)
        b64decode(jws.payload_b64, f"{field} payload")
        b64decode(jws.signature_b64, f"{field} signature")
        return jws

    def header(self, field: str = "JWS") -> JSONObject:
        return parse_json_object(
            b64decode(self.protected_b64, f"{field} protected header"), f"{field} protected header"
        )

    @property
    def payload(self) -> bytes:
        return b64decode(self.payload_b64, "JWS payload")

    @property
    def signature(self) -> bytes:
        return b64decode(self.signature_b64, "JWS signature")

    @property
    def signing_input(self) -> bytes:
        return f"{self.protected_b64}.{self.payload_b64}".encode("ascii")

    def __str__(self) -> str:
        return f"{self.protected_b64}.{self.payload_b64}.{self.signature_b64}"


# --- JWK ---------------------------------------------------------------------------------------

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _b64_int(jwk: Mapping[str, Any], member: str, field: str) -> int:
    raw = b64decode(require_str(jwk, member, field), f"{field} member {member!r}")
    if not raw:
        raise FormatError(f"{field}: member {member!r} is empty")
    return int.from_bytes(raw, "big")


def _int_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64encode(value.to_bytes(size, "big"))


def rsa_public_numbers(jwk: Mapping[str, Any], field: str = "JWK") -> rsa.RSAPublicNumbers:
    if not isinstance(jwk, Mapping):
        raise FormatError(f"{field}: expected a JSON object")
    if jwk.get("kty") != "RSA":
        raise FormatError(f"{field}: kty must be 'RSA', got {jwk.get('kty')!r}")
    n = _b64_int(jwk, "n", field)
    e = _b64_int(jwk, "e", field)
    if n.bit_length() < 1024 or n % 2 == 0:
        raise FormatError(f"{field}: RSA modulus must be odd and at least 1024 bits")
    if e < 3 or e % 2 == 0 or e >= n:
        raise FormatError(f"{field}: RSA exponent must be odd, at least 3 and below n (got {e})")
    return rsa.RSAPublicNumbers(e, n)


def public_key_from_jwk(jwk: Mapping[str, Any], field: str = "JWK") -> PublicKey:
    """A public key from a JWK (RSA, EC P-256, OKP Ed25519), checked on the way."""
    if not isinstance(jwk, Mapping):
        raise FormatError(f"{field}: expected a JSON object")
    if any(member in jwk for member in ("d", "p", "q", "dp", "dq", "qi")):
        raise FormatError(f"{field}: contains private key material; give the public key only")
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            return rsa_public_numbers(jwk, field).public_key()
        if kty == "EC":
            if jwk.get("crv") != "P-256":
                raise FormatError(
                    f"{field}: only EC curve P-256 is supported, got {jwk.get('crv')!r}"
                )
            x = b64decode(require_str(jwk, "x", field), f"{field} member 'x'")
            y = b64decode(require_str(jwk, "y", field), f"{field} member 'y'")
            if len(x) != 32 or len(y) != 32:
                raise FormatError(f"{field}: P-256 coordinates must be 32 bytes each")
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            ).public_key()
        if kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise FormatError(f"{field}: only OKP curve Ed25519 is supported")
            x = b64decode(require_str(jwk, "x", field), f"{field} member 'x'")
            if len(x) != 32:
                raise FormatError(f"{field}: Ed25519 key must be 32 bytes")
            return ed25519.Ed25519PublicKey.from_public_bytes(x)
    except ValueError as err:  # point not on the curve, and the like
        raise FormatError(f"{field}: invalid key ({err})") from None
    raise FormatError(f"{field}: unsupported kty {kty!r} (RSA, EC or OKP)")


def jwk_from_public_key(key: PublicKey, alg: str | None = None) -> JSONObject:
    """The public JWK of a key, with only the members the reference implementation writes."""
    jwk: JSONObject
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise FormatError("only P-256 EC keys are supported")
        nums = key.public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "x": _int_b64(nums.x, 32), "y": _int_b64(nums.y, 32)}
    elif isinstance(key, rsa.RSAPublicKey):
        rnums = key.public_numbers()
        jwk = {"kty": "RSA", "n": _int_b64(rnums.n), "e": _int_b64(rnums.e)}
    elif isinstance(key, ed25519.Ed25519PublicKey):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        jwk = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)),
        }
    else:  # pragma: no cover - the type union is exhaustive
        raise FormatError(f"unsupported key type {type(key).__name__}")
    if alg is not None:
        jwk["alg"] = alg
    return jwk


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: the hash of the required members only."""
    kty = jwk.get("kty")
    required = {
        "RSA": ("e", "kty", "n"),
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
    }
    members = required.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise FormatError(f"JWK: unsupported kty {kty!r} for a thumbprint")
    subset = {m: require_str(jwk, m, "JWK") for m in members}
    return b64encode(hashlib.sha256(go_json(subset)).digest())


def alg_of_public_key(key: PublicKey) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ES256"
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    return "EdDSA"


# --- signatures --------------------------------------------------------------------------------

_ES256_SIZE: Final = 64


def sign(key: PrivateKey, alg: str, data: bytes) -> bytes:
    """A JWS signature: ES256 as raw r||s, RS256 PKCS#1 v1.5, EdDSA Ed25519."""
    if alg == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "RS256" and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise FormatError(f"key type {type(key).__name__} cannot sign with alg {alg!r}")


def verify(key: PublicKey, alg: str, signature: bytes, data: bytes, what: str) -> None:
    """Verify a JWS signature or raise :class:`SignatureError` naming ``what`` was signed."""
    try:
        if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != _ES256_SIZE:
                raise SignatureError(f"{what}: ES256 signature must be 64 bytes (raw r||s)")
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
            return
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return
        if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
            return
    except InvalidSignature:
        raise SignatureError(f"{what}: signature does not verify") from None
    raise SignatureError(f"{what}: alg {alg!r} does not match the key type {type(key).__name__}")
