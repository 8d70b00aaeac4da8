"""PK token verification, rule by rule as the Go reference verifier applies them, plus the checks
it lacks (strict claim types, key selection that can consult an archive of past OP keys).

Pure logic: the OP's keys come from an :class:`OPKeySource` and the time from ``now``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from opk_sign.errors import (
    CommitmentError,
    ExpiredTokenError,
    FormatError,
    GQProofError,
    IssuerError,
    SignatureError,
    TrustError,
)
from opk_sign.jose import JSONObject, verify
from opk_sign.pktoken import gq
from opk_sign.pktoken.cic import ClientInstanceClaims
from opk_sign.pktoken.token import PKToken

GITHUB_ISSUER: Final = "https://token.actions.githubusercontent.com"
HOUR: Final = 3600
#: How far a token's iat may lie ahead of our clock (the OP's clock may run fast).
MAX_CLOCK_SKEW: Final = 300


@dataclass(frozen=True)
class ExpiryPolicy:
    """When a PK token stops being valid: ``max_age`` seconds after ``iat``, and/or at ``exp``."""

    name: str
    max_age: int | None = None
    check_exp: bool = False

    @classmethod
    def from_name(cls, name: str) -> ExpiryPolicy:
        """``24h`` (default), ``12h``, ``48h``, ``1w``, ``oidc``, ``never``, or ``<N>s|m|h|d``."""
        named = {
            p.name: p for p in (MAX_AGE_12H, MAX_AGE_24H, MAX_AGE_48H, MAX_AGE_1W, OIDC, NEVER)
        }
        if name in named:
            return named[name]
        units = {"s": 1, "m": 60, "h": HOUR, "d": 24 * HOUR}
        number, unit = name[:-1], name[-1:]
        if unit in units and number.isdigit() and int(number) > 0:
            return cls(name, max_age=int(number) * units[unit])
        raise FormatError(
            f"unknown expiry policy {name!r}: use 24h, 12h, 48h, 1w, oidc, never or e.g. 90m"
        )

    def window(self, claims: Mapping[str, Any]) -> tuple[int, int | None]:
        """The token's validity window ``[iat, end)``; ``end`` None means no end."""
        iat = _int_claim(claims, "iat")
        ends = []
        if self.max_age is not None:
            ends.append(iat + self.max_age)
        if self.check_exp:
            ends.append(_int_claim(claims, "exp"))
        return iat, min(ends) if ends else None

    def check(self, claims: Mapping[str, Any], now: float) -> None:
        iat, end = self.window(claims)
        if iat > now + MAX_CLOCK_SKEW:
            raise ExpiredTokenError(
                f"PK token issued in the future: issued at {iat}, now {int(now)}"
                f" (more than {MAX_CLOCK_SKEW} s of clock skew)",
                hint="check this machine's clock",
            )
        if end is not None and now >= end:
            raise ExpiredTokenError(
                f"PK token expired under the {self.name!r} policy: issued at {iat},"
                f" valid until {end}, now {int(now)}",
                hint="a PK token is fresh for 24 hours; older signatures need an RFC 3161"
                " timestamp from signing time",
            )


MAX_AGE_12H: Final = ExpiryPolicy("12h", max_age=12 * HOUR)
MAX_AGE_24H: Final = ExpiryPolicy("24h", max_age=24 * HOUR)
MAX_AGE_48H: Final = ExpiryPolicy("48h", max_age=48 * HOUR)
MAX_AGE_1W: Final = ExpiryPolicy("1w", max_age=7 * 24 * HOUR)
OIDC: Final = ExpiryPolicy("oidc", check_exp=True)
NEVER: Final = ExpiryPolicy("never")


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    # bool is an int in Python; JSON true is not a time.
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise FormatError(f"PK token claim {name!r} must be a positive JSON integer, got {value!r}")
    return value


class OPKeySource(Protocol):
    """Where the OP's public keys come from: a live JWKS, a file, or an archive of past keys."""

    def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Mapping[str, Any]:
        """The JWK with ``kid`` that ``issuer`` signed with at ``issued_at``; raise
        :class:`IssuerError` when there is none."""
        ...


@dataclass(frozen=True)
class StaticJWKS:
    """A fixed JWKS for one issuer (``{"keys": [...]}``)."""

    issuer: str
    jwks: Mapping[str, Any]

    def __post_init__(self) -> None:
        keys = self.jwks.get("keys") if isinstance(self.jwks, Mapping) else None
        if not isinstance(keys, list) or not all(isinstance(k, Mapping) for k in keys):
            raise TrustError("JWKS must be a JSON object with a 'keys' list of JWKs")

    def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Mapping[str, Any]:
        if issuer != self.issuer:
            raise IssuerError(f"no keys configured for issuer {issuer!r}")
        keys: list[Mapping[str, Any]] = self.jwks["keys"]
        return select_key(keys, issuer, kid)


