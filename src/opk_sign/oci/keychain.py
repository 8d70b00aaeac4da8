"""The keychain: each registry's credential, looked up once per run in its sources.

Order, first match wins (docs/registry.md, "Credentials"):
  1. explicit credentials given for that registry (options, environment, the action's token);
  2. the docker config: ``credHelpers[registry]``, else ``credsStore``, else ``auths[registry]``;
  3. anonymous.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opk_sign.oci.credentials import (
    ANONYMOUS,
    Credential,
    CredentialSource,
    ExplicitCredentials,
    registry_key,
)
from opk_sign.oci.dockerconfig import DockerConfig


class Keychain:
    """Looks each registry up once per run in its sources, in order; thread safe."""

    def __init__(self, sources: Sequence[CredentialSource] = ()) -> None:
        self._sources = tuple(sources)
        self._cache: dict[str, Credential] = {}
        self._lock = threading.Lock()

    @classmethod
    def anonymous(cls) -> Keychain:
        return cls(())

    @property
    def sources(self) -> tuple[CredentialSource, ...]:
        """Where credentials are looked up, in order (a worker process rebuilds the keychain
        from them)."""
        return self._sources

    @classmethod
    def default(
        cls,
        explicit: ExplicitCredentials | None = None,
        *,
        docker_config: CredentialSource | None = None,
    ) -> Keychain:
        """Explicit credentials, then the docker config (``$DOCKER_CONFIG`` or ``~/.docker``)."""
        sources: list[CredentialSource] = []
        if explicit is not None:
            sources.append(explicit)
        sources.append(docker_config if docker_config is not None else DockerConfig.load())
        return cls(sources)

    def get(self, registry: str) -> Credential:
        key = registry_key(registry)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            found = next(
                (c for c in (s.credential_for(key) for s in self._sources) if c is not None),
                ANONYMOUS,
            )
            self._cache[key] = found
            return found
