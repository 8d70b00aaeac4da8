"""The HTTP transport to registries: sessions and connection pool, the auth handshake (one
challenge answered per request, credentials never sent to another origin), retries with
backoff, size-limited reads, and the mapping of HTTP failures to ``RegistryError`` s.

Each request is one exchange with an overall deadline (``HTTPConfig.exchange_timeout``, within any
``deadline.within`` in force): sending, the answer, the body read afterwards and the error body
read for a message. Running out of time is a :class:`RegistryDeadlineExceeded` naming the registry
and the request.

``RegistryClient`` (the registry operations) sends every request through one ``Transport``.
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import IO, NoReturn
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from opk_sign import deadline
from opk_sign.deadline import DeadlineExceeded
from opk_sign.errors import (
    FormatError,
    NotFoundError,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
)
from opk_sign.http import HTTPConfig, new_session
from opk_sign.jose import parse_json
from opk_sign.names import ENV_INSECURE_REGISTRIES, INSECURE_REGISTRY_FLAG
from opk_sign.oci.auth import Authenticator, Scope
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.reference import Reference
from opk_sign.urls import (
    NO_INSECURE_REGISTRIES,
    InsecureRegistries,
    is_loopback_host,
    url_host,
)

Body = bytes | IO[bytes]
#: Bytes read from a response at a time.
CHUNK = 64 * 1024


class ConnectionLost(RegistryUnavailableError):
    """The connection broke while a response body was being read."""


class BlobUnknownError(RegistryError):
    """A manifest PUT refused because the registry does not see one of its blobs."""


class RegistryDeadlineExceeded(DeadlineExceeded, RegistryUnavailableError):
    """A registry exchange, or the budget around it, ran out of time (exit 13). A
    RegistryUnavailableError too, so callers that retry or re-check an unavailable registry do
    so; the next attempt gets no more than the budget that is left."""


def _as_registry(err: DeadlineExceeded) -> RegistryDeadlineExceeded:
    return (
        err if isinstance(err, RegistryDeadlineExceeded) else err.recast(RegistryDeadlineExceeded)
    )


@contextlib.contextmanager
def _registry_time(doing: str) -> Iterator[None]:
    """Name the exchanges of the block for deadline errors, which become registry errors."""
    try:
        with deadline.within(None, doing):
            yield
    except DeadlineExceeded as err:
        raise _as_registry(err) from None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class Transport:
    """Requests to registries, safe to share between threads.

    Registries are reached over HTTPS, or plain HTTP where ``insecure`` allows it (loopback, or
    named insecure); the first plain-HTTP exchange with each host off loopback is a warning
    through ``notice`` (default: a line on stderr).
    """

    def __init__(
        self,
        keychain: Keychain,
        http: HTTPConfig,
        *,
        insecure: InsecureRegistries = NO_INSECURE_REGISTRIES,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.http = http
        self.insecure = insecure
        self.notice: Callable[[str], None] = notice if notice is not None else _stderr
        self._warned: set[str] = set()
        self._warned_lock = threading.Lock()
        self._session = new_session(http)
        # Writes of the fallback referrers index are never retried blindly: a retry would write
        # a stale merge. The update loop re-reads and merges instead.
        self._once = new_session(replace(http, retries=0))
        self.auth = Authenticator(
            self._session, keychain, http, insecure=insecure, plain_http=self.plain_http
        )

    def base(self, ref: Reference) -> str:
        """``scheme://host`` of ``ref``'s registry API: HTTPS unless loopback or named insecure."""
        return ref.api_base_with(self.insecure)

    def plain_http(self, host: str) -> None:
        """Warn, once per host and run, that we talk plain HTTP to ``host`` (off loopback)."""
        key = host.lower()
        with self._warned_lock:
            if key in self._warned:
                return
            self._warned.add(key)
        # Named, or where a named (or loopback) registry sent us: an upload Location, a link.
        named = self.insecure.source(host) or "the registry sent us there"
        self.notice(
            f"warning: plain HTTP to {host} ({named}): anyone on the network can read and "
            "change what is sent"
        )

    def close(self) -> None:
        self._session.close()
        self._once.close()

    def backoff(self, failures: int, retry_after: str | None, what: str) -> None:
        if failures > self.http.retries:
            raise RegistryUnavailableError(
                f"update {what}: the registry kept failing ({failures} attempts)"
            )
        wait = min(self.http.backoff_max, self.http.backoff_factor * 2 ** (failures - 1))
        wait += random.uniform(0, self.http.backoff_factor)  # noqa: S311 - jitter
        if retry_after and retry_after.strip().isdigit():
            asked = float(retry_after.strip())
            if asked > self.http.max_retry_after:
                raise RegistryUnavailableError(
                    f"update {what}: the registry asked us to come back in {asked:.0f} s"
                )
            wait = max(wait, asked)
        try:
            deadline.sleep(wait, f"update {what}")  # a wait past the budget is not made
        except DeadlineExceeded as err:
            raise _as_registry(err) from None

    def request(
        self,
        method: str,
        ref: Reference,
        path: str | None = None,
        *,
        url: str | None = None,
        push: bool = False,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: Body | None = None,
        stream: bool = False,
        retry: bool = True,
        extra_scopes: tuple[Scope, ...] = (),
    ) -> requests.Response:
        """Send one request to ``ref``'s registry, answering an auth challenge once."""
        base = self.base(ref)
        if url is None:
            url = f"{base}/v2/{ref.repository}/{path}"
        with _registry_time(f"registry {ref.registry}: {method} {_shown(url, base)}"):
            scope = Scope.repository(ref.repository, push=push)
            send_headers = dict(headers or {})
            ours = _same_origin(url, base)  # never send credentials to a storage redirect
            sent = self.auth.authorization(ref.registry, scope) if ours else None
            if sent:
                send_headers["Authorization"] = sent
            resp = self.send(
                method, url, send_headers, params=params, data=data, stream=stream, retry=retry
            )
            if resp.status_code != 401 or not ours:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            if not challenge:
                raise RegistryAuthError(f"{method} {url}: 401 without an authentication challenge")
            if extra_scopes:
                challenge = _add_scopes(challenge, extra_scopes)
            send_headers["Authorization"] = self.auth.respond(ref.registry, scope, challenge, sent)
            rewind(data)
            resp = self.send(
                method, url, send_headers, params=params, data=data, stream=stream, retry=retry
            )
            if resp.status_code == 401:
                resp.close()
                credential = self.auth.credential(ref.registry)
                raise RegistryAuthError(
                    f"{ref.registry} refused the credentials from {credential.source} for {scope}",
                    hint="check that the credentials grant this access to the repository",
                )
            return resp

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        params: Mapping[str, str] | None,
        data: Body | None,
        stream: bool,
        retry: bool,
    ) -> requests.Response:
        session = self._session if retry else self._once
        if urlsplit(url).scheme == "http" and not is_loopback_host(url_host(url)):
            self.plain_http(url_host(url))
        try:
            return session.request(
                method,
                url,
                headers=dict(headers),
                params=params,
                data=data,
                stream=stream,
                timeout=self.http.timeout,
                allow_redirects=method in ("GET", "HEAD"),
            )
        except requests.exceptions.RetryError as err:
            raise RegistryUnavailableError(
                f"{method} {_redact(url)}: the registry kept failing: {err}",
                hint="the registry is down or rate-limiting us; try again later",
            ) from None
        except requests.exceptions.SSLError as err:
            raise RegistryUnavailableError(
                f"{method} {_redact(url)}: could not reach the registry over HTTPS: {_reason(err)}",
                hint=_tls_hint(url),
            ) from None
        except (requests.ConnectionError, requests.Timeout) as err:
            raise RegistryUnavailableError(
                f"{method} {_redact(url)}: could not reach the registry: {_reason(err)}",
                hint="check the registry address and the network",
            ) from None
        except requests.RequestException as err:
            raise RegistryError(f"{method} {_redact(url)}: {err}") from None

    def read(self, resp: requests.Response, limit: int, what: str) -> bytes:
        """The body, refused past ``limit`` bytes; always closes the response."""
        with resp:
            length = resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limit:
                raise RegistryError(f"{what} is {length} bytes, over the {limit}-byte limit")
            buffer = bytearray()
            try:
                for chunk in resp.iter_content(CHUNK):
                    buffer += chunk
                    if len(buffer) > limit:
                        raise RegistryError(f"{what} is over the {limit}-byte limit")
            except requests.RequestException as err:
                raise ConnectionLost(f"{what}: connection lost while reading: {err}") from None
            except DeadlineExceeded as err:  # the exchange's deadline holds for its body too
                raise _as_registry(err) from None
            return bytes(buffer)

    def location(self, resp: requests.Response, ref: Reference, what: str) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{what}: the registry started an upload without a Location")
        return urljoin(resp.url or self.base(ref), location)

    def fail(self, resp: requests.Response, what: str) -> NoReturn:
        status = resp.status_code
        detail = _error_detail(resp)
        if status == 404:
            raise NotFoundError(f"{what}: not found ({detail})")
        if status in (401, 403):
            raise RegistryAuthError(
                f"{what}: access denied ({status}: {detail})",
                hint="check that the credentials grant this access to the repository",
            )
        if status == 429 or status >= 500:
            retry_after = resp.headers.get("Retry-After")
            suffix = f", Retry-After {retry_after}" if retry_after else ""
            raise RegistryUnavailableError(
                f"{what}: the registry answered {status} ({detail}{suffix}) after "
                f"{self.http.retries} retries",
                hint="the registry is down or rate-limiting us; try again later",
            )
        if status == 400 and "BLOB_UNKNOWN" in detail:
            raise BlobUnknownError(f"{what}: the registry answered {status} ({detail})")
        raise RegistryError(f"{what}: the registry answered {status} ({detail})")


