"""Reading a log as C2SP tlog-tiles (c2sp.org/tlog-tiles): where entries are, and their format.

A tiled log publishes ``checkpoint`` and, for the entries, entry bundles of 256 entries at
``tile/entries/<N>`` (``<N>`` in 3-digit groups, all but the last prefixed ``x``: 1234067 is
``x001/x234/067``); the rightmost bundle of a tree whose size is not a multiple of 256 is the
partial ``tile/entries/<N>.p/<W>`` holding W entries. Each entry in a bundle is a big-endian
16-bit length and that many bytes (Rekor v2: the canonicalized body). Pure logic, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from opk_sign.errors import FormatError

TILE_WIDTH: Final = 256
#: A full bundle of 256 Rekor entries of a few KiB each.
MAX_BUNDLE_BYTES: Final = TILE_WIDTH * (2 + 0xFFFF)


def encode_index(index: int) -> str:
    if index < 0:
        raise ValueError("tile index must not be negative")
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


@dataclass(frozen=True)
class BundleSpan:
    """Entries ``[first, last)`` of entry bundle ``index``, which holds ``width`` entries."""

    index: int
    width: int
    first: int
    last: int

    @property
    def path(self) -> str:
        partial = f".p/{self.width}" if self.width < TILE_WIDTH else ""
        return f"tile/entries/{encode_index(self.index)}{partial}"


def spans(start: int, size: int) -> Iterator[BundleSpan]:
    """The entry bundles to read for entries ``[start, size)`` of a tree of ``size`` entries."""
    if not 0 <= start <= size:
        raise ValueError(f"cannot read entries {start} to {size}")
    position = start
    while position < size:
        index = position // TILE_WIDTH
        width = min(TILE_WIDTH, size - index * TILE_WIDTH)
        first = position - index * TILE_WIDTH
        yield BundleSpan(index, width, first, width)
        position = index * TILE_WIDTH + width


def hash_tile_path(level: int, index: int, width: int) -> str:
    """``tile/<L>/<N>[.p/<W>]``: the hashes of level ``8 L`` nodes ``256 N`` to ``256 N + W``."""
    partial = f".p/{width}" if width < TILE_WIDTH else ""
    return f"tile/{level}/{encode_index(index)}{partial}"


@dataclass(frozen=True)
class EdgeNode:
    """Where the root of one of a tree's right-edge perfect subtrees is found: ``count`` hashes
    from ``first`` in hash tile (``level``, ``index``, ``width``), hashed together."""

    level: int
    index: int
    width: int
    first: int
    count: int


def right_edge(size: int) -> list[EdgeNode]:
    """The tiles holding the right edge of a tree of ``size`` entries (largest subtree first):
    a subtree of height ``h = 8 t + r`` is the root of ``2^r`` hashes of tile level ``t``."""
    nodes = []
    position = 0
    for height in range(size.bit_length() - 1, -1, -1):
        if not size >> height & 1:
            continue
        level, rest = divmod(height, 8)
        start = position >> (8 * level)  # first tile-level node under this subtree
        index = start // TILE_WIDTH
        width = min(TILE_WIDTH, (size >> (8 * level)) - index * TILE_WIDTH)
        nodes.append(EdgeNode(level, index, width, start % TILE_WIDTH, 1 << rest))
        position += 1 << height
    return nodes


def parse_hash_tile(data: bytes, width: int) -> list[bytes]:
    if len(data) != 32 * width:
        raise FormatError(f"hash tile: {len(data)} bytes, expected {32 * width}")
    return [data[i : i + 32] for i in range(0, len(data), 32)]


def parse_entry_bundle(data: bytes, width: int) -> list[bytes]:
    """The ``width`` entries of an entry bundle (the whole file must be exactly them)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise FormatError(f"entry bundle: larger than {MAX_BUNDLE_BYTES} bytes")
    entries = []
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise FormatError("entry bundle: truncated length")
        length = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
        if offset + length > len(data):
            raise FormatError("entry bundle: truncated entry")
        entries.append(data[offset : offset + length])
        offset += length
    if len(entries) != width:
        raise FormatError(f"entry bundle: {len(entries)} entries, expected {width}")
    return entries
