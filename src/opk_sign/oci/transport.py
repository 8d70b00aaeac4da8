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
from collections.abc import Iterator, Mapping
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
from opk_sign.oci.auth import Authenticator, Scope
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.reference import Reference

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


class Transport:
    """Requests to registries, safe to share between threads."""

    def __init__(self, keychain: Keychain, http: HTTPConfig) -> None:
        self.http = http
        self._session = new_session(http)
        # Writes of the fallback referrers index are never retried blindly: a retry would write
        # a stale merge. The update loop re-reads and merges instead.
        self._once = new_session(replace(http, retries=0))
        self.auth = Authenticator(self._session, keychain, http)

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
        if url is None:
            url = f"{ref.api_base}/v2/{ref.repository}/{path}"
        with _registry_time(f"registry {ref.registry}: {method} {_shown(url, ref)}"):
            scope = Scope.repository(ref.repository, push=push)
            send_headers = dict(headers or {})
            ours = _same_origin(url, ref.api_base)  # never send credentials to a storage redirect
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
        return urljoin(resp.url or ref.api_base, location)

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


def _shown(url: str, ref: Reference) -> str:
    """The URL for people: its path on the registry, or the whole of it (no query) elsewhere."""
    parts = urlsplit(url)
    if _same_origin(url, ref.api_base):
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
