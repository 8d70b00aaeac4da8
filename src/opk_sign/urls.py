"""Which URLs opk-sign talks to: HTTPS everywhere, plain HTTP only on loopback (tests and
emulators) and to registries the user names insecure (:class:`InsecureRegistries`). Pure logic,
shared by the HTTP clients and by reference parsing."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import urlsplit

from opk_sign.errors import UsageError
from opk_sign.names import ENV_INSECURE_REGISTRIES, INSECURE_REGISTRY_FLAG


def is_loopback_host(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8 or ::1 (with or without a port)."""
    host = host.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def require_secure_url(url: str, what: str) -> None:
    """HTTPS everywhere; plain HTTP only for loopback services (tests, emulators)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback_host(parts.hostname or ""):
        return
    raise UsageError(
        f"{what} must use https:// (got {url!r})",
        hint="plain http is allowed only for loopback addresses such as 127.0.0.1",
    )


# --- registries named insecure -------------------------------------------------------------------


_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY_HOST = re.compile(
    rf"^(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:.]+(?:%[a-zA-Z0-9]+)?\])"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)
_EXAMPLE = "e.g. 10.0.0.5:5000 or registry.internal"


def registry_host_key(host: str) -> str:
    """``host[:port]`` as compared: the host lowercased, the port as a number (``05000`` is
    ``5000``); no port stays no port, which is not any port (docker's insecure-registries)."""
    match = _REGISTRY_HOST.match(host.strip())
    if match is None:
        return host.strip().lower()
    port = match.group("port")
    return match.group("host").lower() + (f":{int(port)}" if port is not None else "")


def parse_registry_host(text: str, what: str) -> str:
    """The key (:func:`registry_host_key`) of one ``HOST[:PORT]`` naming a registry; a URL, a
    path, a range, an empty or any other value is a UsageError saying what to write instead."""
    value = text.strip()
    if not value:
        raise UsageError(
            f"{what}: an empty registry name",
            hint=f"name a registry as HOST[:PORT], {_EXAMPLE}; in ${ENV_INSECURE_REGISTRIES}, "
            "separate names with one comma or with spaces",
        )
    if "://" in value:
        raise UsageError(
            f"{what}: {text!r} is a URL, not a registry name",
            hint=f"drop the scheme and any path: HOST[:PORT], {_EXAMPLE} (naming it is what "
            "means plain HTTP)",
        )
    if "/" in value:
        raise UsageError(
            f"{what}: {text!r} has a path; name a registry only, as HOST[:PORT]",
            hint=f"{_EXAMPLE}; address ranges (CIDR) are not taken: name each registry",
        )
    match = _REGISTRY_HOST.match(value)
    if match is None:
        raise UsageError(
            f"{what}: {text!r} is not a registry name (HOST[:PORT])",
            hint=f"{_EXAMPLE}; no wildcards, no spaces",
        )
    port = match.group("port")
    if port is not None and not 0 < int(port) <= 65535:
        raise UsageError(f"{what}: {text!r}: the port must be 1-65535")
    return registry_host_key(value)


def url_host(url: str) -> str:
    """The ``host[:port]`` of a URL as written (no user info)."""
    return urlsplit(url).netloc.rpartition("@")[2]


@dataclass(frozen=True)
class InsecureRegistries:
    """The registries reached over plain HTTP although they are not on loopback.

    Exactly what is named, as docker's ``insecure-registries``: ``10.0.0.5:5000`` is that host on
    port 5000 only, and ``registry.internal`` that host without a port (HTTP's port 80), not the
    host on any port. Loopback registries need not be named; any other host is reached over HTTPS.
    ``sources`` maps each name (:func:`registry_host_key`) to where it was named, for warnings.
    """

    sources: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, values: Iterable[str], what: str = INSECURE_REGISTRY_FLAG) -> Self:
        """Names given one by one (a repeated flag); each is checked (UsageError)."""
        sources: dict[str, str] = {}
        for value in values:
            sources.setdefault(parse_registry_host(value, what), what)
        return cls(sources)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Self:
        """``$OPK_SIGN_INSECURE_REGISTRIES``: names separated by commas or whitespace; unset or
        blank names none; an empty name between two commas is a UsageError."""
        value = environ.get(ENV_INSECURE_REGISTRIES, "").strip()
        if not value:
            return cls()
        return cls.parse(re.split(r"\s*,\s*|\s+", value), f"${ENV_INSECURE_REGISTRIES}")

    def union(self, other: InsecureRegistries) -> Self:
        """Both sets; a name in both keeps where this one named it."""
        return type(self)({**other.sources, **self.sources})

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(sorted(self.sources))

    def named(self, host: str) -> bool:
        """Whether ``host[:port]`` was named insecure (exactly; loopback does not count)."""
        return registry_host_key(host) in self.sources

    def source(self, host: str) -> str | None:
        """Where ``host[:port]`` was named insecure (the flag or the variable), or None."""
        return self.sources.get(registry_host_key(host))

    def allows_http(self, host: str) -> bool:
        """Plain HTTP to ``host[:port]``: loopback, or named insecure."""
        return is_loopback_host(host) or self.named(host)

    def scheme(self, host: str) -> str:
        """The scheme to reach the registry ``host[:port]`` with."""
        return "http" if self.allows_http(host) else "https"

    def allows_url(self, url: str) -> bool:
        """``url`` is HTTPS, or plain HTTP to a loopback or named host."""
        parts = urlsplit(url)
        if parts.scheme == "https":
            return True
        return parts.scheme == "http" and self.allows_http(url_host(url))


NO_INSECURE_REGISTRIES = InsecureRegistries()
