"""Registry authentication: ``WWW-Authenticate`` challenges, basic auth and the bearer-token flow.

The first request to a registry goes out without credentials; its 401 challenge says which scheme
the registry wants. From then on the client authenticates up front: basic credentials on every
request, or a bearer token fetched from the challenge's realm for the repository scope
(``repository:<name>:pull`` or ``pull,push``) and reused until it expires, by every thread.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import requests

from opk_sign import deadline
from opk_sign.errors import FormatError, RegistryAuthError, RegistryUnavailableError
from opk_sign.http import HTTPConfig, read_within
from opk_sign.jose import parse_json
from opk_sign.names import ENV_INSECURE_REGISTRIES, INSECURE_REGISTRY_FLAG
from opk_sign.oci.credentials import Credential
from opk_sign.oci.keychain import Keychain
from opk_sign.urls import (
    NO_INSECURE_REGISTRIES,
    InsecureRegistries,
    is_loopback_host,
    url_host,
)

#: Tokens without ``expires_in`` live 60 s (distribution's token spec); we renew a little early.
DEFAULT_TOKEN_LIFETIME = 60.0
#: A token answer is a few KiB (a JWT and its lifetime).
MAX_TOKEN_ANSWER_BYTES = 256 * 1024
CLIENT_ID = "opk-sign"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[ \t]+[A-Za-z0-9\-._~+/]+=*[ \t]*(?=,|$)")


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: a scheme and its parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scope", "").split())

    @property
    def error(self) -> str | None:
        return self.params.get("error")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` (RFC 7235): ``Bearer realm="…",service="…",scope="…"``.

    Several challenges may share one header; quoted values may hold commas and escapes. Scheme
    and parameter names are case-insensitive and returned lowercase. Unparseable input ends the
    parse; whatever was understood until then is returned.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(header)
    while i < n:
        while i < n and header[i] in " \t,":
            i += 1
        match = _TOKEN.match(header, i)
        if not match:
            break
        word, j = match.group(), match.end()
        k = j
        while k < n and header[k] in " \t":
            k += 1
        if challenges and k < n and header[k] == "=":
            k += 1
            while k < n and header[k] in " \t":
                k += 1
            if k < n and header[k] == '"':
                value, k = _quoted(header, k)
            else:
                value_match = _TOKEN.match(header, k)
                value = value_match.group() if value_match else ""
                k = value_match.end() if value_match else k
            challenges[-1][1][word.lower()] = value
            i = k
        else:
            challenges.append((word.lower(), {}))
            i = j
            token68 = _TOKEN68.match(header, i)  # ``Negotiate abc==``: not a parameter
            if token68:
                i = token68.end()
    return [Challenge(scheme, params) for scheme, params in challenges]


def _quoted(text: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(out), i + 1
        out.append(char)
        i += 1
    return "".join(out), i


@dataclass(frozen=True)
class Scope:
    """A token scope: ``repository:library/alpine:pull,push``."""

    resource_type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def repository(cls, name: str, *, push: bool = False) -> Scope:
        return cls("repository", name, frozenset({"pull", "push"} if push else {"pull"}))

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        resource_type, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        if not resource_type or not name:
            return None
        return cls(resource_type, name, frozenset(a for a in actions.split(",") if a))

    def covers(self, other: Scope) -> bool:
        return (
            self.resource_type == other.resource_type
            and self.name == other.name
            and (self.actions >= other.actions or "*" in self.actions)
        )

    def __str__(self) -> str:
        return f"{self.resource_type}:{self.name}:{','.join(sorted(self.actions))}"


@dataclass(frozen=True)
class _Scheme:
    """What a registry asked for in its challenge."""

    name: str  # "basic" or "bearer"
    realm: str | None = None
    service: str | None = None


@dataclass(frozen=True)
class _Token:
    scopes: tuple[Scope, ...]
    value: str
    expires: float

    def serves(self, scopes: Sequence[Scope], now: float) -> bool:
        return now < self.expires and all(any(t.covers(s) for t in self.scopes) for s in scopes)


def basic_authorization(credential: Credential) -> str:
    raw = f"{credential.username or ''}:{credential.password or ''}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class Authenticator:
    """Per-run authentication state shared by every thread of a RegistryClient."""

    def __init__(
        self,
        session: requests.Session,
        keychain: Keychain,
        http: HTTPConfig,
        *,
        insecure: InsecureRegistries = NO_INSECURE_REGISTRIES,
        plain_http: Callable[[str], None] | None = None,
    ) -> None:
        self._session = session
        self._keychain = keychain
        self._http = http
        #: Token realms over plain HTTP are taken only on loopback or a host named insecure.
        self._insecure = insecure
        #: Told the ``host[:port]`` of each plain-HTTP token request off loopback (a warning).
        self._plain_http = plain_http
        self._schemes: dict[str, _Scheme] = {}
        self._tokens: dict[str, list[_Token]] = {}
        self._lock = threading.Lock()
        self._fetch_locks: dict[tuple[str, str], threading.Lock] = {}
        #: Token requests made (for diagnostics and request-cost tests).
        self.token_requests = 0

    def credential(self, registry: str) -> Credential:
        return self._keychain.get(registry)

    def authorization(self, registry: str, scope: Scope) -> str | None:
        """The Authorization header to send up front, or None (anonymous, or scheme unknown yet)."""
        credential = self.credential(registry)
        if credential.registry_token:
            return f"Bearer {credential.registry_token}"
        scheme = self._schemes.get(registry)
        if scheme is None:
            return None
        if scheme.name == "basic":
            return None if credential.anonymous else basic_authorization(credential)
        return "Bearer " + self._token(registry, scheme, (scope,), credential)

    def respond(self, registry: str, scope: Scope, header: str, sent: str | None) -> str:
        """The Authorization header answering a 401 challenge; raises if we cannot do better."""
        credential = self.credential(registry)
        challenges = {c.scheme: c for c in parse_challenges(header)}
        bearer, basic = challenges.get("bearer"), challenges.get("basic")
        if credential.registry_token and sent == f"Bearer {credential.registry_token}":
            raise self._refused(registry, credential, scope)
        if bearer is not None and bearer.realm:
            scheme = _Scheme("bearer", bearer.realm, bearer.service)
            self._schemes[registry] = scheme
            scopes = [s for s in (Scope.parse(text) for text in bearer.scopes) if s is not None]
            if not any(s.covers(scope) for s in scopes):
                scopes.append(scope)
            if sent and sent.startswith("Bearer "):
                self._forget(registry, sent[len("Bearer ") :])
            answer = "Bearer " + self._token(registry, scheme, tuple(scopes), credential)
        elif basic is not None:
            self._schemes[registry] = _Scheme("basic")
            if credential.anonymous or not credential.username:
                raise self._refused(registry, credential, scope)
            answer = basic_authorization(credential)
        else:
            raise RegistryAuthError(
                f"{registry} asks for an authentication scheme we do not support: {header[:120]!r}"
            )
        if answer == sent:
            raise self._refused(registry, credential, scope)
        return answer

    def _refused(self, registry: str, credential: Credential, scope: Scope) -> RegistryAuthError:
        if credential.anonymous:
            return RegistryAuthError(
                f"{registry} requires authentication for {scope} and we have no credentials for it",
                hint=f"run `docker login {registry}`, or pass credentials "
                "(--registry-username with OPK_SIGN_REGISTRY_PASSWORD, or OPK_SIGN_REGISTRY_TOKEN)",
            )
        return RegistryAuthError(
            f"{registry} refused the credentials from {credential.source} for {scope}",
            hint="check the username, password or token, and that it grants this access",
        )

    def _forget(self, registry: str, value: str) -> None:
        with self._lock:
            tokens = self._tokens.get(registry, [])
            self._tokens[registry] = [t for t in tokens if t.value != value]

    def _cached(self, registry: str, scopes: Sequence[Scope]) -> str | None:
        now = time.monotonic()
        with self._lock:
            for token in self._tokens.get(registry, ()):
                if token.serves(scopes, now):
                    return token.value
        return None

    def _token(
        self, registry: str, scheme: _Scheme, scopes: tuple[Scope, ...], credential: Credential
    ) -> str:
        cached = self._cached(registry, scopes)
        if cached is not None:
            return cached
        key = (registry, " ".join(sorted(str(s) for s in scopes)))
        with self._lock:
            fetch_lock = self._fetch_locks.setdefault(key, threading.Lock())
        with fetch_lock:  # one fetch per scope, however many threads want it
            cached = self._cached(registry, scopes)
            if cached is not None:
                return cached
            value, lifetime = self._fetch(registry, scheme, scopes, credential)
            token = _Token(scopes, value, time.monotonic() + lifetime * 0.9)
            with self._lock:
                now = time.monotonic()
                kept = [t for t in self._tokens.get(registry, []) if t.expires > now]
                self._tokens[registry] = [*kept, token]
            return value

    def _check_realm(self, registry: str, realm: str) -> None:
        """A token realm is HTTPS, or plain HTTP on loopback or on a host itself named insecure
        (the registry's being named does not extend to its token server)."""
        parts = urlsplit(realm)
        host = url_host(realm)
        if parts.scheme == "https" and host:
            return
        if parts.scheme == "http" and host and self._insecure.allows_http(host):
            if self._plain_http is not None and not is_loopback_host(host):
                self._plain_http(host)
            return
        if parts.scheme == "http" and host:
            also = (
                f"; naming {registry} does not cover its token server"
                if self._insecure.named(registry)
                else ""
            )
            raise RegistryAuthError(
                f"{registry} sends us to a token server over plain http ({realm!r}); refusing "
                "to send credentials there",
                hint=f"if {host} is meant to be reached over plain HTTP, name it: "
                f"{INSECURE_REGISTRY_FLAG} {host} (or ${ENV_INSECURE_REGISTRIES}){also}",
            )
        raise RegistryAuthError(
            f"{registry} sends us to a token server that is not an https:// URL ({realm!r}); "
            "refusing to send credentials there"
        )

    def _fetch(
        self, registry: str, scheme: _Scheme, scopes: Sequence[Scope], credential: Credential
    ) -> tuple[str, float]:
        realm = scheme.realm or ""
        self._check_realm(registry, realm)
        scope_strings = [str(s) for s in scopes]
        params: dict[str, str | list[str]] = {"scope": scope_strings}
        if scheme.service:
            params["service"] = scheme.service
        with self._lock:
            self.token_requests += 1
        # Bounded like any exchange (HTTPConfig.exchange_timeout, answer included: not streamed);
        # running out of time raises DeadlineExceeded named after the token server.
        shown = urlunsplit(urlsplit(realm)._replace(query="", fragment=""))
        try:
            with deadline.within(None, f"the token request to {shown} for registry {registry}"):
                if credential.identity_token:
                    form = {
                        "grant_type": "refresh_token",
                        "refresh_token": credential.identity_token,
                        "service": scheme.service or "",
                        "scope": " ".join(scope_strings),
                        "client_id": CLIENT_ID,
                    }
                    resp = self._session.post(
                        realm, data=form, timeout=self._http.timeout, stream=True
                    )
                else:
                    auth = None
                    if credential.password and credential.username:
                        auth = (credential.username, credential.password)
                        params["account"] = credential.username
                    params["client_id"] = CLIENT_ID
                    resp = self._session.get(
                        realm, params=params, auth=auth, timeout=self._http.timeout, stream=True
                    )
        except requests.RequestException as err:
            raise RegistryUnavailableError(
                f"token server {realm} for {registry} could not be reached: {err}"
            ) from None
        with resp:
            if resp.status_code in (401, 403):
                raise self._refused(registry, credential, scopes[0])
            if resp.status_code == 429 or resp.status_code >= 500:
                raise RegistryUnavailableError(
                    f"token server {realm} for {registry} answered {resp.status_code}"
                )
            if resp.status_code != 200:
                raise RegistryAuthError(
                    f"token server {realm} for {registry} answered {resp.status_code}"
                )
            # Whoever runs the registry runs its token server: its answer is read under limits.
            try:
                body = read_within(
                    resp,
                    MAX_TOKEN_ANSWER_BYTES,
                    lambda: RegistryAuthError(
                        f"token server {realm} answered more than {MAX_TOKEN_ANSWER_BYTES} bytes"
                    ),
                    chunk=16 * 1024,
                )
            except requests.RequestException as err:
                raise RegistryUnavailableError(
                    f"token server {realm} for {registry}: connection lost: {err}"
                ) from None
            try:
                answer = parse_json(body, "token answer", max_bytes=MAX_TOKEN_ANSWER_BYTES)
            except FormatError:
                raise RegistryAuthError(f"token server {realm} did not answer JSON") from None
        if not isinstance(answer, dict):
            raise RegistryAuthError(f"token server {realm} did not answer a JSON object")
        value = answer.get("token") or answer.get("access_token")
        if not isinstance(value, str) or not value:
            raise RegistryAuthError(f"token server {realm} answered without a token")
        lifetime = answer.get("expires_in")
        if not isinstance(lifetime, int | float) or lifetime < DEFAULT_TOKEN_LIFETIME:
            lifetime = DEFAULT_TOKEN_LIFETIME
        return value, float(lifetime)
