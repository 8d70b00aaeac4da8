"""Content digests (``sha256:<hex>``): computing, checking, and verifying received bytes."""

from __future__ import annotations

import hashlib
import re

from opk_sign.errors import RegistryError, UsageError

#: Algorithms we can verify, with the length of their hex encoding.
ALGORITHMS = {"sha256": 64, "sha512": 128}

_DIGEST = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def split_digest(digest: str) -> tuple[str, str]:
    """``(algorithm, hex)`` of a digest we can verify; anything else is refused with the reason."""
    match = _DIGEST.fullmatch(digest)  # fullmatch: `$` would let a final newline through
    if not match:
        raise UsageError(f"invalid digest {digest!r}: expected <algorithm>:<hex>")
    algorithm, encoded = match.groups()
    length = ALGORITHMS.get(algorithm)
    if length is None:
        raise UsageError(
            f"unsupported digest algorithm {algorithm!r} in {digest!r}",
            hint="supported: " + ", ".join(sorted(ALGORITHMS)),
        )
    if len(encoded) != length or not re.fullmatch(r"[0-9a-f]+", encoded):
        raise UsageError(
            f"invalid digest {digest!r}: {algorithm} needs {length} lowercase hex digits"
        )
    return algorithm, encoded


def is_digest(value: str) -> bool:
    try:
        split_digest(value)
    except UsageError:
        return False
    return True


def new_hasher(digest: str) -> hashlib._Hash:
    """A hash object for the algorithm ``digest`` names (for streamed content)."""
    algorithm, _ = split_digest(digest)
    return hashlib.new(algorithm)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify_digest(data: bytes, expected: str, what: str) -> None:
    """Content-addressed means checked: bytes that do not hash to ``expected`` are refused."""
    algorithm, _ = split_digest(expected)
    actual = digest_of(data, algorithm)
    if actual != expected:
        raise RegistryError(
            f"{what}: the registry returned content with digest {actual}, expected {expected}",
            hint="the registry or something between it and us altered the content",
        )
