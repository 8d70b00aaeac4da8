"""A JWKS file as the OP's keys, for offline verification (the live JWKS is
:class:`opk_sign.oidc.discovery.JWKSCache`)."""

from __future__ import annotations

from pathlib import Path

from opk_sign.errors import FormatError, TrustError, UsageError
from opk_sign.jose import parse_json
from opk_sign.pktoken.verify import StaticJWKS

#: A JWKS file is a few KiB; anything far larger is not one.
MAX_JWKS_FILE_BYTES = 1 << 20


def jwks_from_file(path: Path, issuer: str) -> StaticJWKS:
    """A JWKS file (``{"keys": [...]}``, as the issuer's ``jwks_uri`` serves it) for ``issuer``."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_JWKS_FILE_BYTES + 1)
    except OSError as err:
        raise UsageError(f"cannot read the JWKS file {path}: {err.strerror}") from None
    if len(data) > MAX_JWKS_FILE_BYTES:
        raise TrustError(f"JWKS file {path} is larger than {MAX_JWKS_FILE_BYTES} bytes")
    try:
        doc = parse_json(data, "JWKS", max_bytes=MAX_JWKS_FILE_BYTES)
    except FormatError as err:
        raise TrustError(f"JWKS file {path} is not JSON we accept: {err.message}") from None
    if not isinstance(doc, dict):
        raise TrustError(f"JWKS file {path} must hold a JSON object with a 'keys' list")
    return StaticJWKS(issuer, doc)
