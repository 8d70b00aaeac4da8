"""Shared pieces for tests of the GitHub OIDC emulator and the OIDC client.

RSA-2048 key generation costs ~50-100 ms, so the OP keys are made once per test session.
"""

from __future__ import annotations

from functools import cache

from opk_sign.dev.github_oidc import OPSigningKey


@cache
def generated_op_key(index: int = 0) -> OPSigningKey:
    """The index-th OP signing key of this test session (distinct keys for rotation tests)."""
    return OPSigningKey.generate()
