"""C2SP signed notes (c2sp.org/signed-note) and their verifier keys (vkeys).

A note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <name> base64(4-byte key ID || signature)``. A vkey is ``<name>+<hex key ID>+base64(type ||
public key)``. Signature types here, as the spec assigns them:

* ``0x01`` Ed25519 over the note text; key ID = SHA-256(name || "\\n" || 0x01 || key)[:4];
* ``0x02`` ECDSA (P-256, P-384, P-521) with SHA-256 over the note text, the key a DER
  SubjectPublicKeyInfo; key ID = SHA-256(SPKI)[:4] (as Rekor v2 and the witness do);
* ``0x04`` timestamped Ed25519 witness cosignatures (c2sp.org/tlog-cosignature, cosignature/v1):
  the signature is an 8-byte big-endian POSIX time then an Ed25519 signature over
  ``cosignature/v1\\ntime <t>\\n`` and the note text.

Signatures from unknown keys are ignored; a signature from a known (name, key ID) must verify.
Pure logic, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from opk_sign.errors import FormatError, TransparencyError

SIG_ED25519: Final = 0x01
SIG_ECDSA: Final = 0x02
SIG_COSIGNATURE_V1: Final = 0x04

#: A checkpoint is a few hundred bytes; a note with many post-quantum signatures a few dozen KiB.
MAX_NOTE_BYTES: Final = 64 * 1024
#: The spec says verifiers must accept at least 16 signatures.
MAX_SIGNATURES: Final = 100
MAX_VKEY_BYTES: Final = 4096
_DASH: Final = "\u2014 "


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_hash(name: str, sig_type: int, key: bytes) -> bytes:
    """The SHA-256 a key ID is the first 4 bytes of; whole, it is the log ID Rekor v2 writes in
    an entry's ``logId.keyId`` (checked against rekor-tiles v2.3.0, Ed25519 and ECDSA keys)."""
    if sig_type == SIG_ECDSA:
        return hashlib.sha256(key).digest()
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + key).digest()


def key_id(name: str, sig_type: int, key: bytes) -> bytes:
    """The 4-byte key ID of a key (the ECDSA one is the hash of its SPKI alone)."""
    return key_hash(name, sig_type, key)[:4]


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes = field(repr=False)


