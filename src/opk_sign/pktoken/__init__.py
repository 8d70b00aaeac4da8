"""OpenPubkey PK tokens: CIC and commitment, the token itself, signed messages, verification.

Pure logic, byte-compatible with ``github.com/openpubkey/openpubkey`` v0.25.0+.
"""

from opk_sign.pktoken.cic import ClientInstanceClaims, UserKey, commitment, new_cic_header
from opk_sign.pktoken.osm import new_osm, verify_osm
from opk_sign.pktoken.token import PKToken, Signature
from opk_sign.pktoken.verify import (
    GITHUB_ISSUER,
    ExpiryPolicy,
    OPKeySource,
    StaticJWKS,
    VerifiedPKToken,
    verify_pktoken,
)

__all__ = [
    "GITHUB_ISSUER",
    "ClientInstanceClaims",
    "ExpiryPolicy",
    "OPKeySource",
    "PKToken",
    "Signature",
    "StaticJWKS",
    "UserKey",
    "VerifiedPKToken",
    "commitment",
    "new_cic_header",
    "new_osm",
    "verify_osm",
    "verify_pktoken",
]
