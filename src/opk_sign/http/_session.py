"""The machinery behind :func:`opk_sign.http.new_session` (see :mod:`opk_sign.http`): one
deadline per exchange over requests and urllib3, and the retry policy."""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import io
import re
import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import ConnectionPool, HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from opk_sign import deadline
from opk_sign.deadline import Deadline, DeadlineExceeded
from opk_sign.http import DEFAULT_HTTP, RETRY_STATUSES, USER_AGENT, HTTPConfig

# --- the deadline of one exchange ----------------------------------------------------------------


class _Exchange:
    """One ``Session.request`` under way: its own deadline, the enclosing one, bytes moved."""

    def __init__(self, config: HTTPConfig, label: str) -> None:
        self.label = label
        self.limit = config.exchange_timeout
        self.rate = config.min_rate
        self.outer = deadline.current()
        self.started = time.monotonic()
        self.sent = 0
        self.received = 0

    def _own(self) -> float | None:
        if self.limit is None:
            return None
        earned = (self.sent + self.received) / self.rate if self.rate > 0 else 0.0
        return self.started + self.limit + earned

    def _enclosing(self) -> Deadline | None:
        # The body may be read after the call that started the exchange returned: a deadline
        # entered since then binds too.
        return deadline.tightest(self.outer, deadline.current())

    def left(self) -> float | None:
        """Seconds left (negative once passed), or None: unbounded."""
        own, outer = self._own(), self._enclosing()
        ends = [at for at in (own, outer.at if outer else None) if at is not None]
        return min(ends) - time.monotonic() if ends else None

    def cap(self, timeout: float | None) -> float | None:
        """``timeout`` (None: none) cut to what is left; DeadlineExceeded if nothing is."""
        left = self.left()
        if left is None:
            return timeout
        if left <= 0:
            raise self.exceeded()
        return left if timeout is None else min(timeout, left)

    def expired(self) -> bool:
        left = self.left()
        return left is not None and left <= 0

    def exceeded(self, detail: str | None = None) -> DeadlineExceeded:
        own, outer = self._own(), self._enclosing()
        if outer is not None and (own is None or outer.at <= own):
            return DeadlineExceeded(outer, self.label, received=self.received, detail=detail)
        assert own is not None
        bound = Deadline(own, own - self.started, self.label)
        return DeadlineExceeded(bound, received=self.received, detail=detail)


#: The exchange the current thread is making (set while ``Session.send`` runs).
_EXCHANGE: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar(
    "opk_sign_http_exchange", default=None
)


def _describe(request: requests.PreparedRequest) -> str:
    parts = urlsplit(request.url or "")
    # No query: it may carry upload state; nothing secret is in a scheme, host or path.
    return f"{request.method} {parts.scheme}://{parts.netloc}{parts.path}"


def _label(request: requests.PreparedRequest) -> str:
    """What the caller said the exchange is (``deadline.within(None, what)``), else its method
    and URL; not the enclosing budget's own description, which says nothing of the exchange."""
    doing, bound = deadline.activity(), deadline.current()
    if doing and (bound is None or doing != bound.what):
        return doing
    return _describe(request)


class _BoundedReader(io.RawIOBase):
    """The socket's reads for one response, each given at most what is left of the exchange."""

    def __init__(self, sock: socket.socket, exchange: _Exchange) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._exchange = exchange
        # urllib3 set the read timeout just before the answer: each read gets at most that.
        self._read_timeout = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(self._exchange.cap(self._read_timeout))
        try:
            count = self._raw.readinto(buffer)
        except TimeoutError:
            if self._exchange.expired():
                raise self._exchange.exceeded() from None
            raise
        self._exchange.received += count or 0
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


class _BoundedHTTPResponse(http.client.HTTPResponse):
    """http.client's response reading status line, headers and body through _BoundedReader."""

    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        exchange = _EXCHANGE.get()
        if exchange is not None:
            plain = self.fp
            self.fp = io.BufferedReader(_BoundedReader(sock, exchange))
            plain.close()


class _BoundedConnection(HTTPConnection):
    response_class = _BoundedHTTPResponse

    def send(self, data: Any) -> None:
        exchange = _EXCHANGE.get()
        if exchange is not None and self.sock is not None:
            base = self.timeout if isinstance(self.timeout, int | float) else None
            self.sock.settimeout(exchange.cap(base))
        super().send(data)
        if exchange is not None and isinstance(data, bytes | bytearray | memoryview):
            exchange.sent += len(data)


