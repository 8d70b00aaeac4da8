"""Fetching a tiled log's files over HTTP (c2sp.org/tlog-tiles): the checkpoint and entry bundles.

Everything read is bounded (a checkpoint note, a bundle of 256 entries) and nothing read is
trusted here: the monitor verifies the checkpoint under the log's key and recomputes its root
from the entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import requests

from opk_sign.errors import NetworkError, TransparencyError
from opk_sign.http import new_session, read_within
from opk_sign.tlog.merkle import CompactRange, root_of
from opk_sign.tlog.note import MAX_NOTE_BYTES
from opk_sign.tlog.tiles import (
    MAX_BUNDLE_BYTES,
    TILE_WIDTH,
    BundleSpan,
    hash_tile_path,
    parse_entry_bundle,
    parse_hash_tile,
    right_edge,
    spans,
)
from opk_sign.urls import require_secure_url

_HINT: Final = "check --log-url: the base URL of the log's tiles (where `checkpoint` is)"


class TilesReader:
    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        require_secure_url(base_url, "the log's tiles URL")
        self.base_url = base_url.rstrip("/")
        self._session = session or new_session()
        self._own = session is None
        #: Requests made (for the benchmark and --verbose).
        self.requests = 0

    def close(self) -> None:
        if self._own:
            self._session.close()

    def __enter__(self) -> TilesReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, limit: int) -> bytes | None:
        url = f"{self.base_url}/{path}"
        self.requests += 1
        try:
            with self._session.get(url, timeout=(10, 60), stream=True) as response:
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise NetworkError(f"{url}: HTTP {response.status_code}", hint=_HINT)
                return read_within(
                    response, limit, lambda: TransparencyError(f"{url}: larger than {limit} bytes")
                )
        except requests.RequestException as err:
            raise NetworkError(f"could not read {url}: {err}", hint=_HINT) from None

    def checkpoint(self) -> bytes:
        data = self._get("checkpoint", MAX_NOTE_BYTES)
        if data is None:
            raise NetworkError(f"{self.base_url}/checkpoint: not found", hint=_HINT)
        return data

    def _bundle(self, span: BundleSpan) -> list[bytes]:
        data = self._get(span.path, MAX_BUNDLE_BYTES)
        if data is not None:
            return parse_entry_bundle(data, span.width)
        if span.width < TILE_WIDTH:  # the partial may be gone once the bundle filled up
            full = BundleSpan(span.index, TILE_WIDTH, span.first, span.last)
            data = self._get(full.path, MAX_BUNDLE_BYTES)
            if data is not None:
                return parse_entry_bundle(data, TILE_WIDTH)[: span.width]
        raise TransparencyError(f"{self.base_url}/{span.path}: the log does not serve it")

    def _hash_tile(self, level: int, index: int, width: int) -> list[bytes]:
        data = self._get(hash_tile_path(level, index, width), 32 * TILE_WIDTH)
        if data is not None:
            return parse_hash_tile(data, width)
        if width < TILE_WIDTH:
            data = self._get(hash_tile_path(level, index, TILE_WIDTH), 32 * TILE_WIDTH)
            if data is not None:
                return parse_hash_tile(data, TILE_WIDTH)[:width]
        path = hash_tile_path(level, index, width)
        raise TransparencyError(f"{self.base_url}/{path}: the log does not serve it")

    def tree_edge(self, size: int) -> CompactRange:
        """The right edge of the tree of ``size`` entries, from the hash tiles (unverified: the
        caller compares its root with a signed checkpoint's)."""
        hashes = []
        for node in right_edge(size):
            tile = self._hash_tile(node.level, node.index, node.width)
            hashes.append(_perfect_root(tile[node.first : node.first + node.count]))
        return CompactRange(size, tuple(hashes))

    def entries(self, start: int, size: int) -> Iterator[tuple[int, bytes]]:
        """Entries ``[start, size)`` with their indexes, in order."""
        for span in spans(start, size):
            bundle = self._bundle(span)
            for offset in range(span.first, span.last):
                yield span.index * TILE_WIDTH + offset, bundle[offset]


def _perfect_root(hashes: list[bytes]) -> bytes:
    """The root of a perfect subtree over these (already hashed) nodes."""
    if len(hashes) & (len(hashes) - 1) or not hashes:
        raise TransparencyError("hash tile: a right-edge subtree is not a power of two wide")
    return root_of(hashes) if len(hashes) > 1 else hashes[0]
