"""OIDC: getting the job's ID token, discovering an issuer's keys, checking an ID token."""

from opk_sign.oidc.discovery import JWKSCache, fetch_jwks
from opk_sign.oidc.github import GITHUB_ISSUER, GitHubActionsProvider, request_github_id_token
from opk_sign.oidc.idtoken import verify_id_token
from opk_sign.oidc.provider import TokenProvider

__all__ = [
    "GITHUB_ISSUER",
    "GitHubActionsProvider",
    "JWKSCache",
    "TokenProvider",
    "fetch_jwks",
    "request_github_id_token",
    "verify_id_token",
]
