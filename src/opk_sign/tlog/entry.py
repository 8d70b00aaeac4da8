"""A Rekor v2 ``TransparencyLogEntry`` (sigstore protobuf-specs, in its protobuf-JSON form), as
the log returns it and a bundle's ``tlogEntries`` keeps it.

Only what a verifier needs is modelled; the JSON object is kept as the log sent it. protobuf-JSON
writes 64-bit integers as strings and leaves out zero values (``logIndex`` of the first entry).
Pure logic, no I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opk_sign.errors import FormatError
from opk_sign.jose import JSONObject
from opk_sign.tlog.hashedrekord import API_VERSION, KIND, MAX_BODY_BYTES
from opk_sign.tlog.merkle import MAX_PROOF_HASHES
from opk_sign.tlog.note import MAX_NOTE_BYTES

MAX_INDEX: Final = 2**63 - 1


def _int(data: Mapping[str, Any], key: str, what: str) -> int:
    value = data.get(key, "0")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FormatError(f"{what}: {key} must be an integer")
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_INDEX:
        raise FormatError(f"{what}: {key} {text[:30]!r} is not a non-negative 64-bit integer")
    return int(text)


def _b64(value: Any, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > limit * 4 // 3 + 4:
        raise FormatError(f"{what}: expected base64 of at most {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise FormatError(f"{what}: not base64") from None


@dataclass(frozen=True)
class InclusionProof:
    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str = field(repr=False)


@dataclass(frozen=True)
class LogEntry:
    log_index: int
    log_key_id: bytes
    body: bytes = field(repr=False)
    proof: InclusionProof
    raw: JSONObject = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> LogEntry:
        what = "tlog entry"
        if not isinstance(data, Mapping):
            raise FormatError(f"{what}: expected a JSON object")
        kind = data.get("kindVersion")
        if not isinstance(kind, Mapping) or (kind.get("kind"), kind.get("version")) != (
            KIND,
            API_VERSION,
        ):
            raise FormatError(
                f"{what}: kindVersion must be {KIND} {API_VERSION} (the only kind Rekor v2 logs), "
                f"got {kind!r}"[:200]
            )
        log_id = data.get("logId")
        if not isinstance(log_id, Mapping):
            raise FormatError(f"{what}: no logId")
        proof = data.get("inclusionProof")
        if not isinstance(proof, Mapping):
            raise FormatError(f"{what}: no inclusionProof")
        checkpoint = proof.get("checkpoint")
        envelope = checkpoint.get("envelope") if isinstance(checkpoint, Mapping) else None
        if not isinstance(envelope, str) or len(envelope) > MAX_NOTE_BYTES:
            raise FormatError(f"{what}: inclusionProof has no checkpoint envelope")
        hashes = proof.get("hashes", [])
        if not isinstance(hashes, list) or len(hashes) > MAX_PROOF_HASHES:
            raise FormatError(f"{what}: inclusionProof hashes must be a list (at most 64)")
        inclusion = InclusionProof(
            log_index=_int(proof, "logIndex", f"{what} inclusionProof"),
            tree_size=_int(proof, "treeSize", f"{what} inclusionProof"),
            root_hash=_b64(proof.get("rootHash"), f"{what} rootHash", 64),
            hashes=tuple(_b64(h, f"{what} proof hash", 64) for h in hashes),
            checkpoint=envelope,
        )
        # Rekor v2 writes neither (``"integratedTime": "0"``, ``"inclusionPromise": null``):
        # either would be a Rekor v1 entry, whose time and promise nothing here checks.
        if _int(data, "integratedTime", what) != 0:
            raise FormatError(
                f"{what}: has an integratedTime; Rekor v2 entries have none (a Rekor v1 entry?)"
            )
        if data.get("inclusionPromise") is not None:
            raise FormatError(
                f"{what}: has an inclusionPromise; Rekor v2 entries have none (a Rekor v1 entry?)"
            )
        entry = cls(
            log_index=_int(data, "logIndex", what),
            log_key_id=_b64(log_id.get("keyId"), f"{what} logId", 64),
            body=_b64(data.get("canonicalizedBody"), f"{what} canonicalizedBody", MAX_BODY_BYTES),
            proof=inclusion,
            raw=dict(data),
        )
        if entry.log_index != inclusion.log_index:
            raise FormatError(
                f"{what}: logIndex {entry.log_index} differs from the proof's {inclusion.log_index}"
            )
        return entry
