"""The verifier's settings: the TOML file ``opk-sign install containerd-verifier`` writes
(containerd passes its verifiers no flags), and the same values for ``opk-sign serve``.

Read strictly: unknown keys, wrong types and values out of range are errors naming the key, so a
typo (``unmaped = "deny"``) never leaves a node quietly allowing what it meant to refuse. Pure:
the standard library and :mod:`opk_sign.errors`.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from opk_sign.errors import UsageError

#: The name of the settings file, written next to the verifier's executable by ``install``.
SETTINGS_FILE: Final = "opk-sign-containerd-verifier.toml"
#: A settings file is a few lines; reading one costs at most this.
MAX_SETTINGS_BYTES: Final = 64 * 1024
#: containerd's default per-verifier timeout (``per_verifier_timeout``), seconds.
CONTAINERD_TIMEOUT: Final = 10.0

UNMAPPED_CHOICES: Final = ("allow", "deny")

# The service's limits (``opk-sign serve``), here so that its --help loads no server module.
SERVICE_MAX_BODY: Final = 1 << 20
SERVICE_MAX_CONCURRENCY: Final = 16
SERVICE_REQUEST_TIMEOUT: Final = 8.0
SERVICE_JOBS: Final = 16


@dataclass(frozen=True)
class Settings:
    """What a verifier decides with. Every duration is in seconds."""

    #: The trust directory (``opk-sign trust init``); ``$OPK_SIGN_TRUST_DIR`` overrides it.
    trust_dir: Path | None = None
    #: Names the trust repository's mapping does not cover: allowed, or refused.
    unmapped: str = "allow"
    #: A docker config file (``config.json``) with the node's registry credentials; None: the
    #: docker config of the user the verifier runs as (``$DOCKER_CONFIG``, ``~/.docker``).
    registry_credentials: Path | None = None
    #: JSON lines, one per decision, for audit; None: none written.
    audit_log: Path | None = None
    #: The verified-digest cache and the trust state; None: no cache (every pull verifies).
    cache_dir: Path | None = None
    cache_entries: int = 1024
    #: How long a verified digest stays verified without asking the registry again.
    cache_ttl: float = 3600.0
    #: The whole decision, start to answer; below containerd's 10 s so the answer is ours.
    timeout: float = 8.0
    #: Refreshing the trust data online; past it, the cached trust data decides.
    trust_timeout: float = 3.0
    #: Trust data younger than this is used from the cache without asking the repository.
    refresh_interval: float = 300.0
    #: Registries reached over plain HTTP besides loopback (exactly as named).
    insecure_registries: tuple[str, ...] = ()
    #: The OIDC issuer verified against (default: GitHub Actions').
    issuer: str | None = None
    #: Where the settings were read from (for messages).
    source: str = field(default="defaults", compare=False)

    def __post_init__(self) -> None:
        if self.unmapped not in UNMAPPED_CHOICES:
            raise UsageError(
                f'{self.source}: unmapped = {self.unmapped!r}: expected "allow" or "deny"'
            )
        for name in ("cache_ttl", "timeout", "trust_timeout", "refresh_interval"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise UsageError(f"{self.source}: {_key(name)} must be a positive number")
        if self.timeout >= CONTAINERD_TIMEOUT:
            # Past containerd's own timeout the verifier is killed and the pull fails with
            # containerd's message, not ours: the answer must come first.
            raise UsageError(
                f"{self.source}: timeout = {self.timeout:g} is not below containerd's "
                f"{CONTAINERD_TIMEOUT:g} s per verifier",
                hint="raise per_verifier_timeout in containerd's config first, and keep timeout "
                "below it",
            )
        if self.trust_timeout >= self.timeout:
            raise UsageError(f"{self.source}: trust-timeout must be below timeout")
        if not 1 <= self.cache_entries <= 1_000_000:
            raise UsageError(f"{self.source}: cache-entries must be 1 to 1000000")

    def to_toml(self) -> str:
        """The settings as the file ``install`` writes (every key, commented)."""
        lines = [
            "# opk-sign containerd image verifier (docs/containerd.md); written by",
            "# `opk-sign install containerd-verifier`. Unknown keys are refused.",
        ]
        for item in fields(self):
            if item.name == "source":
                continue
            value = getattr(self, item.name)
            key = _key(item.name)
            if value is None:
                lines.append(f"# {key} = (unset)")
            elif isinstance(value, Path):
                lines.append(f"{key} = {_toml_string(str(value))}")
            elif isinstance(value, tuple):
                lines.append(f"{key} = [{', '.join(_toml_string(v) for v in value)}]")
            elif isinstance(value, str):
                lines.append(f"{key} = {_toml_string(value)}")
            else:
                lines.append(
                    f"{key} = {value:g}" if isinstance(value, float) else f"{key} = {value}"
                )
        return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    return name.replace("_", "-")


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(c) < 0x20 or c == "\x7f" for c in escaped):
        raise UsageError(f"{text!r}: control characters cannot be written to the settings")
    return f'"{escaped}"'


_PATHS: Final = ("trust_dir", "registry_credentials", "audit_log", "cache_dir")
_NUMBERS: Final = ("cache_ttl", "timeout", "trust_timeout", "refresh_interval")


def parse_settings(data: bytes, source: str) -> Settings:
    """Settings from the TOML bytes of a settings file; UsageError naming the key otherwise.
    Relative paths are refused: containerd runs the verifier from its own working directory."""
    if len(data) > MAX_SETTINGS_BYTES:
        raise UsageError(f"{source} is larger than {MAX_SETTINGS_BYTES} bytes")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{source} is not UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{source} is not valid TOML: {err}") from None
    return settings_from_dict(document, source)


def settings_from_dict(document: Mapping[str, Any], source: str) -> Settings:
    known = {_key(f.name): f.name for f in fields(Settings) if f.name != "source"}
    values: dict[str, Any] = {"source": source}
    for key, value in document.items():
        name = known.get(key)
        if name is None:
            raise UsageError(
                f"{source}: unknown key {key!r}", hint=f"known keys: {', '.join(sorted(known))}"
            )
        values[name] = _value(name, value, source)
    return Settings(**values)


def _value(name: str, value: Any, source: str) -> Any:
    key = _key(name)
    if name in _PATHS:
        if not isinstance(value, str) or not value:
            raise UsageError(f"{source}: {key} must be a path")
        path = Path(value)
        if not path.is_absolute():
            raise UsageError(f"{source}: {key} = {value!r} must be an absolute path")
        return path
    if name in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"{source}: {key} must be a number of seconds")
        return float(value)
    if name == "cache_entries":
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{source}: {key} must be a whole number")
        return value
    if name == "insecure_registries":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise UsageError(f"{source}: {key} must be a list of HOST[:PORT] strings")
        return tuple(value)
    if not isinstance(value, str):
        raise UsageError(f"{source}: {key} must be a string")
    return value
