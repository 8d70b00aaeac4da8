"""Checking an OP's RS256 ID token before the signer turns it into a PK token.

Pure: token and JWKS in, claims out. Only RS256 is accepted (never ``none`` or an HMAC keyed with
public key bytes), the key is the one the header's ``kid`` names, ``aud`` must equal the expected
audience exactly (for GitHub it carries the CIC commitment), and errors name the claim that failed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from opk_sign.errors import ExpiredTokenError, IssuerError, SignatureError, VerificationError

#: The only algorithm an OP may sign ID tokens with here.
ALGORITHM = "RS256"

#: Smallest OP key accepted; GitHub's are 2048-bit.
MIN_RSA_BITS = 2048

#: Runner clocks drift; allowed when checking that iat and nbf are not in the future.
CLOCK_SKEW = 60


def _select_key(jwks: Mapping[str, Any], kid: str, issuer: str) -> RSAPublicKey:
    keys = jwks.get("keys")
    candidates = (
        [key for key in keys if isinstance(key, Mapping) and key.get("kid") == kid]
        if isinstance(keys, list)
        else []
    )
    if not candidates:
        raise IssuerError(
            f"the ID token's key (kid {kid!r}) is not in the JWKS of {issuer}",
            hint="the issuer may have rotated its keys since the token was issued; fetch a fresh "
            "token, or check that the token comes from this issuer",
        )
    if len(candidates) > 1:
        raise IssuerError(f"the JWKS of {issuer} has {len(candidates)} keys with kid {kid!r}")
    jwk = candidates[0]
    if jwk.get("kty") != "RSA" or jwk.get("alg", ALGORITHM) != ALGORITHM:
        raise IssuerError(
            f"the JWKS key {kid!r} of {issuer} is not an {ALGORITHM} key "
            f"(kty {jwk.get('kty')!r}, alg {jwk.get('alg')!r})"
        )
    if "d" in jwk:
        raise IssuerError(f"the JWKS of {issuer} publishes a private key (kid {kid!r})")
    try:
        key = jwt.algorithms.RSAAlgorithm.from_jwk(dict(jwk))
    except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise IssuerError(f"the JWKS key {kid!r} of {issuer} is malformed: {exc}") from None
    if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise IssuerError(f"the JWKS key {kid!r} of {issuer} is weaker than {MIN_RSA_BITS}-bit RSA")
    return key


def _redacted(exc: Exception, token: str) -> str:
    # The signature segment is what makes a token replayable: keep it out of every message.
    text = str(exc)
    for secret in (token, token.rpartition(".")[2]):
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if value is None:
        raise VerificationError(f"the ID token has no {name} claim")
    if not isinstance(value, int) or isinstance(value, bool):
        raise VerificationError(f"the ID token's {name} claim is not an integer: {value!r}")
    return value


def verify_id_token(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of ``token`` once its signature, issuer, audience and times check out."""
    # 1. Header: RS256 only, and a kid to select the key by.
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as exc:
        raise VerificationError(f"the ID token is not a JWT: {_redacted(exc, token)}") from None
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise VerificationError(
            f"the ID token's header alg is {alg!r}; only {ALGORITHM} is accepted",
            hint="a token with another algorithm is forged or not from this OIDC provider",
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise IssuerError("the ID token's header has no kid to select the issuer's key")

    # 2. Signature by the issuer's key named by kid (times, iss and aud are checked below, with
    # messages naming the claim and with the caller's clock).
    key = _select_key(jwks, kid, issuer)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise SignatureError(
            f"the ID token's signature does not verify with key {kid!r} of {issuer}"
        ) from None
    except jwt.InvalidTokenError as exc:
        raise VerificationError(f"the ID token is malformed: {_redacted(exc, token)}") from None

    # 3. Issuer, exactly.
    if claims.get("iss") != issuer:
        raise IssuerError(
            f"the ID token's iss claim is {claims.get('iss')!r}, expected {issuer!r}",
            hint="the token comes from another OIDC provider than the one configured",
        )
    # 4. Audience: one string, equal to the expected one (a list would let a token meant for
    # several parties pass; GitHub always sends a string).
    if claims.get("aud") != audience:
        raise VerificationError(
            f"the ID token's aud claim is {claims.get('aud')!r}, expected {audience!r}",
            hint="the token was requested for another audience (for GitHub: another commitment)",
        )
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise VerificationError("the ID token has no sub claim")

    # 5. Times: expired tokens are refused without grace; iat and nbf may lead by CLOCK_SKEW.
    current = time.time() if now is None else now
    exp = _int_claim(claims, "exp")
    iat = _int_claim(claims, "iat")
    if current >= exp:
        raise ExpiredTokenError(
            f"the ID token expired: exp claim {exp} is {int(current - exp)} s in the past",
            hint="request a fresh ID token; GitHub's live for 5 minutes",
        )
    if iat > current + CLOCK_SKEW:
        raise ExpiredTokenError(
            f"the ID token's iat claim {iat} is {int(iat - current)} s in the future",
            hint="check this machine's clock",
        )
    if "nbf" in claims and _int_claim(claims, "nbf") > current + CLOCK_SKEW:
        raise ExpiredTokenError(
            f"the ID token is not valid yet: nbf claim {claims['nbf']} is in the future",
            hint="check this machine's clock",
        )
    return claims
