"""The verified-digest cache (issue 15): what it holds is bound to the digest, the name, the
policy and the trust version; it is bounded, expires, and is refused when others could write it.
Each test changes one of those and sees the entry not used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opk_sign.admission.cache import ENTRIES_DIR, Entry, VerifiedCache, cache_key
from opk_sign.errors import TrustError

DIGEST = "sha256:" + "ab" * 32
BASE = {"digest": DIGEST, "name": "ghcr.io/o/app", "policy": "team\nsha", "trust_version": "1"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def key(**changes: str) -> str:
    return cache_key(**{**BASE, **changes})


@pytest.mark.parametrize(
    "change",
    [
        {"digest": "sha256:" + "cd" * 32},
        {"name": "ghcr.io/o/other"},
        {"policy": "team\nother-sha"},
        {"trust_version": "2"},
    ],
)
def test_every_part_of_the_key_counts(tmp_path: Path, change: dict[str, str]) -> None:
    cache = VerifiedCache(tmp_path / "c")
    cache.put(key(), "ghcr.io/o/app@" + DIGEST)
    assert cache.get(key()) is not None
    assert cache.get(key(**change)) is None
    # Nor from disk, in another process (a fresh cache object).
    assert VerifiedCache(tmp_path / "c").get(key(**change)) is None
    assert VerifiedCache(tmp_path / "c").get(key()) is not None


def test_entries_expire(tmp_path: Path) -> None:
    clock = Clock()
    cache = VerifiedCache(tmp_path / "c", ttl=60, clock=clock)
    cache.put(key(), "x")
    clock.now += 59
    assert cache.get(key()) is not None
    clock.now += 2
    assert cache.get(key()) is None
    assert VerifiedCache(tmp_path / "c", ttl=60, clock=clock).get(key()) is None


def test_an_entry_from_the_future_is_not_used(tmp_path: Path) -> None:
    clock = Clock()
    VerifiedCache(tmp_path / "c", clock=clock).put(key(), "x")
    clock.now -= 3600  # the clock went back: "verified" later than now is not evidence
    assert VerifiedCache(tmp_path / "c", clock=clock).get(key()) is None


def test_a_file_under_another_key_is_not_used(tmp_path: Path) -> None:
    cache = VerifiedCache(tmp_path / "c")
    cache.put(key(trust_version="2"), "x")
    entries = tmp_path / "c" / ENTRIES_DIR
    # Copied to the name of another verification: its content names its own key.
    (entries / f"{key()}.json").write_bytes(
        (entries / f"{key(trust_version='2')}.json").read_bytes()
    )
    os.chmod(entries / f"{key()}.json", 0o600)
    assert VerifiedCache(tmp_path / "c").get(key()) is None


def test_damaged_and_oversized_entries_are_misses(tmp_path: Path) -> None:
    VerifiedCache(tmp_path / "c")
    path = tmp_path / "c" / ENTRIES_DIR / f"{key()}.json"
    for data in (b"{", b"[]", b'{"key": 1}', b" " * (16 * 1024 + 1)):
        path.write_bytes(data)
        os.chmod(path, 0o600)
        assert VerifiedCache(tmp_path / "c").get(key()) is None


def test_bounded_in_memory_and_on_disk(tmp_path: Path) -> None:
    clock = Clock()
    cache = VerifiedCache(tmp_path / "c", max_entries=3, clock=clock)
    for i in range(5):
        clock.now += 1
        cache.put(key(digest=f"sha256:{i:064x}"), "x")
        os.utime(
            tmp_path / "c" / ENTRIES_DIR / f"{key(digest=f'sha256:{i:064x}')}.json",
            (clock.now, clock.now),
        )
    assert len(cache) == 3
    files = list((tmp_path / "c" / ENTRIES_DIR).glob("*.json"))
    assert len(files) == 3
    fresh = VerifiedCache(tmp_path / "c", clock=clock)
    assert fresh.get(key(digest=f"sha256:{0:064x}")) is None  # the oldest went first
    assert fresh.get(key(digest=f"sha256:{4:064x}")) is not None


def test_a_cache_others_could_write_is_refused(tmp_path: Path) -> None:
    VerifiedCache(tmp_path / "c")
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    os.chmod(tmp_path / "c" / ENTRIES_DIR, 0o777)
    with pytest.raises(TrustError, match="another user could write"):
        VerifiedCache(tmp_path / "c")
    os.chmod(tmp_path / "c" / ENTRIES_DIR, 0o700)
    cache = VerifiedCache(tmp_path / "c")
    cache.put(key(), "x")
    os.chmod(tmp_path / "c" / ENTRIES_DIR / f"{key()}.json", 0o666)
    with pytest.raises(TrustError, match="another user could write"):
        VerifiedCache(tmp_path / "c").get(key())


def test_memory_only(tmp_path: Path) -> None:
    cache = VerifiedCache(None)
    cache.put(key(), "x", {"repository": "o/app"})
    entry = cache.get(key())
    assert isinstance(entry, Entry) and entry.identity == {"repository": "o/app"}


def test_missing_parent_directories_are_made(tmp_path: Path) -> None:
    cache = VerifiedCache(tmp_path / "var" / "lib" / "opk-sign" / "cache")
    cache.put(key(), "x")
    assert (tmp_path / "var" / "lib" / "opk-sign" / "cache").stat().st_mode & 0o777 == 0o700
