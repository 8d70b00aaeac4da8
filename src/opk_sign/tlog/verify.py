"""Verifying a bundle's transparency log entries, offline: nothing is asked of the log.

For each entry in ``tlogEntries``:

1. its kind is hashedrekord 0.0.2 and its certificate carries this bundle's PK token, committed
   to the certificate's key;
2. the hashedrekord body rebuilt from the bundle (digest and DER signature of its OSM or DSSE
   envelope, the certificate) equals the logged body byte for byte, so that a valid proof of some
   other entry does not pass;
3. the checkpoint is a signed note by a trusted log key whose name is the checkpoint's origin,
   cosigned by a quorum of the trusted witnesses, and states the proof's tree size and root; the
   entry's ``logId`` is that log key's ID (a Rekor v2 entry has no integrated time and no
   inclusion promise: one that has either is refused when parsed);
4. the RFC 9162 inclusion proof leads from the body's leaf hash to that root.

With ``required`` (``--require-tlog``, ``transparency: required``), a bundle without an entry is
refused (exit 12): stripping the entry is a downgrade. Pure logic, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opk_sign.bundle import Bundle
from opk_sign.errors import FormatError, OpkSignError, TransparencyError, UsageError
from opk_sign.tlog.cert import parse_certificate
from opk_sign.tlog.checkpoint import TlogTrust, verify_checkpoint
from opk_sign.tlog.entry import LogEntry
from opk_sign.tlog.hashedrekord import (
    LoggedEntry,
    canonical_body,
    require_same_body,
    signed_digest,
)
from opk_sign.tlog.merkle import leaf_hash, verify_inclusion


@dataclass(frozen=True)
class VerifiedLogEntry:
    origin: str
    log_index: int
    tree_size: int
    #: Witnesses whose cosignature verified (name: POSIX time).
    cosigners: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As ``verify -o json`` reports it (docs/schemas/verify.schema.json)."""
        return {
            "origin": self.origin,
            "logIndex": self.log_index,
            "treeSize": self.tree_size,
            "witnesses": sorted(self.cosigners),
        }


def verify_entry(
    bundle: Bundle, raw: object, trust: TlogTrust, digest: str | None = None
) -> VerifiedLogEntry:
    """One entry of ``bundle.tlog_entries`` (steps 1 to 4); with ``digest``, the certificate
    must not name another manifest than the one being verified."""
    try:
        entry = LogEntry.from_dict(raw)
        logged = LoggedEntry.parse(entry.body)
    except FormatError as err:
        raise TransparencyError(f"transparency log entry: {err.message}") from None
    try:
        certified = parse_certificate(logged.certificate)
    except OpkSignError:
        raise
    except Exception as err:  # a hostile certificate is a refusal (12), never a traceback
        raise TransparencyError(
            f"the logged certificate does not parse ({type(err).__name__})"
        ) from None
    if certified.pk_token.to_json() != bundle.pk_token.to_json():
        raise TransparencyError("the logged certificate carries another PK token than the bundle's")
    if digest is not None and certified.subject is not None and certified.subject.digest != digest:
        raise TransparencyError(
            f"the logged certificate says it signs {certified.subject.reference}, not {digest}"
        )
    rebuilt = canonical_body(signed_digest(bundle), logged.certificate)
    require_same_body(entry.body, rebuilt)
    checked = verify_checkpoint(entry.proof.checkpoint, trust)
    checkpoint = checked.checkpoint
    log_ids = {k.log_id for k in trust.logs if k.name == checkpoint.origin}
    if entry.log_key_id not in log_ids:
        raise TransparencyError(
            f"the entry's logId {entry.log_key_id.hex()[:16]}… is not the ID of a trusted key "
            f"of {checkpoint.origin!r}, whose key signed its checkpoint"
        )
    if (checkpoint.size, checkpoint.root_hash) != (entry.proof.tree_size, entry.proof.root_hash):
        raise TransparencyError(
            f"inclusion proof is for a tree of {entry.proof.tree_size} entries with another root "
            f"than the checkpoint's ({checkpoint.size} entries)"
        )
    verify_inclusion(
        entry.proof.log_index,
        checkpoint.size,
        leaf_hash(entry.body),
        entry.proof.hashes,
        checkpoint.root_hash,
    )
    return VerifiedLogEntry(
        checkpoint.origin, entry.log_index, checkpoint.size, dict(checked.cosigners)
    )


def verify_tlog(
    bundle: Bundle, trust: TlogTrust | None, *, required: bool = False, digest: str | None = None
) -> tuple[VerifiedLogEntry, ...]:
    """Every entry of the bundle verified under ``trust``; with ``required``, at least one.

    Without trust material the entries cannot be checked: that is a usage error when they are
    required, and otherwise the entries are left unchecked (they add nothing then)."""
    if not bundle.tlog_entries:
        if required:
            raise TransparencyError(
                "the bundle has no transparency log entry, and one is required: it was signed "
                "without --tlog, or the entry was stripped",
                hint="sign with --tlog always (or auto for a public repository)",
            )
        return ()
    if trust is None:
        if required:
            raise UsageError(
                "a transparency log entry is required but no log key is trusted",
                hint="give --tlog-keys FILE, or install a trust repository that distributes them",
            )
        return ()
    return tuple(verify_entry(bundle, raw, trust, digest) for raw in bundle.tlog_entries)
