"""An issuer's live signing keys, by OpenID Connect discovery.

OpenID Connect Discovery 1.0: the configuration lives at
``<issuer>/.well-known/openid-configuration`` (any trailing ``/`` of the issuer removed first), its
``issuer`` must equal the issuer asked for exactly (section 4.3), and its ``jwks_uri`` names the
JWKS. Both fetches are HTTPS (plain HTTP only
on loopback, for the emulator), size-limited, bounded in time (each an exchange of
``HTTPConfig.exchange_timeout``, within any ``deadline.within`` in force), and every failure is a
TrustError.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import requests

from opk_sign import deadline
from opk_sign.deadline import DeadlineExceeded
from opk_sign.errors import FormatError, TrustError, UsageError
from opk_sign.http import DEFAULT_HTTP, new_session, read_within
from opk_sign.jose import parse_json
from opk_sign.urls import require_secure_url

#: Discovery documents and JWKS are a few KiB; anything far larger is not one.
MAX_DOCUMENT_BYTES = 1 << 20

_ISSUER_HINT = (
    "give the issuer exactly as its tokens' iss claim spells it "
    "(e.g. https://token.actions.githubusercontent.com) and check the network"
)


class _OutOfTime(TrustError):
    """A fetch that ran out of time; ``outer``: the caller's budget ran out, not the fetch's."""

    def __init__(self, err: DeadlineExceeded) -> None:
        super().__init__(err.message, hint=err.hint)
        self.outer = err.outer


def _get_json(session: requests.Session, url: str, what: str) -> Any:
    try:
        require_secure_url(url, what)
    except UsageError as err:
        raise TrustError(err.message, hint=err.hint) from None
    try:
        with (
            deadline.within(None, f"fetching {what} from {url}"),
            session.get(
                url,
                headers={"Accept": "application/json"},
                timeout=DEFAULT_HTTP.timeout,
                stream=True,
            ) as response,
        ):
            if response.status_code != 200:
                raise TrustError(
                    f"could not fetch {what}: {url} answered HTTP {response.status_code}",
                    hint=_ISSUER_HINT,
                )
            if response.url != url:
                try:
                    require_secure_url(response.url, f"{what} (after redirects)")
                except UsageError as err:
                    raise TrustError(err.message, hint=err.hint) from None
            body = read_within(
                response,
                MAX_DOCUMENT_BYTES,
                lambda: TrustError(
                    f"{what} at {url} is larger than {MAX_DOCUMENT_BYTES} bytes",
                    hint=_ISSUER_HINT,
                ),
            )
    except requests.RequestException as exc:
        raise TrustError(f"could not fetch {what} from {url}: {exc}", hint=_ISSUER_HINT) from None
    except DeadlineExceeded as exc:  # trust material: exit 14, like any failure to fetch it
        raise _OutOfTime(exc) from None
    try:
        return parse_json(body, what, max_bytes=MAX_DOCUMENT_BYTES)
    except FormatError as err:
        raise TrustError(
            f"{what} at {url} is not JSON we accept: {err.message}", hint=_ISSUER_HINT
        ) from None


def fetch_jwks(issuer: str, session: requests.Session | None = None) -> dict[str, Any]:
    """The issuer's live JWKS, ``{"keys": [...]}``, found through its discovery document."""
    http = new_session() if session is None else session
    try:
        config_url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
        config = _get_json(http, config_url, f"the OpenID configuration of {issuer}")
        if not isinstance(config, dict):
            raise TrustError(
                f"the OpenID configuration at {config_url} is not a JSON object", hint=_ISSUER_HINT
            )
        # Section 4.3: a document naming another issuer could hand out that issuer's keys.
        if config.get("issuer") != issuer:
            raise TrustError(
                f"the OpenID configuration at {config_url} is for issuer "
                f"{config.get('issuer')!r}, not {issuer!r}",
                hint=_ISSUER_HINT,
            )
        jwks_uri = config.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise TrustError(
                f"the OpenID configuration at {config_url} has no jwks_uri", hint=_ISSUER_HINT
            )
        jwks = _get_json(http, jwks_uri, f"the JWKS of {issuer}")
    finally:
        if session is None:
            http.close()
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not all(isinstance(key, dict) for key in keys):
        raise TrustError(
            f'the JWKS at {jwks_uri} is not {{"keys": [...]}} with a JSON object per key',
            hint=_ISSUER_HINT,
        )
    return {"keys": keys}


class JWKSCache:
    """Each issuer's live JWKS, fetched at most once per run (thread-safe): signing checks its
    fresh ID token against it, and verification is an :class:`~opk_sign.pktoken.OPKeySource` of it.

    A failed fetch is remembered too: a batch of a thousand images asks an unreachable issuer
    once and reports the same trust error for each, instead of retrying a thousand times. Not
    when the caller's own budget (an image's deadline) ran out: that says nothing of the issuer,
    and the next image asks again.
    """

    def __init__(self, session: requests.Session | None = None) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._jwks: dict[str, dict[str, Any] | TrustError] = {}
        #: Fetches made (each issuer once), for tests and benchmarks.
        self.fetches = 0

    def get(self, issuer: str) -> dict[str, Any]:
        # Held across the fetch so concurrent workers of one run ask the issuer once.
        with self._lock:
            if issuer not in self._jwks:
                self.fetches += 1
                try:
                    self._jwks[issuer] = fetch_jwks(issuer, self._session)
                except _OutOfTime as err:
                    if err.outer:
                        raise TrustError(err.message, hint=err.hint) from None
                    self._jwks[issuer] = err
                except TrustError as err:
                    self._jwks[issuer] = err
            found = self._jwks[issuer]
        if isinstance(found, TrustError):
            raise TrustError(found.message, hint=found.hint)
        return found

    def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Mapping[str, Any]:
        from opk_sign.pktoken.verify import select_key

        keys: list[Mapping[str, Any]] = self.get(issuer)["keys"]
        return select_key(keys, issuer, kid)
