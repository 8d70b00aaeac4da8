"""The JWKS archive: every key an OpenID provider has published, with when it was seen.

A PK token carries the ``kid`` of the OP key that signed its ID token. GitHub rotates its keys
every few months and drops old ones from its JWKS, so a token signed a year ago names a key the
live JWKS no longer holds. The archive keeps each key with the first and last time a snapshot of
the live JWKS saw it; a token verifies against an archived key only if it was issued while the key
was published (see :data:`WINDOW_MARGIN`).

Format (one document per issuer, documented in docs/trust.md)::

    {"issuer": "https://token.actions.githubusercontent.com",
     "keys": [{"jwk": {...public RSA JWK...}, "firstSeen": 1700000000, "lastSeen": 1700086400}]}

Unknown members, at the top and in each entry, are kept, so a newer writer's fields survive an
older reader's round trip. Pure logic: no I/O, the time comes from the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from opk_sign.errors import FormatError, IssuerError, OpkSignError, TrustError, UsageError
from opk_sign.jose import JSONObject, parse_json_object, rsa_public_numbers
from opk_sign.pktoken.verify import OPKeySource

#: How often the archive is expected to be refreshed (the jwks-archive workflow runs daily).
SNAPSHOT_INTERVAL: Final = 24 * 3600
#: Tolerated difference between the OP's clock (``iat``) and the snapshot job's clock.
CLOCK_SKEW: Final = 300
#: A key seen from ``first`` to ``last`` accepts tokens issued in
#: ``[first - WINDOW_MARGIN, last + WINDOW_MARGIN]``. Snapshots are one interval apart, so a key
#: first seen at ``first`` was not yet published one interval earlier (it would have been seen),
#: and a key last seen at ``last`` was gone one interval later; GitHub signs only with keys its
#: JWKS publishes, so ``iat`` lies within a snapshot interval (plus clock skew) of the seen window.
WINDOW_MARGIN: Final = SNAPSHOT_INTERVAL + CLOCK_SKEW

#: Members a public JWK must never carry.
_PRIVATE_MEMBERS: Final = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_ENTRY_MEMBERS: Final = ("jwk", "firstSeen", "lastSeen")


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value: Any, where: str) -> int:
    # bool is an int in Python; JSON true is not a time.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= _LAST_SECOND:
        shown = repr(value) if len(repr(value)) <= 40 else "a huge number"
        raise TrustError(
            f"{where} must be a positive integer (UTC seconds, before year 10000), got {shown}"
        )
    return value


#: 9999-12-31T23:59:59Z: times beyond cannot be shown as dates (and mean nothing here).
_LAST_SECOND: Final = 253402300799


def _checked_jwk(jwk: Any, where: str) -> JSONObject:
    """A public RSA JWK with a kid, or TrustError naming what is wrong."""
    if not isinstance(jwk, dict):
        raise TrustError(f"{where}: a JWK must be a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TrustError(f"{where}: the JWK has no 'kid'; archived keys are found by key id")
    if any(member in jwk for member in _PRIVATE_MEMBERS):
        raise TrustError(f"{where}: key {kid!r} carries private key material; refusing it")
    try:
        rsa_public_numbers(jwk, f"{where}: key {kid!r}")
    except FormatError as err:
        raise TrustError(err.message) from None
    return dict(jwk)


def _material(jwk: Mapping[str, Any]) -> tuple[int, int]:
    # Compare numbers, not base64 text: a leading zero byte does not make another key.
    numbers = rsa_public_numbers(jwk)
    return numbers.n, numbers.e


@dataclass(frozen=True)
class ArchivedKey:
    """One OP key and the UTC seconds of the first and last snapshot that held it."""

    jwk: JSONObject
    first_seen: int
    last_seen: int
    #: Unknown members of the entry, kept for round trips.
    extra: JSONObject = field(default_factory=dict, compare=False)

    @property
    def kid(self) -> str:
        return str(self.jwk["kid"])

    @property
    def window(self) -> tuple[int, int]:
        """The ``issued_at`` range this key accepts (inclusive)."""
        return self.first_seen - WINDOW_MARGIN, self.last_seen + WINDOW_MARGIN

    def covers(self, issued_at: int) -> bool:
        start, end = self.window
        return start <= issued_at <= end

    def to_dict(self) -> JSONObject:
        return {
            "jwk": dict(self.jwk),
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
            **self.extra,
        }


@dataclass(frozen=True)
class JWKSArchive:
    """Every key one issuer has published, as far as snapshots saw. Immutable: ``observe``
    returns a new archive. Usable as an :class:`~opk_sign.pktoken.verify.OPKeySource`."""

    issuer: str
    keys: tuple[ArchivedKey, ...] = ()
    #: Unknown top-level members, kept for round trips.
    extra: JSONObject = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise TrustError("a JWKS archive needs a non-empty issuer")
        kids = [key.kid for key in self.keys]
        duplicates = sorted({kid for kid in kids if kids.count(kid) > 1})
        if duplicates:
            raise TrustError(
                f"the JWKS archive of {self.issuer} lists key {duplicates[0]!r} more than once"
            )

    # --- the format

    @classmethod
    def from_json(cls, data: bytes | str) -> JWKSArchive:
        """Parse an archive strictly; every problem is a :class:`TrustError` saying where."""
        try:
            doc = parse_json_object(data, "JWKS archive")
        except FormatError as err:
            raise TrustError(err.message) from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> JWKSArchive:
        issuer = doc.get("issuer")
        if not isinstance(issuer, str) or not issuer:
            raise TrustError("JWKS archive: member 'issuer' must be a non-empty string")
        entries = doc.get("keys")
        if not isinstance(entries, list):
            raise TrustError(f"JWKS archive of {issuer}: member 'keys' must be a list")
        keys = []
        for index, entry in enumerate(entries):
            where = f"JWKS archive of {issuer}: keys[{index}]"
            if not isinstance(entry, dict):
                raise TrustError(f"{where} must be a JSON object")
            jwk = _checked_jwk(entry.get("jwk"), where)
            first = _time(entry.get("firstSeen"), f"{where}.firstSeen")
            last = _time(entry.get("lastSeen"), f"{where}.lastSeen")
            if first > last:
                raise TrustError(f"{where}: firstSeen {first} is after lastSeen {last}")
            extra = {k: v for k, v in entry.items() if k not in _ENTRY_MEMBERS}
            keys.append(ArchivedKey(jwk, first, last, extra))
        extra = {k: v for k, v in doc.items() if k not in ("issuer", "keys")}
        return cls(issuer, tuple(keys), extra)

    def to_dict(self) -> JSONObject:
        return {"issuer": self.issuer, "keys": [k.to_dict() for k in self.keys], **self.extra}

    def to_json(self) -> bytes:
        """Stable, human-diffable JSON (keys ordered by first sighting, then kid)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False).encode() + b"\n"

    # --- updating

    def observe(self, jwks: Mapping[str, Any], at: int) -> JWKSArchive:
        """Merge a snapshot of the live JWKS taken at ``at`` (UTC seconds).

        New keys are first seen at ``at``; known keys stretch their window to include ``at``
        (snapshots may be merged in any order); no key is ever dropped. A known kid whose key
        material changed is refused: a kid names one key forever, and accepting the new material
        would let it verify tokens issued under the old one.
        """
        at = _time(at, "snapshot time")
        listed = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(listed, list):
            raise TrustError(f"the JWKS snapshot of {self.issuer} must have a 'keys' list")
        snapshot: dict[str, JSONObject] = {}
        for index, jwk in enumerate(listed):
            checked = _checked_jwk(jwk, f"JWKS snapshot of {self.issuer}: keys[{index}]")
            kid = str(checked["kid"])
            if kid in snapshot:
                raise TrustError(f"the JWKS snapshot of {self.issuer} lists key {kid!r} twice")
            snapshot[kid] = checked
        merged: list[ArchivedKey] = []
        for key in self.keys:
            seen = snapshot.pop(key.kid, None)
            if seen is None:
                merged.append(key)
                continue
            if _material(seen) != _material(key.jwk):
                raise TrustError(
                    f"key {key.kid!r} of {self.issuer} has other key material than the key"
                    f" archived under that kid (seen {_utc(key.first_seen)} to"
                    f" {_utc(key.last_seen)}); refusing the snapshot",
                    hint="a key id must always name the same key; investigate the OP's JWKS"
                    " before archiving it",
                )
            merged.append(
                replace(key, first_seen=min(key.first_seen, at), last_seen=max(key.last_seen, at))
            )
        merged.extend(ArchivedKey(jwk, at, at) for jwk in snapshot.values())
        merged.sort(key=lambda k: (k.first_seen, k.kid))
        return replace(self, keys=tuple(merged))

    # --- lookup

    def key(self, kid: str) -> ArchivedKey | None:
        return next((k for k in self.keys if k.kid == kid), None)

    def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Mapping[str, Any]:
        """The archived key ``kid`` if a token issued at ``issued_at`` could have used it.

        Raises :class:`IssuerError` (as :func:`~opk_sign.pktoken.verify.select_key` does) when
        the key is unknown, and with another message when it is known but was not published
        when the token was issued.
        """
        if issuer != self.issuer:
            raise IssuerError(f"the JWKS archive holds keys of {self.issuer}, not of {issuer!r}")
        if kid is None:
            in_use = [k for k in self.keys if k.covers(issued_at)]
            if len(in_use) == 1:
                return dict(in_use[0].jwk)
            raise IssuerError(
                f"token names no key id and {len(in_use)} archived keys of {issuer} were"
                f" published at {_utc(issued_at)}"
            )
        archived = self.key(kid)
        if archived is None:
            raise IssuerError(
                f"key {kid!r} is not in the JWKS archive of {issuer}",
                hint="an archive older than the key does not hold it: update the archive, or"
                " verify against the live JWKS",
            )
        if not archived.covers(issued_at):
            raise IssuerError(
                f"key {kid!r} of {issuer} was published from {_utc(archived.first_seen)} to"
                f" {_utc(archived.last_seen)}, but the token was issued at {_utc(issued_at)},"
                f" outside that window (give or take {WINDOW_MARGIN} s)",
                hint="the OP signs only with keys it publishes: either the archive is stale"
                " (update it) or the token was not made by the OP",
            )
        return dict(archived.jwk)


class KeySourceChain:
    """Ask each key source in order (e.g. the live JWKS, then the archive); first hit wins.

    A miss (:class:`IssuerError`) or an unavailable source (:class:`TrustError`, e.g. an
    unreachable JWKS endpoint) moves on to the next source; when every source fails, the last
    one's error class is raised with all messages combined, so the outcome (exit code) is the
    last source's and the message says what each source answered.
    """

    def __init__(self, *sources: OPKeySource) -> None:
        if not sources:
            raise UsageError("a key source chain needs at least one key source")
        self.sources = sources

    def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Mapping[str, Any]:
        errors: list[OpkSignError] = []
        for source in self.sources:
            try:
                return source.op_key(issuer, kid, issued_at)
            except (IssuerError, TrustError) as err:
                errors.append(err)
        last = errors[-1]
        messages = list(dict.fromkeys(err.message for err in errors))
        raise type(last)("; ".join(messages), hint=last.hint)


__all__ = [
    "CLOCK_SKEW",
    "SNAPSHOT_INTERVAL",
    "WINDOW_MARGIN",
    "ArchivedKey",
    "JWKSArchive",
    "KeySourceChain",
]
