"""Which URLs opk-sign talks to: HTTPS everywhere, plain HTTP only on loopback (tests and
emulators). Pure logic, shared by the HTTP clients and by reference parsing."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from opk_sign.errors import UsageError


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
