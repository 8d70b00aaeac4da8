"""OIDC: getting the job's ID token, discovering an issuer's keys, checking an ID token.

Names are loaded on first use (issue 13, start-up): the token client and discovery need
requests, the ID token check PyJWT, and naming the package must not cost them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from opk_sign.issuer import GITHUB_ISSUER

#: Each name and the module that defines it.
_EXPORTS: dict[str, str] = {
    "GitHubActionsProvider": "opk_sign.oidc.github",
    "request_github_id_token": "opk_sign.oidc.github",
    "JWKSCache": "opk_sign.oidc.discovery",
    "fetch_jwks": "opk_sign.oidc.discovery",
    "verify_id_token": "opk_sign.oidc.idtoken",
    "TokenProvider": "opk_sign.oidc.provider",
}

__all__ = [
    "GITHUB_ISSUER",
    "GitHubActionsProvider",
    "JWKSCache",
    "TokenProvider",
    "fetch_jwks",
    "request_github_id_token",
    "verify_id_token",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'opk_sign.oidc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from opk_sign.oidc.discovery import JWKSCache, fetch_jwks
    from opk_sign.oidc.github import GitHubActionsProvider, request_github_id_token
    from opk_sign.oidc.idtoken import verify_id_token
    from opk_sign.oidc.provider import TokenProvider
