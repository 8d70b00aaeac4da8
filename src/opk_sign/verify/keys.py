"""Where verification gets the OP's keys: the live JWKS (once per run), or a JWKS file."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from opk_sign.errors import TrustError, UsageError
from opk_sign.oidc.discovery import fetch_jwks
from opk_sign.pktoken.verify import StaticJWKS, select_key

#: A JWKS file is a few KiB; anything far larger is not one.
MAX_JWKS_FILE_BYTES = 1 << 20


class LiveJWKS:
    """Each issuer's live JWKS by OIDC discovery, fetched at most once per run, thread-safe.

    A failed fetch is remembered too: a batch of a thousand images asks an unreachable issuer
    once and reports the same trust error for each, instead of retrying a thousand times.
    """

    def __init__(self, session: requests.Session | None = None) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._jwks: dict[str, dict[str, Any] | TrustError] = {}
        self.fetches = 0

    def jwks(self, issuer: str) -> dict[str, Any]:
        with self._lock:
            if issuer not in self._jwks:
                self.fetches += 1
                try:
                    self._jwks[issuer] = fetch_jwks(issuer, self._session)
                except TrustError as err:
                    self._jwks[issuer] = err
            found = self._jwks[issuer]
        if isinstance(found, TrustError):
            raise TrustError(found.message, hint=found.hint)
        return found

    def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Mapping[str, Any]:
        keys: list[Mapping[str, Any]] = self.jwks(issuer)["keys"]
        return select_key(keys, issuer, kid)


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
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TrustError(f"JWKS file {path} is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise TrustError(f"JWKS file {path} must hold a JSON object with a 'keys' list")
    return StaticJWKS(issuer, doc)
