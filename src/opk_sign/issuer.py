"""The OIDC issuer a run expects: GitHub Actions', unless ``$OPK_SIGN_OIDC_ISSUER`` names another
(GHES with its own issuer, or the local emulator).

Apart, and importing nothing, so that the command line can name the default in its help without
loading the signing and verification code.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

GITHUB_ISSUER: Final = "https://token.actions.githubusercontent.com"
#: The issuer to expect instead of GitHub's: GHES with its own issuer, or the local emulator.
ISSUER_VAR: Final = "OPK_SIGN_OIDC_ISSUER"


def default_issuer(environ: Mapping[str, str] | None = None) -> str:
    """``$OPK_SIGN_OIDC_ISSUER``, else GitHub Actions' issuer."""
    return (os.environ if environ is None else environ).get(ISSUER_VAR) or GITHUB_ISSUER