def rewind(body: Body | None) -> None:
    if body is not None and not isinstance(body, bytes):
        body.seek(0)


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def _add_scopes(challenge: str, scopes: tuple[Scope, ...]) -> str:
    """Also ask for ``scopes``: a cross-repository mount needs pull on the source."""
    extra = " ".join(str(s) for s in scopes)
    if 'scope="' in challenge:
        return challenge.replace('scope="', f'scope="{extra} ', 1)
    return f'{challenge},scope="{extra}"'


def _tls_hint(url: str) -> str:
    """What to do when the TLS handshake failed: most often a registry serving plain HTTP."""
    host = url_host(url)
    return (
        f"if {host} serves plain HTTP (no TLS), name it with {INSECURE_REGISTRY_FLAG} {host} "
        f"or in ${ENV_INSECURE_REGISTRIES}: plain HTTP is used only for loopback and the "
        "registries named; else check its certificate"
    )


def _shown(url: str, base: str) -> str:
    """The URL for people: its path on the registry, or the whole of it (no query) elsewhere."""
    parts = urlsplit(url)
    if _same_origin(url, base):
        return parts.path
    return urlunsplit(parts._replace(query="", fragment=""))


def _redact(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="")) if "state" in parts.query else url


def _reason(err: Exception) -> str:
    text = str(err)
    return text if len(text) < 300 else text[:300] + "…"


def _error_detail(resp: requests.Response) -> str:
    """The OCI error codes and messages of a failed response, for people."""
    reason = resp.reason or ""
    try:
        # Read within the exchange's deadline: a trickled error body must not hold us either.
        body = next(resp.iter_content(8192), b"")
    except requests.RequestException:
        body = b""
    except DeadlineExceeded:
        return f"{reason or f'HTTP {resp.status_code}'}; its error body did not arrive in time"
    try:  # a hostile error body is only text to show: parsed under limits, never trusted
        doc = parse_json(body, "error body", max_bytes=8192, depth=4)
    except FormatError:
        doc = None
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list) and errors:
        parts = [
            f"{e.get('code', '?')}: {e.get('message', '')}".strip(": ")[:300]
            for e in errors[:5]
            if isinstance(e, dict)
        ]
        return "; ".join(parts) or reason
    return reason or f"HTTP {resp.status_code}"
