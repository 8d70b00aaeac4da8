"""The one HTTP session factory and retry policy of opk-sign.

Everything that talks HTTP (registries, the OIDC token endpoint, discovery and JWKS, TSA, TUF)
gets its session here, so retries, timeouts, deadlines and the user agent are the same everywhere.

Deadlines (:mod:`opk_sign.deadline`): socket timeouts bound each read, not an exchange, so a
server trickling a byte every few seconds could hold a run for days. Every exchange through a
session from :func:`new_session` (one ``Session.request``: connect, TLS handshake, sending,
headers, redirects, retries and backoff, and the whole body, also when it is streamed after the
call returns) therefore has an overall deadline, ``HTTPConfig.exchange_timeout``, narrowed by any
deadline in force (``deadline.within``). Every read and send is given a socket timeout no larger
than what is left, the deadline is checked before each, and a retry whose backoff would end past
it is not made. The failure is a :class:`~opk_sign.deadline.DeadlineExceeded` naming the exchange
(the innermost ``deadline.within`` description, else the method and URL) and the bytes received.

The settings here cost nothing to import (the command line reads them for its help); the
session machinery, requests and urllib3 under it, is in :mod:`opk_sign.http._session`, imported
by the first :func:`new_session`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opk_sign._version import __version__
from opk_sign.names import DEFAULT_EXCHANGE_TIMEOUT

if TYPE_CHECKING:
    import requests

USER_AGENT = f"opk-sign/{__version__}"

#: Statuses worth retrying: rate limits and transient gateway or server faults.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HTTPConfig:
    """Timeouts, deadline and retry budget; one instance per run."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5
    backoff_factor: float = 0.2
    backoff_max: float = 10.0
    #: Largest Retry-After we honour before giving up; a registry asking for an hour is down.
    max_retry_after: float = 60.0
    pool_size: int = 32
    #: Overall seconds one exchange may take: connect, send, headers, redirects, retries with
    #: their backoff, and the whole body. None: only the per-read timeouts bound it.
    exchange_timeout: float | None = DEFAULT_EXCHANGE_TIMEOUT
    #: Bytes per second that earn time: every byte sent or received extends the exchange's own
    #: deadline by 1/min_rate s, so a large blob copied at a healthy rate is not cut off, while a
    #: trickle earns nothing. An enclosing deadline (``deadline.within``) is never extended.
    min_rate: float = 64 * 1024

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


DEFAULT_HTTP = HTTPConfig()


def new_session(config: HTTPConfig = DEFAULT_HTTP) -> requests.Session:
    """A session with our retry policy, deadlines, connection pool and user agent."""
    from opk_sign.http._session import new_session as session

    return session(config)


def read_within(
    response: requests.Response,
    limit: int,
    too_large: Callable[[], Exception],
    *,
    chunk: int = 64 * 1024,
) -> bytes:
    """The body of a streamed ``response``, read a ``chunk`` at a time: ``too_large()`` is
    raised as soon as more than ``limit`` bytes have come, so a hostile server's endless body
    costs at most one chunk over the limit."""
    body = bytearray()
    for part in response.iter_content(chunk):
        body += part
        if len(body) > limit:
            raise too_large()
    return bytes(body)


def post_within(
    session: requests.Session | None,
    config: HTTPConfig,
    url: str,
    *,
    service: str,
    activity: str,
    hint: str,
    limit: int,
    too_large: Callable[[str], Exception],
    **send: Any,
) -> tuple[int, bytes]:
    """POST once to a service that answers in one document (a timestamp authority, a
    transparency log): the status and the body, read within ``limit`` (else ``too_large`` of
    the message "SERVICE URL answered more than LIMIT bytes": the service's own error class).

    ``service`` names it in errors ("the timestamp authority"), ``activity`` the exchange when
    its deadline passes ("the timestamp request to URL"). No redirects are followed. A
    status still worth retrying after the session's retries, or no answer, is a NetworkError
    with ``hint``; the exchange is bounded by ``config``'s deadline and any in force
    (DeadlineExceeded, with ``hint``). ``send``: the body (``data=`` or ``json=``) and headers.
    ``session``: the caller's (closed by the caller), else a new one for this request only.
    """
    import requests

    from opk_sign import deadline
    from opk_sign.deadline import DeadlineExceeded
    from opk_sign.errors import NetworkError

    http = new_session(config) if session is None else session
    try:
        with (
            deadline.within(None, activity),
            http.post(
                url, timeout=config.timeout, allow_redirects=False, stream=True, **send
            ) as response,
        ):
            status = response.status_code
            if status in RETRY_STATUSES:
                raise NetworkError(
                    f"{service} {url} is unavailable: HTTP {status} after retries", hint=hint
                )
            body = read_within(
                response,
                limit,
                lambda: too_large(f"{service} {url} answered more than {limit} bytes"),
                chunk=16 * 1024,
            )
            return status, body
    except requests.RequestException as err:
        raise NetworkError(f"could not reach {service} {url}: {err}", hint=hint) from None
    except DeadlineExceeded as err:
        raise err.recast(DeadlineExceeded, hint=hint) from None
    finally:
        if session is None:
            http.close()