class _BoundedTLSConnection(_BoundedConnection, HTTPSConnection):
    def connect(self) -> None:
        # The TLS handshake reads inside the ssl module, beyond our reader: a watchdog shuts the
        # socket down when the deadline passes, which ends a trickled handshake at once.
        exchange = _EXCHANGE.get()
        left = exchange.left() if exchange is not None else None
        if left is None:
            super().connect()
            return
        watchdog = threading.Timer(max(left, 0.0), self._abort)
        watchdog.daemon = True
        watchdog.start()
        try:
            super().connect()
        finally:
            watchdog.cancel()

    def _abort(self) -> None:
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _BoundedConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _BoundedTLSConnection


class _Adapter(HTTPAdapter):
    """requests' adapter over connections that honour the exchange's deadline."""

    def __init__(self, config: HTTPConfig, **kwargs: Any) -> None:
        self._config = config
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def send(  # noqa: PLR0917 - requests' signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        with _ExchangeScope(self._config, request) as exchange:
            return super().send(request, stream, _capped(exchange, timeout), verify, cert, proxies)


#: URLs that requests' preparation (IDNA, requoting, dot segments, lower-cased host) would send
#: unchanged: a lower-case ASCII host name or IPv4 address, a path and query of characters that
#: need no quoting, no percent escape, no fragment, no userinfo. Registry API URLs we build are of
#: this kind; anything else (a Location a registry sent, say) takes requests' own path.
_PLAIN_URL = re.compile(
    r"https?://[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?"
    r"/[A-Za-z0-9._~/:@!$&'()*+,;=-]*(?:\?[A-Za-z0-9._~/:@!$&'()*+,;=?-]+)?\Z"
)
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|\?|\Z)")


def plain_url(url: str) -> bool:
    """Whether ``url`` is one :meth:`_Session.request` prepares without requests' machinery."""
    return _PLAIN_URL.match(url) is not None and _DOT_SEGMENT.search(url) is None


class _Session(requests.Session):
    """A session whose every ``request`` (redirects and an unstreamed body included) is one
    exchange with one deadline.

    Preparing a request is most of requests' own cost per exchange (merging settings, parsing
    and requoting the URL, typing-protocol checks on the body): for the requests a registry
    client makes by the thousand (a plain URL, string parameters, no body or a bytes body, no
    cookies, proxies, hooks or auth in the session) the request is prepared here to the same
    bytes, and sent through the same ``send`` (redirects, hooks, adapters, retries). Everything
    else goes through ``requests.Session.request`` unchanged (``tests/unit/http`` holds the two
    to the same result).
    """

    def __init__(self, config: HTTPConfig) -> None:
        super().__init__()
        self._config = config

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: Any = None,
        allow_redirects: bool = True,
        stream: bool | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        prepared = None
        plain_session = not (self.cookies or self.proxies or any(self.hooks.values()))
        if not kwargs and plain_session and self.auth is None:
            prepared = prepare_plain(
                self.headers, method, url, params=params, data=data, headers=headers
            )
        if prepared is None:
            return super().request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=timeout,
                allow_redirects=allow_redirects,
                stream=stream,
                **kwargs,
            )
        return self.send(
            prepared,
            timeout=timeout,
            allow_redirects=allow_redirects,
            proxies={},
            stream=self.stream if stream is None else stream,
            verify=self.verify,
            cert=self.cert,
        )

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        with _ExchangeScope(self._config, request):
            return super().send(request, **kwargs)


def prepare_plain(
    defaults: Mapping[str, str | bytes],
    method: str,
    url: str,
    *,
    params: Mapping[str, str] | None,
    data: object,
    headers: Mapping[str, str] | None,
) -> requests.PreparedRequest | None:
    """The request requests would prepare from these (session headers ``defaults``), or None
    where that takes its own machinery: another URL, body or parameter kind."""
    if not isinstance(url, str) or not plain_url(url):
        return None
    if data is not None and type(data) is not bytes:
        return None
    if params:
        if not all(type(k) is str and type(v) is str for k, v in params.items()):
            return None
        query = urlencode(list(params.items()))
        url = f"{url}&{query}" if "?" in url else f"{url}?{query}"
    merged: CaseInsensitiveDict[str | bytes] = CaseInsensitiveDict(defaults)
    if headers:
        for name, value in headers.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
    for header, content in merged.items():
        # CR, LF, leading spaces: requests' own refusal (InvalidHeader), as on its path
        if isinstance(content, str):
            check_header_validity((header, content))
        else:
            check_header_validity((header.encode(), content))
    prepared = requests.PreparedRequest()
    prepared.method = method.upper()
    prepared.url = url
    prepared.headers = merged  # type: ignore[assignment]
    prepared.prepare_cookies(RequestsCookieJar())  # none: the session has none
    if data:
        prepared.body = data
        prepared.headers["Content-Length"] = str(len(data))
    elif prepared.method not in ("GET", "HEAD") and "Content-Length" not in merged:
        prepared.headers["Content-Length"] = "0"
    return prepared


