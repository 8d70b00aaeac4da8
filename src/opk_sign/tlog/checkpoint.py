"""C2SP checkpoints (c2sp.org/tlog-checkpoint) as signed notes, and the trust to verify them.

A checkpoint's text is the log's origin, its size (decimal), its root hash (base64) and optional
extension lines. It counts only when signed by a trusted log key whose name is the origin, and,
when the verifier names witnesses, cosigned (c2sp.org/tlog-cosignature) by at least a quorum of
them: a log showing one view to the signer and another to everyone else would need the witnesses
to sign both. Pure logic, no I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from opk_sign.errors import FormatError, TransparencyError, UsageError
from opk_sign.tlog.merkle import HASH_SIZE
from opk_sign.tlog.note import Note, VerifierKey

MAX_EXTENSION_LINES: Final = 16
MAX_KEYS_FILE_BYTES: Final = 64 * 1024


def _decimal(text: str) -> bool:
    """ASCII digits only (str.isdigit also takes "²" and other digits int() refuses)."""
    return text.isascii() and text.isdigit()


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    @classmethod
    def parse_text(cls, text: bytes) -> Checkpoint:
        try:
            lines = text.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            raise FormatError("checkpoint: not UTF-8") from None
        if len(lines) < 4 or lines[-1] != "":
            raise FormatError("checkpoint: needs origin, size and root hash lines")
        origin, size, root, *extensions = lines[:-1]
        if not origin:
            raise FormatError("checkpoint: empty origin")
        if not _decimal(size) or (size != "0" and size.startswith("0")) or len(size) > 19:
            raise FormatError(f"checkpoint: size {size[:30]!r} is not a decimal number")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except (ValueError, binascii.Error):
            raise FormatError("checkpoint: root hash is not base64") from None
        if len(root_hash) != HASH_SIZE:
            raise FormatError(f"checkpoint: root hash is {len(root_hash)} bytes, not {HASH_SIZE}")
        if len(extensions) > MAX_EXTENSION_LINES or any(not e for e in extensions):
            raise FormatError("checkpoint: too many or empty extension lines")
        return cls(origin, int(size), root_hash, tuple(extensions))

    def text(self) -> bytes:
        root = base64.b64encode(self.root_hash).decode()
        body = [self.origin, str(self.size), root, *self.extensions]
        return ("\n".join(body) + "\n").encode()


@dataclass(frozen=True)
class TlogTrust:
    """Log keys (0x01 Ed25519 or 0x02 ECDSA vkeys), witness keys (0x04 cosigner vkeys) and how
    many witnesses must have cosigned a checkpoint (0: none required)."""

    logs: tuple[VerifierKey, ...]
    witnesses: tuple[VerifierKey, ...] = ()
    quorum: int = 0

    def __post_init__(self) -> None:
        if any(k.is_cosigner for k in self.logs):
            raise UsageError("transparency keys: a cosignature (0x04) key cannot be a log key")
        if any(not k.is_cosigner for k in self.witnesses):
            raise UsageError("transparency keys: a witness key must be a 0x04 cosigner key")
        _one_name_per_witness(self.witnesses)
        if not 0 <= self.quorum <= len(self.witnesses):
            raise UsageError(
                f"transparency keys: a quorum of {self.quorum} out of "
                f"{len(self.witnesses)} witnesses cannot be met"
            )

    def merged(self, other: TlogTrust) -> TlogTrust:
        """Both sources' keys (a ``--tlog-keys`` file and the trust repository's): the log keys
        of both; the witness policy of the one that requires cosignatures. Two sources each
        requiring a quorum must name the same witnesses (the larger quorum then holds): a union
        would let one source's witnesses meet the other's quorum, so it is refused."""
        logs = tuple(dict.fromkeys((*self.logs, *other.logs)))
        _one_name_per_witness(tuple(dict.fromkeys((*self.witnesses, *other.witnesses))))
        if not other.quorum:
            witnesses, quorum = self.witnesses, self.quorum
            if not self.quorum:
                witnesses = tuple(dict.fromkeys((*self.witnesses, *other.witnesses)))
        elif not self.quorum:
            witnesses, quorum = other.witnesses, other.quorum
        elif set(self.witnesses) == set(other.witnesses):
            witnesses, quorum = self.witnesses, max(self.quorum, other.quorum)
        else:
            raise UsageError(
                "transparency keys: two sources (--tlog-keys and the trust repository's "
                "tlog/keys.txt) each require witness cosignatures, from different witnesses: "
                "neither quorum may be met by the other's witnesses",
                hint="list the same witnesses in both, or give the keys in one place only",
            )
        return TlogTrust(logs, witnesses, quorum)

    @classmethod
    def parse(cls, data: bytes, source: str) -> TlogTrust:
        """A keys file: ``log <vkey>``, ``witness <vkey>``, ``quorum <N>``, ``#`` comments.
        Without a ``quorum`` line, every witness listed must have cosigned."""
        if len(data) > MAX_KEYS_FILE_BYTES:
            raise UsageError(f"{source}: larger than {MAX_KEYS_FILE_BYTES} bytes")
        logs: list[VerifierKey] = []
        witnesses: list[VerifierKey] = []
        quorum: int | None = None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{source}: not UTF-8") from None
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if len(words) != 2 or words[0] not in {"log", "witness", "quorum"}:
                raise UsageError(
                    f"{source} line {number}: expected 'log <vkey>', 'witness <vkey>' or "
                    "'quorum <N>'"
                )
            kind, value = words
            if kind == "quorum":
                if not _decimal(value) or quorum is not None:
                    raise UsageError(f"{source} line {number}: one 'quorum <N>', N a number")
                quorum = int(value)
                continue
            try:
                key = VerifierKey.parse(value)
            except FormatError as err:
                raise UsageError(f"{source} line {number}: {err.message}") from None
            (logs if kind == "log" else witnesses).append(key)
        if not logs:
            raise UsageError(f"{source}: names no log key ('log <vkey>')")
        return cls(tuple(logs), tuple(witnesses), len(witnesses) if quorum is None else quorum)

    def encode(self) -> str:
        lines = [f"log {k.encode()}" for k in self.logs]
        lines += [f"witness {k.encode()}" for k in self.witnesses]
        if self.witnesses:
            lines.append(f"quorum {self.quorum}")
        return "\n".join(lines) + "\n"


def _one_name_per_witness(witnesses: Sequence[VerifierKey]) -> None:
    """A quorum counts witnesses: one key under two names (its cosignature, which does not
    contain the name, re-labelled) or one name with two keys must not count twice."""
    names: dict[bytes, str] = {}
    keys: dict[str, bytes] = {}
    for key in witnesses:
        if names.setdefault(key.key, key.name) != key.name:
            raise UsageError(
                f"transparency keys: one witness key is listed under two names "
                f"({names[key.key]!r} and {key.name!r}); a quorum counts it once",
                hint="list each witness once, under one name",
            )
        if keys.setdefault(key.name, key.key) != key.key or witnesses.count(key) > 1:
            raise UsageError(
                f"transparency keys: the witness {key.name!r} is listed twice (or with two "
                "keys); a quorum counts it once",
                hint="list each witness once, with one key",
            )


@dataclass(frozen=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    log_key: VerifierKey
    #: Witnesses whose cosignature verified (name: POSIX time of the cosignature).
    cosigners: dict[str, int] = field(default_factory=dict)


def verify_checkpoint(envelope: bytes | str, trust: TlogTrust) -> VerifiedCheckpoint:
    """The checkpoint in ``envelope`` (a signed note), signed by a trusted log key named as its
    origin and cosigned by a quorum of the trusted witnesses."""
    note = Note.parse(envelope)
    checkpoint = Checkpoint.parse_text(note.text)
    candidates = [k for k in trust.logs if k.name == checkpoint.origin]
    if not candidates:
        names = ", ".join(sorted({k.name for k in trust.logs})) or "none"
        raise TransparencyError(
            f"checkpoint origin {checkpoint.origin!r} is not a trusted log (trusted: {names})",
            hint="a log key's name must be the log's origin; check --tlog-keys",
        )
    signed = [k for k in candidates if any(k.matches(s) for s in note.signatures)]
    if not signed:
        raise TransparencyError(
            f"checkpoint of {checkpoint.origin!r} is not signed by a trusted key of that log "
            f"(key IDs trusted: {', '.join(k.key_id.hex() for k in candidates)})"
        )
    for key in signed:
        note.signed_by(key)  # raises on an invalid signature by a known key
    cosigners = note.cosigners(trust.witnesses)  # one per witness key: the quorum counts keys
    if len(cosigners) < trust.quorum:
        have = ", ".join(sorted(cosigners)) or "none"
        raise TransparencyError(
            f"checkpoint of {checkpoint.origin!r} is cosigned by {len(cosigners)} trusted "
            f"witness(es) ({have}); the quorum is {trust.quorum}",
            hint="a checkpoint not seen by the witnesses may be a split view of the log",
        )
    return VerifiedCheckpoint(checkpoint, signed[0], cosigners)


def witness_names(keys: Sequence[VerifierKey]) -> list[str]:
    return [k.name for k in keys]
