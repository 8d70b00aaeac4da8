"""PK token verification, rule by rule as the Go reference verifier applies them, plus the checks
it lacks (strict claim types, key selection that can consult an archive of past OP keys).

Pure logic: the OP's keys come from an :class:`OPKeySource` and the time from ``now``.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
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
from opk_sign.issuer import GITHUB_ISSUER
from opk_sign.jose import JSONObject, verify
from opk_sign.pktoken import gq
from opk_sign.pktoken.cic import ClientInstanceClaims
from opk_sign.pktoken.token import PKToken, Signature

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


class PKTokenCache:
    """PK tokens already verified in this run, so that each distinct token costs one CIC and one
    GQ256 check however many manifests and images it signed (an index and its platforms signed
    in one run carry one token). Bounded (least recently used out first) and thread-safe.

    An entry is keyed by the exact token (a SHA-256 over all its segments as received) and the
    issuers allowed, and holds the OP key the proof was checked with: a later use must be given
    the same key again by its key source (asked every time; issuer, kid and key material compared
    whole), or the token is verified afresh. Only what depends on nothing else is kept: the
    expiry (judged at ``now`` or a timestamp's time, per use) is checked on every use, as is
    everything outside the token (OSM, payload, policy). A failed verification is never kept.

    One per run (:class:`~opk_sign.verify.options.VerifyOptions` owns it), never shared across
    runs. Pickled (into a worker process) it is that process's own, empty, cache of the same run.
    """

    def __init__(self, max_entries: int = 1024, *, uid: str | None = None) -> None:
        if max_entries < 1:
            raise ValueError("a PK token cache needs room for at least one token")
        self.max_entries = max_entries
        self.uid = uid or secrets.token_hex(16)
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[bytes, frozenset[str]], _Verified] = OrderedDict()
        #: Verifications answered from the cache, and made in full (for tests and benchmarks).
        self.hits = 0
        self.misses = 0
        with _CACHES_LOCK:
            _CACHES.setdefault(self.uid, self)

    def __len__(self) -> int:
        return len(self._entries)

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return (_process_cache, (self.uid, self.max_entries))

    @staticmethod
    def key(pkt: PKToken, allowed: frozenset[str]) -> tuple[bytes, frozenset[str]]:
        digest = hashlib.sha256()
        for part in (pkt.payload_b64, *(s for sig in pkt.signatures() for s in _segments(sig))):
            digest.update(len(part).to_bytes(4, "big") + part.encode())
        if pkt.cos is None:
            digest.update(b"no cosigner")
        return digest.digest(), allowed

    def get(self, key: tuple[bytes, frozenset[str]]) -> _Verified | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[bytes, frozenset[str]], entry: _Verified) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1


def _segments(sig: Signature) -> tuple[str, ...]:
    header = "" if sig.header is None else repr(sorted(sig.header.items()))
    return (sig.protected_b64, sig.signature_b64, header)


#: The caches of this process by uid: a cache pickled into a worker process becomes that
#: process's one cache of the run (every options object naming it shares it), and a copy made
#: in the process that owns it is the cache itself. Weak: a run's cache goes with the run.
_CACHES: weakref.WeakValueDictionary[str, PKTokenCache] = weakref.WeakValueDictionary()
_CACHES_LOCK = threading.Lock()


def _process_cache(uid: str, max_entries: int) -> PKTokenCache:
    created = PKTokenCache(max_entries, uid=uid)  # registered unless the uid is known here
    with _CACHES_LOCK:
        return _CACHES.get(uid, created)


@dataclass(frozen=True)
class _Verified:
    """A token that passed every check but the expiry, with what the lookup of its OP key needs
    and the key it was verified with."""

    verified: VerifiedPKToken
    issuer: str
    kid: str | None
    issued_at: int
    op_jwk: dict[str, Any]


def verify_pktoken(
    pkt: PKToken,
    keys: OPKeySource,
    *,
    issuers: frozenset[str] | set[str] | None = None,
    expiry: ExpiryPolicy = MAX_AGE_24H,
    now: float | None = None,
    cache: PKTokenCache | None = None,
) -> VerifiedPKToken:
    """Verify a PK token; every failure raises a :class:`VerificationError` naming the rule.

    ``issuers`` limits which issuers are acceptable (default: GitHub Actions only). With a
    ``cache`` (the run's), a token verified before against the same OP key and issuers skips
    the CIC and GQ256 checks; its key is still looked up and its expiry still judged.
    """
    allowed = frozenset(issuers) if issuers is not None else frozenset({GITHUB_ISSUER})
    key = PKTokenCache.key(pkt, allowed) if cache is not None else None
    if cache is not None and key is not None:
        known = cache.get(key)
        if known is not None:
            op_jwk = keys.op_key(known.issuer, known.kid, known.issued_at)
            check_op_key_usage(op_jwk, known.kid)
            if dict(op_jwk) == known.op_jwk:
                cache._count(hit=True)
                expiry.check(known.verified.claims, time.time() if now is None else now)
                return replace(known.verified, token=pkt, op_jwk=op_jwk)
        cache._count(hit=False)

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
    verified = VerifiedPKToken(pkt, claims, cic, op_jwk)
    if cache is not None and key is not None:
        cache.put(key, _Verified(verified, iss, kid, iat, dict(op_jwk)))
    return verified


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
    "PKTokenCache",
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
