"""Client instance claims (CIC): the user's ephemeral key and the commitment to it.

The commitment (base64url SHA3-256 of the CIC header's Go-canonical JSON) goes into the ID token
(``aud`` for GitHub), binding the OP's signature to this one key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from opk_sign.errors import CICError, FormatError
from opk_sign.jose import (
    USER_KEY_ALGS,
    JSONObject,
    PrivateKey,
    PublicKey,
    alg_of_public_key,
    b64encode,
    go_json,
    jwk_from_public_key,
    public_key_from_jwk,
    sign,
)

RESERVED_CLAIMS: Final = frozenset({"alg", "typ", "rz", "upk"})
#: rz is 32 random bytes in hex; we accept no less than 128 bits of it.
_RZ: Final = re.compile(r"[0-9a-f]{32,128}")


def commitment(cic_header: Mapping[str, Any]) -> str:
    """base64url(SHA3-256(Go-canonical JSON of the CIC protected header))."""
    return b64encode(hashlib.sha3_256(go_json(cic_header)).digest())


@dataclass(frozen=True)
class UserKey:
    """An ephemeral signing key: lives in memory for one signing run, never written anywhere."""

    private_key: PrivateKey = field(repr=False)
    alg: str

    @classmethod
    def generate(cls, alg: str = "ES256") -> UserKey:
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()), alg)
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate(), alg)
        raise FormatError(f"unsupported user key algorithm {alg!r} (ES256 or EdDSA)")

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    @property
    def public_jwk(self) -> JSONObject:
        return jwk_from_public_key(self.public_key, self.alg)

    def sign(self, data: bytes) -> bytes:
        return sign(self.private_key, self.alg, data)


def new_cic_header(
    user_key: UserKey, extra: Mapping[str, str] | None = None, *, rz: str | None = None
) -> JSONObject:
    """The CIC protected header for a user key: alg, typ, rz, upk and extra string claims."""
    header: JSONObject = {}
    for name, value in (extra or {}).items():
        if name in RESERVED_CLAIMS:
            raise CICError(f"CIC extra claim {name!r} is reserved")
        if not isinstance(value, str):
            raise CICError(f"CIC extra claim {name!r} must be a string")
        header[name] = value
    header.update(
        alg=user_key.alg,
        typ="CIC",
        rz=rz if rz is not None else secrets.token_hex(32),
        upk=user_key.public_jwk,
    )
    return header


@dataclass(frozen=True)
class ClientInstanceClaims:
    """A parsed, checked CIC header."""

    header: JSONObject
    public_key: PublicKey = field(repr=False)
    alg: str

    @classmethod
    def from_header(cls, header: Mapping[str, Any]) -> ClientInstanceClaims:
        """Check the CIC as the reference verifier does (rz, upk, alg present; alg == upk.alg;
        alg allowed), and a little more (rz is hex, typ is CIC, the key matches alg)."""
        if header.get("typ") != "CIC":
            raise CICError(f"CIC: typ must be 'CIC', got {header.get('typ')!r}")
        rz = header.get("rz")
        if not isinstance(rz, str) or not _RZ.fullmatch(rz):
            raise CICError("CIC: rz must be 32 to 64 random bytes in lowercase hex")
        upk = header.get("upk")
        if not isinstance(upk, Mapping):
            raise CICError("CIC: upk (the user's public key as a JWK) is missing")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in USER_KEY_ALGS:
            raise CICError(f"CIC: alg must be one of {sorted(USER_KEY_ALGS)}, got {alg!r}")
        if upk.get("alg") != alg:
            raise CICError(f"CIC: upk.alg {upk.get('alg')!r} differs from the header alg {alg!r}")
        try:
            key = public_key_from_jwk(upk, "CIC upk")
        except FormatError as err:
            raise CICError(err.message) from None
        if alg_of_public_key(key) != alg:
            raise CICError(f"CIC: upk is not a key for alg {alg!r}")
        return cls(dict(header), key, alg)

    @property
    def commitment(self) -> str:
        return commitment(self.header)
