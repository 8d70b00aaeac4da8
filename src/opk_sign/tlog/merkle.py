"""RFC 9162 (Certificate Transparency v2, section 2.1) Merkle tree hashing and proofs.

Leaf hash ``SHA-256(0x00 || entry)``, interior node ``SHA-256(0x01 || left || right)``. Inclusion
proofs (2.1.3.2) and consistency proofs (2.1.4.2) are verified exactly as the RFC's algorithms
say; :class:`CompactRange` is the right edge of a tree (one hash per set bit of its size), which
the monitor keeps between runs so that appending the entries it reads reproduces the new root:
that proves the new tree extends the old one and that no entry was skipped. Pure logic, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from opk_sign.errors import TransparencyError

HASH_SIZE: Final = 32
#: 2^63 leaves: more than any log will hold; a proof longer than 64 hashes cannot be right.
MAX_PROOF_HASHES: Final = 64


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _check_hashes(proof: Sequence[bytes], what: str) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise TransparencyError(f"{what}: more than {MAX_PROOF_HASHES} hashes")
    for item in proof:
        if len(item) != HASH_SIZE:
            raise TransparencyError(f"{what}: a hash is {len(item)} bytes, not {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof of leaf ``index`` in a tree of ``size`` leaves leads to."""
    _check_hashes([leaf, *proof], "inclusion proof")
    if not 0 <= index < size:
        raise TransparencyError(
            f"inclusion proof: leaf index {index} is outside a tree of {size} entries"
        )
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise TransparencyError("inclusion proof: more hashes than the tree's height needs")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise TransparencyError("inclusion proof: fewer hashes than the tree's height needs")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise TransparencyError unless ``proof`` shows ``leaf`` at ``index`` under ``root``."""
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise TransparencyError(
            f"inclusion proof: entry {index} does not lead to the checkpoint's root hash"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise TransparencyError unless the tree (size2, root2) extends (size1, root1)."""
    _check_hashes([root1, root2, *proof], "consistency proof")
    if not 0 <= size1 <= size2:
        raise TransparencyError(f"consistency proof: tree shrank from {size1} to {size2}")
    if size1 == size2:
        if proof or root1 != root2:
            raise TransparencyError("consistency proof: same size, different root")
        return
    if size1 == 0:
        if proof:
            raise TransparencyError("consistency proof: must be empty from an empty tree")
        return
    if not proof:
        raise TransparencyError("consistency proof: empty")
    items = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is the first node
        items.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = items[0]
    for c in items[1:]:
        if sn == 0:
            raise TransparencyError("consistency proof: too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != root1 or sr != root2:
        raise TransparencyError(
            f"consistency proof: the tree of {size2} entries does not extend the one of {size1}"
        )


@dataclass(frozen=True)
class CompactRange:
    """The right edge of a tree of ``size`` leaves: the roots of its perfect subtrees, largest
    first (one per set bit of ``size``)."""

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != bin(self.size).count("1"):
            raise TransparencyError(
                f"compact range: {len(self.hashes)} hashes cannot describe a tree of {self.size}"
            )
        _check_hashes(self.hashes, "compact range")

    def append(self, leaf: bytes) -> CompactRange:
        """The range with one more leaf (its leaf hash)."""
        stack = list(self.hashes)
        node = leaf
        size = self.size
        while size & 1:  # merge with each subtree of the same height
            node = node_hash(stack.pop(), node)
            size >>= 1
        stack.append(node)
        return CompactRange(self.size + 1, tuple(stack))

    def root(self) -> bytes:
        """The tree's root hash (SHA-256 of nothing for the empty tree, as RFC 9162 says)."""
        if not self.hashes:
            return hashlib.sha256(b"").digest()
        node = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            node = node_hash(left, node)
        return node


def root_of(leaves: Sequence[bytes]) -> bytes:
    """The root of a tree of these leaf hashes (tests and the monitor's first run)."""
    tree = CompactRange()
    for leaf in leaves:
        tree = tree.append(leaf)
    return tree.root()
