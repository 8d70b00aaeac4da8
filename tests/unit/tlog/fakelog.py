"""An in-memory Rekor v2 stand-in for the pure tests: appends bodies, signs C2SP checkpoints with
an Ed25519 log key, cosigns them with witnesses (cosignature/v1), and answers inclusion and
consistency proofs as RFC 9162 defines them (computed from the definitions, not from the code
under test)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from opk_sign.jose import JSONObject
from opk_sign.tlog.note import SIG_COSIGNATURE_V1, SIG_ED25519, VerifierKey, sign_note_lines


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH over leaf *hashes*."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(mth(leaves[:k]), mth(leaves[k:]))


def inclusion_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n])."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return [*inclusion_path(m, leaves[:k]), mth(leaves[k:])]
    return [*inclusion_path(m - k, leaves[k:]), mth(leaves[:k])]


def consistency_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.4.1 PROOF(m, D[n])."""

    def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [mth(d)]
        k = _split(n)
        if m <= k:
            return [*subproof(m, d[:k], b), mth(d[k:])]
        return [*subproof(m - k, d[k:], False), mth(d[:k])]

    return subproof(m, leaves, True) if 0 < m < len(leaves) else []


@dataclass
class Signer:
    key: VerifierKey
    private: ed25519.Ed25519PrivateKey = field(repr=False)

    @classmethod
    def new(cls, name: str, sig_type: int = SIG_ED25519) -> Signer:
        private = ed25519.Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(VerifierKey(name, sig_type, raw), private)

    def sign(self, text: bytes, when: int = 1_790_000_000) -> bytes:
        if self.key.sig_type == SIG_COSIGNATURE_V1:
            stamp = when.to_bytes(8, "big")
            message = b"cosignature/v1\ntime " + str(when).encode() + b"\n" + text
            return stamp + self.private.sign(message)
        return self.private.sign(text)


@dataclass
class FakeLog:
    origin: str = "fake.test"
    signer: Signer = field(default_factory=lambda: Signer.new("fake.test"))
    witnesses: list[Signer] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    @property
    def leaves(self) -> list[bytes]:
        return [_leaf(b) for b in self.bodies]

    @property
    def log_id(self) -> bytes:
        """What rekor-tiles v2.3.0 writes in logId.keyId for an Ed25519 checkpoint key: the whole
        SHA-256 whose first 4 bytes are the note key ID."""
        key = self.signer.key
        return hashlib.sha256(key.name.encode() + b"\n\x01" + key.key).digest()

    def checkpoint_text(self, size: int | None = None) -> bytes:
        size = len(self.bodies) if size is None else size
        root = base64.b64encode(mth(self.leaves[:size])).decode()
        return f"{self.origin}\n{size}\n{root}\n".encode()

    def checkpoint(self, size: int | None = None) -> str:
        text = self.checkpoint_text(size)
        signatures = [(self.signer.key, self.signer.sign(text))]
        signatures += [(w.key, w.sign(text)) for w in self.witnesses]
        return sign_note_lines(text, signatures).decode()

    def add(self, body: bytes) -> JSONObject:
        """Append ``body``; its TransparencyLogEntry at the new size (protobuf JSON)."""
        self.bodies.append(body)
        return self.entry(len(self.bodies) - 1)

    def entry(self, index: int, size: int | None = None) -> JSONObject:
        size = len(self.bodies) if size is None else size
        leaves = self.leaves[:size]
        return {
            "logIndex": str(index),
            "logId": {"keyId": base64.b64encode(self.log_id).decode()},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.2"},
            "integratedTime": "0",
            "inclusionPromise": None,
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": base64.b64encode(mth(leaves)).decode(),
                "treeSize": str(size),
                "hashes": [base64.b64encode(h).decode() for h in inclusion_path(index, leaves)],
                "checkpoint": {"envelope": self.checkpoint(size)},
            },
            "canonicalizedBody": base64.b64encode(self.bodies[index]).decode(),
        }
