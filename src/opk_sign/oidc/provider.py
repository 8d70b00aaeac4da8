"""Where ID tokens come from: one small interface, so other CI token sources can be added."""

from __future__ import annotations

from typing import Protocol


class TokenProvider(Protocol):
    """A source of OIDC ID tokens for the running job."""

    @property
    def issuer_hint(self) -> str:
        """The issuer its tokens are expected to carry (the token's own ``iss`` decides)."""
        ...

    def id_token(self, audience: str) -> str:
        """A fresh ID token whose ``aud`` is exactly ``audience``; raises TokenRequestError."""
        ...
