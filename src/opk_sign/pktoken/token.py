"""The PK token: one ID-token payload with the OP's GQ256 signature, the client's CIC signature
and optionally a cosigner's, as a general JWS JSON serialization or OpenPubkey's compact form.

Segments are kept exactly as received; :meth:`PKToken.to_json` writes the canonical
serialization the Go reference hashes (members ``payload``, ``signatures``; each signature
``protected``, ``header`` if any, ``signature``; order OP, CIC, COS).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opk_sign.errors import CICError, FormatError
from opk_sign.jose import (
    CompactJWS,
    JSONObject,
    b64decode,
    b64encode,
    go_json,
    parse_json_object,
    require_str,
)
from opk_sign.pktoken.cic import ClientInstanceClaims, UserKey

OP: Final = "OP"
CIC: Final = "CIC"
COS: Final = "COS"

#: typ values that mark the OP's signature ("JWT", or none as Okta does, or RFC 9068 at+jwt).
_OP_TYPS: Final = frozenset({"jwt", "at+jwt"})


def role_of(protected: Mapping[str, Any]) -> str:
    """The role of a signature from its protected header's ``typ``."""
    typ = protected.get("typ")
    if typ is None or (isinstance(typ, str) and typ.lower() in _OP_TYPS):
        return OP
    if typ == "CIC":
        return CIC
    if typ == "COS":
        return COS
    raise FormatError(f"PK token: unrecognised signature typ {typ!r} (JWT, CIC or COS)")


@dataclass(frozen=True)
class Signature:
    """One signature of a general JWS; base64 segments as received."""

    protected_b64: str
    signature_b64: str
    header: JSONObject | None = None  # unprotected header, rare

    @property
    def protected(self) -> JSONObject:
        return parse_json_object(b64decode(self.protected_b64, "protected"), "protected header")

    def compact(self, payload_b64: str) -> str:
        return f"{self.protected_b64}.{payload_b64}.{self.signature_b64}"

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"protected": self.protected_b64}
        if self.header:
            out["header"] = self.header
        out["signature"] = self.signature_b64
        return out


