"""sign.batch's sharing of a batch with forked copies: when it forks, and what a copy that dies
before reporting leaves (each of its images unknown, 13)."""

from __future__ import annotations

import os

import pytest

from opk_sign.errors import EXIT_REGISTRY
from opk_sign.sign import batch

IMAGES = [f"r.example/app-{n}@sha256:{n:064x}" for n in range(40)]


def test_shares_round_robin_only_when_worth_it_and_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("threading.active_count", lambda: 1)
    shares = batch._shares(IMAGES, 2)
    assert shares == [IMAGES[0::2], IMAGES[1::2]]
    assert batch._shares(IMAGES[:31], 2) == [IMAGES[:31]]  # under 16 images per process
    assert batch._shares(IMAGES, 1) == [IMAGES]
    monkeypatch.setattr("threading.active_count", lambda: 3)
    assert batch._shares(IMAGES, 2) == [IMAGES]  # another thread: never fork


def test_a_copy_that_dies_before_reporting_leaves_its_images_unknown() -> None:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child dies without writing anything
        os._exit(3)
    os.close(write_fd)
    results = batch._Forked(pid, read_fd, IMAGES[:2]).results()
    assert [r.image for r in results] == IMAGES[:2]
    assert all(not r.signed and r.exit_code == EXIT_REGISTRY for r in results)
    assert results[0].error is not None and "unknown" in results[0].error.message
