"""Registry credentials: what one is, where it is filed (``registry_key``), and the explicit
credentials given for one registry. :mod:`opk_sign.oci.keychain` finds them in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from opk_sign.oci.reference import DOCKER_HUB

_DOCKER_HUB_ALIASES = frozenset(
    {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)


def registry_key(registry: str) -> str:
    """The host a credential is filed under: no scheme or path, lowercase, docker.io for the Hub."""
    host = registry.strip()
    for prefix in ("https://", "http://"):
        if host.lower().startswith(prefix):
            host = host[len(prefix) :]
    host = host.split("/", 1)[0].lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


@dataclass(frozen=True, repr=False)
class Credential:
    """One registry credential. ``source`` says where it came from (for messages, never secret)."""

    username: str | None = None
    password: str | None = None
    #: An OAuth2 refresh token (docker config ``identitytoken``), exchanged at the token server.
    identity_token: str | None = None
    #: A bearer token sent to the registry as is (docker config ``registrytoken``).
    registry_token: str | None = None
    source: str = "anonymous"

    @property
    def anonymous(self) -> bool:
        return not (self.password or self.identity_token or self.registry_token)

    def __repr__(self) -> str:
        secret = "none" if self.anonymous else "***"
        return f"Credential(username={self.username!r}, secret={secret}, source={self.source!r})"


ANONYMOUS = Credential()


class CredentialSource(Protocol):
    def credential_for(self, registry: str) -> Credential | None:
        """The credential for ``registry`` (a host as ``registry_key`` gives it), or None."""
        ...


class ExplicitCredentials:
    """Credentials given on purpose, each bound to the one registry it is for."""

    def __init__(self, credentials: Mapping[str, Credential]) -> None:
        self._credentials = {registry_key(k): v for k, v in credentials.items()}

    @classmethod
    def for_registry(
        cls,
        registry: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        source: str = "explicit credentials",
    ) -> ExplicitCredentials:
        """Username and password, or a token (e.g. ``GITHUB_TOKEN`` for ghcr.io).

        A token is used as the password of a basic or token-server login, which is what ghcr.io,
        Docker Hub (personal access tokens), GAR and ACR expect; its username defaults to
        ``opk-sign`` where the registry ignores it.
        """
        secret = token if token is not None else password
        if not secret:
            return cls({})
        name = username or ("opk-sign" if token is not None else None)
        return cls({registry: Credential(username=name, password=secret, source=source)})

    def credential_for(self, registry: str) -> Credential | None:
        return self._credentials.get(registry_key(registry))
