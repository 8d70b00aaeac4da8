"""The one HTTP session factory and retry policy of opk-sign.

Everything that talks HTTP (registries, the OIDC token endpoint, discovery and JWKS, TSA, TUF)
gets its session here, so retries, timeouts and the user agent are the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from opk_sign._version import __version__

USER_AGENT = f"opk-sign/{__version__}"

#: Statuses worth retrying: rate limits and transient gateway or server faults.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HTTPConfig:
    """Timeouts and retry budget; one instance per run."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5
    backoff_factor: float = 0.2
    backoff_max: float = 10.0
    #: Largest Retry-After we honour before giving up; a registry asking for an hour is down.
    max_retry_after: float = 60.0
    pool_size: int = 32

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


DEFAULT_HTTP = HTTPConfig()


class BoundedRetry(Retry):
    """urllib3's Retry that gives up, instead of sleeping, when Retry-After exceeds a bound.

    The last response is then returned to the caller (``raise_on_status=False``), so it can say
    "the registry asked us to come back in an hour" rather than hang.
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
        if response is not None and _pool is not None and self.respect_retry_after_header:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.max_retry_after:
                raise MaxRetryError(_pool, url or "", ResponseError(f"Retry-After {wait:.0f} s"))
        return super().increment(method, url, response, error, _pool, _stacktrace)


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
    """A session with our retry policy, connection pool and user agent."""
    session = requests.Session()
    adapter = HTTPAdapter(
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