class _ExchangeScope:
    """The exchange in force while a session or adapter sends (one is started if none is)."""

    def __init__(self, config: HTTPConfig, request: requests.PreparedRequest) -> None:
        self._config = config
        self._request = request
        self._token: contextvars.Token[_Exchange | None] | None = None
        self._exchange: _Exchange | None = None

    def __enter__(self) -> _Exchange:
        active = _EXCHANGE.get()
        if active is not None:
            return active  # a redirect, or the session's adapter: the session's exchange goes on
        label = _label(self._request)
        self._exchange = _Exchange(self._config, label)
        self._exchange.cap(None)  # nothing left: do not even connect
        self._token = _EXCHANGE.set(self._exchange)
        return self._exchange

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is None or self._exchange is None:
            return
        _EXCHANGE.reset(self._token)
        # A connect or read timeout cut short to the time left is the deadline, not the network.
        if isinstance(error, requests.RequestException) and self._exchange.expired():
            raise self._exchange.exceeded() from None


def _capped(exchange: _Exchange, timeout: Any) -> Any:
    if isinstance(timeout, tuple):
        connect, read = timeout
        return (exchange.cap(connect), exchange.cap(read))
    if timeout is None or isinstance(timeout, int | float):
        return exchange.cap(timeout)
    return timeout  # a urllib3 Timeout: ours never pass one


# --- retries --------------------------------------------------------------------------------------


class BoundedRetry(Retry):
    """urllib3's Retry that gives up, instead of sleeping, when Retry-After exceeds a bound, or
    when the wait would end past the exchange's deadline.

    On a too-long Retry-After the last response is returned to the caller
    (``raise_on_status=False``), so it can say "the registry asked us to come back in an hour"
    rather than hang; past the deadline, DeadlineExceeded says what did not finish.
    """

    max_retry_after: float = DEFAULT_HTTP.max_retry_after

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.max_retry_after = self.max_retry_after
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        wait: float | None = None
        if response is not None and self.respect_retry_after_header:
            wait = self.get_retry_after(response)
            if _pool is not None and wait is not None and wait > self.max_retry_after:
                raise MaxRetryError(_pool, url or "", ResponseError(f"Retry-After {wait:.0f} s"))
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        exchange = _EXCHANGE.get()
        if exchange is not None:
            wait = retry.get_backoff_time() if wait is None else wait
            left = exchange.left()
            if left is not None and wait >= left:
                detail = None if left <= 0 else f"waiting {wait:.1f} s to retry would pass it"
                if response is not None:
                    detail = f"it answered HTTP {response.status}" + (
                        f"; {detail}" if detail else ""
                    )
                    # The caller never sees it: close it, and give its pool slot back.
                    response.close()
                    response.release_conn()
                raise exchange.exceeded(detail)
        return retry


def retry_policy(config: HTTPConfig = DEFAULT_HTTP) -> Retry:
    """Exponential backoff with jitter; honours Retry-After; retries resets on every method.

    Retrying non-idempotent methods (POST, PUT, PATCH) is safe for our uses: blob uploads are
    content-addressed and restart from a fresh POST, manifest PUTs are idempotent by digest.
    """
    retry = BoundedRetry(
        total=config.retries,
        connect=config.retries,
        read=config.retries,
        status=config.retries,
        other=0,
        allowed_methods=None,  # every method
        status_forcelist=RETRY_STATUSES,
        backoff_factor=config.backoff_factor,
        backoff_max=config.backoff_max,
        backoff_jitter=config.backoff_factor,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )
    retry.max_retry_after = config.max_retry_after
    return retry


def new_session(config: HTTPConfig = DEFAULT_HTTP) -> requests.Session:
    """A session with our retry policy, deadlines, connection pool and user agent."""
    session = _Session(config)
    adapter = _Adapter(
        config,
        max_retries=retry_policy(config),
        pool_connections=config.pool_size,
        pool_maxsize=config.pool_size,
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    # Never pick up credentials or proxies from ~/.netrc or the environment by surprise.
    session.trust_env = False
    return session