def select_key(keys: list[Mapping[str, Any]], issuer: str, kid: str | None) -> Mapping[str, Any]:
    """The key named ``kid``; without a kid, the only key if there is exactly one (RFC 7517)."""
    if kid is None:
        if len(keys) == 1:
            return keys[0]
        raise IssuerError(f"token names no key id and the {issuer} JWKS has {len(keys)} keys")
    matches = [k for k in keys if k.get("kid") == kid]
    if not matches:
        raise IssuerError(
            f"key {kid!r} is not in the JWKS of {issuer}",
            hint="the OP may have rotated its keys; verify with a JWKS archive that holds it",
        )
    if len(matches) > 1:
        raise IssuerError(f"the JWKS of {issuer} has {len(matches)} keys with kid {kid!r}")
    return matches[0]


@dataclass(frozen=True)
class VerifiedPKToken:
    token: PKToken
    claims: JSONObject
    cic: ClientInstanceClaims
    op_jwk: Mapping[str, Any]

    @property
    def issuer(self) -> str:
        return str(self.claims["iss"])


def verify_pktoken(
    pkt: PKToken,
    keys: OPKeySource,
    *,
    issuers: frozenset[str] | set[str] | None = None,
    expiry: ExpiryPolicy = MAX_AGE_24H,
    now: float | None = None,
) -> VerifiedPKToken:
    """Verify a PK token; every failure raises a :class:`VerificationError` naming the rule.

    ``issuers`` limits which issuers are acceptable (default: GitHub Actions only).
    """
    allowed = frozenset(issuers) if issuers is not None else frozenset({GITHUB_ISSUER})

    # 1. CIC: rz, upk and alg present, alg == upk.alg, alg allowed; the CIC signature by upk.
    cic = pkt.cic_claims()
    verify(cic.public_key, cic.alg, pkt.cic_token.signature, pkt.cic_token.signing_input, "CIC")

    claims = pkt.claims()
    # 2. Issuer: the payload's iss selects a configured provider; unknown issuer is an error.
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss not in allowed:
        raise IssuerError(f"issuer {iss!r} is not trusted (trusted: {sorted(allowed)})")
    iat = _int_claim(claims, "iat")

    # 3. OP signature: GQ256 only (an RS256 signature would publish a replayable ID token),
    #    over an RS256 original header whose kid selects the OP key.
    op = pkt.op_token
    alg = op.header("OP signature").get("alg")
    if alg != "GQ256":
        raise GQProofError(
            f"OP signature alg is {alg!r}; only GQ256 is accepted"
            + (
                " (a raw RS256 signature publishes the replayable ID token)"
                if alg == "RS256"
                else ""
            )
        )
    _, original = gq.original_header(op, "OP signature")
    kid = original.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise FormatError("OP signature: original header kid must be a string")
    op_jwk = keys.op_key(iss, kid, iat)
    check_op_key_usage(op_jwk, kid)
    gq.verify_jwt(str(op), op_jwk)

    # 4. Commitment: the ID token's aud is exactly the commitment to this CIC (GitHub style).
    aud = claims.get("aud")
    if not isinstance(aud, str):
        raise CommitmentError(f"aud must be a single string holding the commitment, got {aud!r}")
    if aud != cic.commitment:
        raise CommitmentError(
            f"aud {aud!r} is not the commitment {cic.commitment!r} to this PK token's key"
            " (ID token reused with another key)"
        )

    # 5. Expiry.
    expiry.check(claims, time.time() if now is None else now)
    # 6. Nothing unsigned rides along: a cosigner signature or an unprotected header would be
    #    carried unverified (an OSM's kid hashes the whole token, a DSSE envelope does not).
    if pkt.cos is not None:
        raise SignatureError("PK token: cosigner (COS) signatures are not supported")
    if any(sig.header for sig in pkt.signatures()):
        raise SignatureError("PK token: unprotected JWS headers are not accepted")
    return VerifiedPKToken(pkt, claims, cic, op_jwk)


__all__ = [
    "GITHUB_ISSUER",
    "MAX_AGE_1W",
    "MAX_AGE_12H",
    "MAX_AGE_24H",
    "MAX_AGE_48H",
    "NEVER",
    "OIDC",
    "ExpiryPolicy",
    "OPKeySource",
    "StaticJWKS",
    "VerifiedPKToken",
    "select_key",
    "verify_pktoken",
]


def check_op_key_usage(op_jwk: Mapping[str, Any], kid: str | None) -> None:
    """The OP key may sign ID tokens: RS256, and what RFC 7517 says of its use (§4.2 ``use``,
    §4.3 ``key_ops``) allows verifying signatures. A key published for encryption, or only for
    other operations, is not one the OP signs tokens with."""
    alg, use, ops = op_jwk.get("alg", "RS256"), op_jwk.get("use", "sig"), op_jwk.get("key_ops")
    if alg != "RS256" or use != "sig":
        raise IssuerError(f"OP key {kid!r} is not an RS256 signing key (alg {alg!r}, use {use!r})")
    if ops is not None and (
        not isinstance(ops, list)
        or not all(isinstance(op, str) for op in ops)
        or "verify" not in ops
    ):
        raise IssuerError(f"OP key {kid!r}: its key_ops {ops!r} do not include 'verify'")
