"""RFC 9162 proofs: every inclusion and consistency proof of small trees verifies, and each
tampering (a hash, the index, the size, a hash more or less, the roots) is refused."""

from __future__ import annotations

import hashlib

import pytest

from opk_sign.errors import TransparencyError
from opk_sign.tlog.merkle import (
    CompactRange,
    leaf_hash,
    root_from_inclusion_proof,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from tests.unit.tlog.fakelog import consistency_proof, inclusion_path, mth

LEAVES = [leaf_hash(f"entry {i}".encode()) for i in range(33)]


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def test_the_empty_tree_and_a_vector() -> None:
    assert root_of([]) == hashlib.sha256(b"").digest()
    # RFC 6962 test vector: the leaf hash of the empty entry.
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


@pytest.mark.parametrize("size", range(1, 12))
def test_every_inclusion_proof_verifies_and_tampering_fails(size: int) -> None:
    leaves = LEAVES[:size]
    root = mth(leaves)
    assert root_of(leaves) == root
    for index in range(size):
        proof = inclusion_path(index, leaves)
        verify_inclusion(index, size, leaves[index], proof, root)
        assert root_from_inclusion_proof(index, size, leaves[index], proof) == root
        for position in range(len(proof)):
            bad = [*proof]
            bad[position] = _flip(bad[position])
            with pytest.raises(TransparencyError):
                verify_inclusion(index, size, leaves[index], bad, root)
        with pytest.raises(TransparencyError):
            verify_inclusion(index, size, _flip(leaves[index]), proof, root)
        with pytest.raises(TransparencyError):
            verify_inclusion(index, size, leaves[index], proof, _flip(root))
        with pytest.raises(TransparencyError):
            verify_inclusion(index, size, leaves[index], [*proof, root], root)
        if proof:
            with pytest.raises(TransparencyError):
                verify_inclusion(index, size, leaves[index], proof[:-1], root)
        if size > 1:
            other = (index + 1) % size
            with pytest.raises(TransparencyError):
                verify_inclusion(other, size, leaves[index], proof, root)
        # (A proof may fit another tree size of the same shape: what binds the size is the
        # checkpoint, whose size the entry's must equal; tests/unit/tlog/test_verify.py.)


def test_out_of_range_and_malformed_proofs() -> None:
    with pytest.raises(TransparencyError, match="outside a tree"):
        verify_inclusion(3, 3, LEAVES[0], [], LEAVES[0])
    with pytest.raises(TransparencyError, match="not 32"):
        verify_inclusion(0, 2, LEAVES[0], [b"short"], LEAVES[0])
    with pytest.raises(TransparencyError, match="more than 64"):
        verify_inclusion(0, 2, LEAVES[0], [LEAVES[0]] * 65, LEAVES[0])


@pytest.mark.parametrize("size2", range(1, 12))
def test_every_consistency_proof_verifies_and_tampering_fails(size2: int) -> None:
    leaves = LEAVES[:size2]
    root2 = mth(leaves)
    for size1 in range(0, size2 + 1):
        root1 = mth(leaves[:size1])
        proof = consistency_proof(size1, leaves)
        verify_consistency(size1, size2, proof, root1, root2)
        if 0 < size1 < size2:
            with pytest.raises(TransparencyError):
                verify_consistency(size1, size2, proof, _flip(root1), root2)
            with pytest.raises(TransparencyError):
                verify_consistency(size1, size2, proof, root1, _flip(root2))
            for position in range(len(proof)):
                bad = [*proof]
                bad[position] = _flip(bad[position])
                with pytest.raises(TransparencyError):
                    verify_consistency(size1, size2, bad, root1, root2)
            with pytest.raises(TransparencyError):
                verify_consistency(size1, size2, [], root1, root2)
    with pytest.raises(TransparencyError, match="shrank"):
        verify_consistency(size2, size2 - 1, [], root2, root2)
    with pytest.raises(TransparencyError, match="same size"):
        verify_consistency(size2, size2, [], root2, _flip(root2))


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8, 9, 31, 32, 33])
def test_the_compact_range_gives_the_root(size: int) -> None:
    tree = CompactRange()
    for leaf in LEAVES[:size]:
        tree = tree.append(leaf)
    assert tree.size == size and len(tree.hashes) == bin(size).count("1")
    assert tree.root() == mth(LEAVES[:size])


def test_a_compact_range_that_cannot_be_is_refused() -> None:
    with pytest.raises(TransparencyError, match="cannot describe"):
        CompactRange(3, (LEAVES[0],))
    with pytest.raises(TransparencyError, match="not 32"):
        CompactRange(1, (b"short",))