@dataclass(frozen=True)
class VerifierKey:
    """A note verifier key: name, signature type and public key (its key ID derived)."""

    name: str
    sig_type: int
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise FormatError(f"verifier key name {self.name!r}: empty, or has '+' or spaces")
        if self.sig_type in (SIG_ED25519, SIG_COSIGNATURE_V1):
            if len(self.key) != 32:
                raise FormatError(f"verifier key {self.name}: an Ed25519 key is 32 bytes")
            ed25519.Ed25519PublicKey.from_public_bytes(self.key)
        elif self.sig_type == SIG_ECDSA:
            self._ecdsa()
        else:
            raise FormatError(
                f"verifier key {self.name}: signature type 0x{self.sig_type:02x} is not supported "
                "(0x01 Ed25519, 0x02 ECDSA, 0x04 Ed25519 cosignature)"
            )

    def _ecdsa(self) -> ec.EllipticCurvePublicKey:
        try:
            public = serialization.load_der_public_key(self.key)
        except (ValueError, UnsupportedAlgorithm):
            raise FormatError(f"verifier key {self.name}: not a DER public key") from None
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
            public.curve, ec.SECP256R1 | ec.SECP384R1 | ec.SECP521R1
        ):
            raise FormatError(f"verifier key {self.name}: ECDSA keys must be P-256/384/521")
        return public

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.key)

    @property
    def log_id(self) -> bytes:
        """The log ID of a log's key, as a Rekor v2 entry's ``logId.keyId`` names it."""
        return key_hash(self.name, self.sig_type, self.key)

    @property
    def is_cosigner(self) -> bool:
        return self.sig_type == SIG_COSIGNATURE_V1

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """``<name>+<8 hex>+<base64(type || key)>``, the key ID checked against the key."""
        text = text.strip()
        if len(text) > MAX_VKEY_BYTES:
            raise FormatError("verifier key: too long")
        name, plus1, rest = text.partition("+")
        hex_id, plus2, encoded = rest.partition("+")
        if not plus1 or not plus2 or len(hex_id) != 8:
            raise FormatError(f"verifier key {text[:60]!r}: expected <name>+<hex id>+<base64 key>")
        try:
            wanted = bytes.fromhex(hex_id)
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise FormatError(f"verifier key {name!r}: bad hex key ID or base64 key") from None
        if len(raw) < 2:
            raise FormatError(f"verifier key {name!r}: no key material")
        key = cls(name, raw[0], raw[1:])
        if key.key_id != wanted:
            raise FormatError(f"verifier key {name!r}: key ID {hex_id} does not match its key")
        return key

    def encode(self) -> str:
        material = base64.b64encode(bytes([self.sig_type]) + self.key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    def matches(self, signature: NoteSignature) -> bool:
        return signature.name == self.name and signature.key_id == self.key_id

    def verify(self, text: bytes, signature: bytes) -> int | None:
        """Whether ``signature`` over note ``text`` is valid under this key; for a cosignature
        its time (POSIX seconds), else None. Raises TransparencyError when invalid."""
        try:
            if self.sig_type == SIG_ED25519:
                ed25519.Ed25519PublicKey.from_public_bytes(self.key).verify(signature, text)
                return None
            if self.sig_type == SIG_ECDSA:
                self._ecdsa().verify(signature, text, ec.ECDSA(hashes.SHA256()))
                return None
            if len(signature) != 8 + 64:
                raise TransparencyError(f"cosignature by {self.name}: not 8 + 64 bytes")
            when = int.from_bytes(signature[:8], "big")
            if when >= 2**63:
                raise TransparencyError(f"cosignature by {self.name}: time out of range")
            message = b"cosignature/v1\ntime " + str(when).encode() + b"\n" + text
            ed25519.Ed25519PublicKey.from_public_bytes(self.key).verify(signature[8:], message)
            return when
        except InvalidSignature:
            raise TransparencyError(
                f"note signature by {self.name} ({self.key_id.hex()}) does not verify"
            ) from None


@dataclass(frozen=True)
class Note:
    text: bytes
    signatures: tuple[NoteSignature, ...]

    @classmethod
    def parse(cls, data: bytes | str) -> Note:
        raw = data.encode() if isinstance(data, str) else data
        if len(raw) > MAX_NOTE_BYTES:
            raise FormatError(f"signed note: larger than {MAX_NOTE_BYTES} bytes")
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("signed note: not UTF-8") from None
        if any(ord(c) < 0x20 and c != "\n" for c in decoded):
            raise FormatError("signed note: control characters other than newline")
        split = decoded.rfind("\n\n")
        if split < 0 or not decoded.endswith("\n"):
            raise FormatError("signed note: no blank line between text and signatures")
        text = decoded[: split + 1]
        signatures = []
        lines = decoded[split + 2 :].split("\n")[:-1]
        if not lines:
            raise FormatError("signed note: no signatures")
        if len(lines) > MAX_SIGNATURES:
            raise FormatError(f"signed note: more than {MAX_SIGNATURES} signatures")
        for line in lines:
            if not line.startswith(_DASH):
                raise FormatError("signed note: a signature line must start with an em dash")
            name, space, encoded = line[len(_DASH) :].partition(" ")
            if not space or not _valid_name(name):
                raise FormatError(f"signed note: malformed signature line for {name!r}")
            try:
                blob = base64.b64decode(encoded, validate=True)
            except (ValueError, binascii.Error):
                raise FormatError(f"signed note: signature by {name} is not base64") from None
            if len(blob) < 5:
                raise FormatError(f"signed note: signature by {name} is too short")
            signatures.append(NoteSignature(name, blob[:4], blob[4:]))
        return cls(text.encode(), tuple(signatures))

    def signed_by(self, key: VerifierKey) -> int | None:
        """Verify this note's signature by ``key``: its cosignature time, or None. Raises
        TransparencyError when the key did not sign it or its signature is invalid."""
        found = [s for s in self.signatures if key.matches(s)]
        if not found:
            raise TransparencyError(f"note not signed by {key.name} ({key.key_id.hex()})")
        times = [key.verify(self.text, s.signature) for s in found]
        return times[0]

    def cosigners(self, keys: Iterable[VerifierKey]) -> dict[str, int]:
        """The cosigners among ``keys`` whose valid cosignature the note carries (name: time).
        A cosignature that does not verify fails the whole note, as the spec recommends.

        One entry per public key and per name: the cosignature/v1 message does not contain the
        name, so one witness's cosignature re-labelled under a second name of the same key
        would otherwise count as two witnesses."""
        out: dict[str, int] = {}
        seen: set[bytes] = set()
        for key in keys:
            if key.key in seen or not any(key.matches(s) for s in self.signatures):
                continue
            when = self.signed_by(key)
            seen.add(key.key)
            out[key.name] = when if when is not None else 0
        return out


def sign_note_lines(text: bytes, signatures: Sequence[tuple[VerifierKey, bytes]]) -> bytes:
    """A note from its text and (key, raw signature) pairs (tests and the dev witness)."""
    lines = [
        f"{_DASH}{key.name} {base64.b64encode(key.key_id + sig).decode()}\n"
        for key, sig in signatures
    ]
    return text + b"\n" + "".join(lines).encode()
