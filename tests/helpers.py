"""Shared builders for tests: OP keys from tests/assets, PK tokens minted like a signer does."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from opk_sign._dev.github_oidc import OPSigningKey, github_claims, mint_id_token
from opk_sign.pktoken import GITHUB_ISSUER, PKToken, UserKey, commitment, gq, new_cic_header

ASSETS = Path(__file__).parent / "assets"


@functools.cache
def op_key(bits: int = 2048, e: int = 65537, kid: str = "test-key-1") -> OPSigningKey:
    """A fixed RSA OP key from tests/assets/keys."""
    pem = (ASSETS / "keys" / f"rsa{bits}-e{e}.pem").read_bytes()
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return OPSigningKey(private, kid, b"opk-sign test certificate " + kid.encode())


@dataclass(frozen=True)
class Minted:
    pkt: PKToken
    user_key: UserKey
    op: OPSigningKey
    id_token: str
    gq_token: str

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.op.public_jwk()]}


def mint(
    *,
    op: OPSigningKey | None = None,
    issuer: str = GITHUB_ISSUER,
    now: int | None = None,
    user_alg: str = "ES256",
    audience: str | None = None,
    raw_claims: dict[str, Any] | None = None,
    **claim_overrides: Any,
) -> Minted:
    """A PK token exactly as the signer makes one: CIC, commitment as aud, RS256, GQ256, CIC sig.

    ``raw_claims`` replace claims after the emulator's checks (to forge what GitHub never sends).
    """
    op = op or op_key()
    user_key = UserKey.generate(user_alg)
    cic_header = new_cic_header(user_key)
    aud = audience if audience is not None else commitment(cic_header)
    claims: dict[str, Any] = dict(github_claims(aud, issuer=issuer, now=now, **claim_overrides))
    claims.update(raw_claims or {})
    id_token = mint_id_token(op, claims)
    gq_token = gq.sign_jwt(id_token, op.public_jwk())
    return Minted(PKToken.build(gq_token, cic_header, user_key), user_key, op, id_token, gq_token)