@dataclass(frozen=True)
class PKToken:
    payload_b64: str
    op: Signature
    cic: Signature
    cos: Signature | None = None
    #: A refreshed ID token (compact form only; never part of the JSON or the hash).
    fresh_id_token: str | None = field(default=None, compare=False)

    # --- construction --------------------------------------------------------------------------

    @classmethod
    def build(cls, gq_token: str, cic_header: Mapping[str, Any], user_key: UserKey) -> PKToken:
        """A PK token from a GQ256 ID token and a CIC header, signing the CIC with the user key."""
        op = CompactJWS.parse(gq_token, "GQ token")
        if role_of(op.header("GQ token")) != OP:
            raise FormatError("GQ token: typ must be JWT (the OP's signature)")
        protected = b64encode(go_json(cic_header))
        signing_input = f"{protected}.{op.payload_b64}".encode("ascii")
        cic = Signature(protected, b64encode(user_key.sign(signing_input)))
        token = cls._assemble(op.payload_b64, [Signature(op.protected_b64, op.signature_b64), cic])
        token.cic_claims()  # refuse a CIC we could not verify ourselves
        return token

    @classmethod
    def _assemble(cls, payload_b64: str, signatures: list[Signature]) -> PKToken:
        b64decode(payload_b64, "PK token payload")
        by_role: dict[str, list[Signature]] = {OP: [], CIC: [], COS: []}
        for sig in signatures:
            b64decode(sig.signature_b64, "PK token signature")
            by_role[role_of(sig.protected)].append(sig)
        for role, most in ((OP, 1), (CIC, 1), (COS, 1)):
            if len(by_role[role]) > most:
                raise FormatError(
                    f"PK token: {len(by_role[role])} {role} signatures; at most one is allowed"
                )
        for role in (OP, CIC):
            if not by_role[role]:
                raise FormatError(f"PK token: the {role} signature is missing")
        if by_role[CIC][0].header or (by_role[COS] and by_role[COS][0].header):
            raise FormatError("PK token: only the OP signature may carry an unprotected header")
        return cls(
            payload_b64=payload_b64,
            op=by_role[OP][0],
            cic=by_role[CIC][0],
            cos=by_role[COS][0] if by_role[COS] else None,
        )

    # --- JSON (general JWS) --------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: bytes | str) -> PKToken:
        obj = parse_json_object(data, "PK token")
        unknown = set(obj) - {"payload", "signatures"}
        if unknown:
            raise FormatError(f"PK token: unexpected members {sorted(unknown)}")
        payload_b64 = require_str(obj, "payload", "PK token")
        raw_sigs = obj.get("signatures")
        if not isinstance(raw_sigs, list) or not 2 <= len(raw_sigs) <= 3:
            raise FormatError("PK token: 'signatures' must be a list of 2 or 3 signatures")
        signatures = []
        for i, raw in enumerate(raw_sigs):
            where = f"PK token signature {i}"
            if not isinstance(raw, dict):
                raise FormatError(f"{where}: expected a JSON object")
            unknown = set(raw) - {"protected", "header", "signature"}
            if unknown:
                raise FormatError(f"{where}: unexpected members {sorted(unknown)}")
            header = raw.get("header")
            if header is not None and not isinstance(header, dict):
                raise FormatError(f"{where}: 'header' must be a JSON object")
            signatures.append(
                Signature(
                    require_str(raw, "protected", where),
                    require_str(raw, "signature", where),
                    header or None,
                )
            )
        return cls._assemble(payload_b64, signatures)

    def signatures(self) -> list[Signature]:
        return [s for s in (self.op, self.cic, self.cos) if s is not None]

    def to_json(self) -> bytes:
        """The canonical JSON serialization, byte-identical to Go's ``PKToken.MarshalJSON``."""
        return self._canonical_json

    @functools.cached_property
    def _canonical_json(self) -> bytes:
        # Computed once per token (frozen): a signing run serializes and hashes its one PK token
        # for every bundle it makes (sign --images-from: hundreds).
        parts = []
        for sig in self.signatures():
            header = f'"header":{go_json(sig.header).decode()},' if sig.header else ""
            parts.append(
                f'{{"protected":"{sig.protected_b64}",{header}"signature":"{sig.signature_b64}"}}'
            )
        return f'{{"payload":"{self.payload_b64}","signatures":[{",".join(parts)}]}}'.encode()

    def hash(self) -> str:
        """base64url SHA3-256 of the canonical JSON: the ``kid`` of every OSM by this token."""
        return b64encode(hashlib.sha3_256(self.to_json()).digest())

    # --- compact -------------------------------------------------------------------------------

    @classmethod
    def from_compact(cls, text: str | bytes) -> PKToken:
        if isinstance(text, bytes):
            try:
                text = text.decode("ascii")
            except UnicodeDecodeError:
                raise FormatError("compact PK token: not ASCII") from None
        if not isinstance(text, str):
            raise FormatError("compact PK token: expected a string")
        tokens, _, fresh = text.partition(".")
        if fresh:
            CompactJWS.parse(fresh, "refreshed ID token")
        parts = tokens.split(":")
        if len(parts) < 5 or len(parts) % 2 != 1 or len(parts) > 7:
            raise FormatError(
                f"compact PK token: expected payload and 2 or 3 signature pairs separated by ':',"
                f" got {len(parts)} segments"
            )
        signatures = [Signature(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]
        token = cls._assemble(parts[0], signatures)
        return cls(token.payload_b64, token.op, token.cic, token.cos, fresh or None)

    def to_compact(self) -> str:
        segments = [self.payload_b64]
        for sig in self.signatures():
            if sig.header:
                raise FormatError("compact PK token cannot carry an unprotected header")
            segments += [sig.protected_b64, sig.signature_b64]
        compact = ":".join(segments)
        return f"{compact}.{self.fresh_id_token}" if self.fresh_id_token else compact

    # --- views ---------------------------------------------------------------------------------

    @property
    def payload(self) -> bytes:
        return b64decode(self.payload_b64, "PK token payload")

    def claims(self) -> JSONObject:
        return parse_json_object(self.payload, "PK token payload")

    @property
    def op_token(self) -> CompactJWS:
        """The OP's token (GQ256) as a compact JWS."""
        return CompactJWS(self.op.protected_b64, self.payload_b64, self.op.signature_b64)

    @property
    def cic_token(self) -> CompactJWS:
        return CompactJWS(self.cic.protected_b64, self.payload_b64, self.cic.signature_b64)

    def cic_claims(self) -> ClientInstanceClaims:
        return self._cic_claims

    @functools.cached_property
    def _cic_claims(self) -> ClientInstanceClaims:
        # Once per token (frozen; a malformed CIC raises every time, nothing is cached then).
        try:
            return ClientInstanceClaims.from_header(self.cic.protected)
        except FormatError as err:
            raise CICError(f"CIC: {err.message}") from None
