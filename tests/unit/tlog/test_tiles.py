"""C2SP tlog-tiles paths and entry bundles."""

from __future__ import annotations

import pytest

from opk_sign.errors import FormatError
from opk_sign.tlog.tiles import (
    BundleSpan,
    encode_index,
    hash_tile_path,
    parse_entry_bundle,
    parse_hash_tile,
    right_edge,
    spans,
)


@pytest.mark.parametrize(
    ("index", "path"),
    [(0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067")],
)
def test_index_encoding(index: int, path: str) -> None:
    assert encode_index(index) == path


def test_spans_cover_a_range_with_partial_bundles() -> None:
    assert list(spans(0, 3)) == [BundleSpan(0, 3, 0, 3)]
    assert [s.path for s in spans(0, 3)] == ["tile/entries/000.p/3"]
    assert list(spans(250, 600)) == [
        BundleSpan(0, 256, 250, 256),
        BundleSpan(1, 256, 0, 256),
        BundleSpan(2, 88, 0, 88),
    ]
    assert [s.path for s in spans(256, 512)] == ["tile/entries/001"]
    assert list(spans(5, 5)) == []
    with pytest.raises(ValueError):
        list(spans(6, 5))


def test_entry_bundles() -> None:
    data = b"\x00\x01a\x00\x02bc\x00\x00"
    assert parse_entry_bundle(data, 3) == [b"a", b"bc", b""]
    for bad, error in (
        (data, "expected 2"),
        (b"\x00", "truncated length"),
        (b"\x00\x05ab", "truncated entry"),
    ):
        with pytest.raises(FormatError, match=error):
            parse_entry_bundle(bad, 2)


def test_the_right_edge_is_read_from_the_hash_tiles() -> None:
    # A tree of 256 * 256 + 256 * 3 + 5 entries: one subtree of height 16 (the root of tile
    # level 2's first node), one of height 9 and one of height 8 (level 1 nodes 256..258: 256
    # and 257 hashed together, then 258), and the leaves 4 and 1 of the last partial bundle.
    size = 256 * 256 + 256 * 3 + 5
    nodes = right_edge(size)
    assert [(n.level, n.index, n.width, n.first, n.count) for n in nodes] == [
        (2, 0, 1, 0, 1),
        (1, 1, 3, 0, 2),
        (1, 1, 3, 2, 1),
        (0, 259, 5, 0, 4),
        (0, 259, 5, 4, 1),
    ]
    assert hash_tile_path(1, 1, 3) == "tile/1/001.p/3"
    assert hash_tile_path(0, 1000, 256) == "tile/0/x001/000"
    assert parse_hash_tile(bytes(64), 2) == [bytes(32), bytes(32)]
    with pytest.raises(FormatError, match="expected 64"):
        parse_hash_tile(bytes(63), 2)
