"""Shared pieces for tests of the GitHub OIDC emulator and the OIDC client.

RSA-2048 key generation costs ~50-100 ms, so the OP keys are made once per test session.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from opk_sign._dev.github_oidc import GitHubOIDCEmulator, OPSigningKey


@cache
def generated_op_key(index: int = 0) -> OPSigningKey:
    """The index-th OP signing key of this test session (distinct keys for rotation tests)."""
    return OPSigningKey.generate()


class CountingEmulator(GitHubOIDCEmulator):
    """The GitHub OIDC emulator, recording the path of every request it answers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._count_lock = threading.Lock()
        self._paths: list[str] = []

    def handle(self, method: str, target: str, authorization: str | None) -> Any:
        with self._count_lock:
            self._paths.append(f"{method} {urlsplit(target).path}")
        return super().handle(method, target, authorization)

    def reset_counts(self) -> None:
        with self._count_lock:
            self._paths.clear()

    @property
    def requests(self) -> list[str]:
        with self._count_lock:
            return list(self._paths)
