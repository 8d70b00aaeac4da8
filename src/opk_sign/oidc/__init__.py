"""OIDC: getting the job's ID token, discovering an issuer's keys, checking an ID token.

Names are loaded on first use (issue 13, start-up): the token client and discovery need
requests, the ID token check PyJWT, and naming the package must not cost them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opk_sign._lazy import lazy_exports
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__, globals())


if TYPE_CHECKING:
    from opk_sign.oidc.discovery import JWKSCache, fetch_jwks
    from opk_sign.oidc.github import GitHubActionsProvider, request_github_id_token
    from opk_sign.oidc.idtoken import verify_id_token
    from opk_sign.oidc.provider import TokenProvider
