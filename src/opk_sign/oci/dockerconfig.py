"""Credentials from the docker config, as the docker CLI finds them.

The file is ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``. For a registry,
``credHelpers[registry]`` names a ``docker-credential-<helper>`` program, else ``credsStore``
names one for every registry; the program is run as ``docker-credential-<helper> get`` with the
server address on stdin. Without a helper (or when the helper has nothing for the registry) the
``auths`` entry is used: ``auth`` (base64 ``user:password``), ``username``/``password``,
``identitytoken`` (an OAuth2 refresh token) or ``registrytoken`` (a bearer token).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opk_sign.errors import FormatError, RegistryAuthError, UsageError
from opk_sign.jose import parse_json
from opk_sign.oci.credentials import Credential, registry_key
from opk_sign.oci.reference import DOCKER_HUB

#: The key docker files Docker Hub credentials under, and the address it gives helpers.
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
HELPER_PREFIX = "docker-credential-"
HELPER_TIMEOUT = 30.0
#: What a helper prints for a registry it has nothing for.
_NOT_FOUND = "credentials not found"
#: A helper's name: docker's are like ``desktop``, ``ecr-login``, ``gcloud``. No path separator,
#: so a config can only name a program on PATH, never one in the working directory.
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"])
    return Path(env.get("HOME") or Path.home()) / ".docker"


@dataclass(frozen=True)
class DockerConfig:
    path: Path | None = None
    auths: Mapping[str, Credential] = field(default_factory=dict)
    cred_helpers: Mapping[str, str] = field(default_factory=dict)
    creds_store: str | None = None
    #: PATH searched for ``docker-credential-*`` programs (None: the process's PATH).
    helper_path: str | None = None

    @classmethod
    def load(
        cls, directory: Path | None = None, *, environ: Mapping[str, str] | None = None
    ) -> DockerConfig:
        """The docker config of this user; a missing file is an empty config."""
        env = os.environ if environ is None else environ
        path = (directory or config_dir(env)) / "config.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls(path=None, helper_path=env.get("PATH"))
        except OSError as err:
            raise UsageError(f"cannot read docker config {path}: {err}") from None
        return cls.parse(data, path=path, helper_path=env.get("PATH"))

    @classmethod
    def parse(
        cls, data: bytes, *, path: Path | None = None, helper_path: str | None = None
    ) -> DockerConfig:
        where = str(path) if path else "docker config"
        try:
            doc = parse_json(data, where) if data.strip() else {}
        except FormatError as err:
            raise UsageError(f"{where} is not valid JSON: {err.message}") from None
        if not isinstance(doc, dict):
            raise UsageError(f"{where} is not a JSON object")
        auths: dict[str, Credential] = {}
        for server, entry in _object(doc, "auths", where).items():
            credential = _auth_entry(server, entry, where)
            if credential is not None:
                auths[registry_key(server)] = credential
        helpers = {
            registry_key(server): _helper(name, f"credHelpers[{server!r}]", where)
            for server, name in _object(doc, "credHelpers", where).items()
        }
        store = doc.get("credsStore")
        if store is not None:
            store = _helper(store, "credsStore", where) or None
        return cls(path, auths, helpers, store, helper_path)

    def credential_for(self, registry: str) -> Credential | None:
        key = registry_key(registry)
        helper = self.cred_helpers.get(key) or self.creds_store
        if helper:
            found = self._from_helper(helper, key)
            if found is not None:
                return found
        return self.auths.get(key)

    def _from_helper(self, helper: str, registry: str) -> Credential | None:
        import shutil  # only where a credential helper is named: bz2 and lzma come with it

        program = shutil.which(HELPER_PREFIX + helper, path=_absolute_dirs(self.helper_path))
        source = f"{HELPER_PREFIX}{helper} (docker config {self.path})"
        if program is None:
            raise RegistryAuthError(
                f"the docker config names credential helper {HELPER_PREFIX}{helper}, "
                "which is not installed",
                hint=f"install it, or remove it from {self.path} (credHelpers/credsStore)",
            )
        server = DOCKER_HUB_SERVER if registry == DOCKER_HUB else registry
        try:
            result = subprocess.run(
                [program, "get"],
                input=server.encode(),
                capture_output=True,
                timeout=HELPER_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise RegistryAuthError(f"credential helper {source} failed: {err}") from None
        output = result.stdout.decode(errors="replace").strip()
        if result.returncode != 0:
            message = output or result.stderr.decode(errors="replace").strip()
            if _NOT_FOUND in message.lower():
                return None
            raise RegistryAuthError(
                f"credential helper {source} failed for {registry}: {message[:200]}"
            )
        try:
            answer = parse_json(output, "credential helper answer")
            username, secret = answer["Username"], answer["Secret"]
        except (FormatError, KeyError, TypeError):
            raise RegistryAuthError(
                f"credential helper {source} gave an unreadable answer for {registry}"
            ) from None
        if not isinstance(username, str) or not isinstance(secret, str) or not secret:
            return None
        if username == "<token>":  # docker's convention for an identity (refresh) token
            return Credential(identity_token=secret, source=source)
        return Credential(username=username, password=secret, source=source)


def _helper(value: Any, what: str, where: str) -> str:
    name = _string(value, what, where)
    if name and not _HELPER_NAME.fullmatch(name):
        raise UsageError(
            f"{where}: {what} names credential helper {name!r}, which is not a program name",
            hint=f"a helper is named like 'desktop' (the program {HELPER_PREFIX}desktop on PATH)",
        )
    return name


def _absolute_dirs(path: str | None) -> str:
    """PATH without relative entries ('' and '.' mean the working directory)."""
    entries = (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep)
    return os.pathsep.join(entry for entry in entries if os.path.isabs(entry))


def _object(doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: {key} must be an object")
    return value


def _string(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{where}: {what} must be a string")
    return value


def _auth_entry(server: str, entry: Any, where: str) -> Credential | None:
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: auths[{server!r}] must be an object")
    source = f"docker config {where} (auths)"
    username = entry.get("username") or None
    password = entry.get("password") or None
    encoded = entry.get("auth")
    if encoded:
        try:
            decoded = base64.b64decode(_string(encoded, "auth", where), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise UsageError(f"{where}: auths[{server!r}].auth is not base64") from None
        if ":" not in decoded:
            raise UsageError(f"{where}: auths[{server!r}].auth must encode user:password")
        username, password = decoded.split(":", 1)
    identity = entry.get("identitytoken") or None
    registry_token = entry.get("registrytoken") or None
    credential = Credential(
        username=username,
        password=password,
        identity_token=identity,
        registry_token=registry_token,
        source=source,
    )
    return None if credential.anonymous else credential
