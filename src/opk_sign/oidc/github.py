"""Getting the job's ID token from GitHub Actions (specs/openpubkey.md, "Getting the GitHub
Actions ID token").

Two secrets pass through here: the request token that authorizes the call and the ID token it
returns. Neither may reach an exception message or a log, so errors name statuses and variables,
never values, and anything quoted from a library is redacted first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from opk_sign import deadline
from opk_sign.errors import FormatError, NetworkError, TokenRequestError, UsageError
from opk_sign.http import DEFAULT_HTTP, new_session
from opk_sign.issuer import GITHUB_ISSUER
from opk_sign.jose import parse_json
from opk_sign.urls import require_secure_url

log = logging.getLogger(__name__)

REQUEST_URL_VAR = "ACTIONS_ID_TOKEN_REQUEST_URL"
REQUEST_TOKEN_VAR = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 - a variable name

_PERMISSION_HINT = (
    "give the job `permissions: id-token: write` (a job that calls a reusable workflow must "
    "grant it too)"
)


def _redact(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def _missing_variables_error(env: Mapping[str, str], missing: list[str]) -> TokenRequestError:
    names = " and ".join(missing)
    if env.get("GITHUB_ACTIONS") != "true":
        return TokenRequestError(
            f"cannot request a GitHub Actions ID token: not running in GitHub Actions "
            f"({names} not set)",
            hint="run in a GitHub Actions job with `permissions: id-token: write`, or for local "
            "testing export the variables `opk-sign dev github-oidc` prints",
        )
    hint = _PERMISSION_HINT
    if env.get("GITHUB_EVENT_NAME") == "pull_request":
        hint += (
            "; this run was triggered by pull_request, and GitHub never gives an ID token to "
            "pull requests from forks: sign on push, release or workflow_dispatch instead"
        )
    return TokenRequestError(f"this job may not request an ID token: {names} not set", hint=hint)


def _with_audience(request_url: str, audience: str) -> str:
    # The URL already carries parameters (api-version); keep them and set audience once.
    parts = urlsplit(request_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "audience"]
    query.append(("audience", audience))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return (
            "the request token is valid only inside the job that received it; do not reuse "
            f"{REQUEST_TOKEN_VAR} from another job or a saved environment"
        )
    if status == 400:
        return "the token service refused the request; the audience may be malformed"
    return "GitHub's token service may be having trouble; re-run the job"


def request_github_id_token(
    audience: str,
    *,
    env: Mapping[str, str] = os.environ,
    session: requests.Session | None = None,
) -> str:
    """The job's ID token with ``aud`` = ``audience``, from the runner's token endpoint."""
    if not audience:
        raise UsageError("the ID token audience is empty", hint="pass the CIC commitment")
    request_url = env.get(REQUEST_URL_VAR, "")
    request_token = env.get(REQUEST_TOKEN_VAR, "")
    missing = [
        name
        for name, value in ((REQUEST_URL_VAR, request_url), (REQUEST_TOKEN_VAR, request_token))
        if not value
    ]
    if missing:
        raise _missing_variables_error(env, missing)
    try:
        require_secure_url(request_url, REQUEST_URL_VAR)
    except UsageError as err:
        # The bearer token must not cross a network in the clear.
        raise TokenRequestError(err.message, hint=err.hint) from None

    url = _with_audience(request_url, audience)
    host = urlsplit(request_url).netloc
    log.debug("requesting an ID token from %s for audience %s", host, audience)
    own_session = session is None
    http = new_session() if session is None else session
    # One exchange, answer included (not streamed), bounded by the session's deadline: running
    # out of time raises DeadlineExceeded (a NetworkError) naming the host, never a secret.
    label = f"the ID token request to the GitHub Actions token service at {host}"
    try:
        with deadline.within(None, label):
            response = http.get(
                url,
                headers={"Authorization": f"Bearer {request_token}", "Accept": "application/json"},
                timeout=DEFAULT_HTTP.timeout,
            )
    except requests.RequestException as exc:
        raise NetworkError(
            f"could not reach the GitHub Actions token service at {host}: "
            f"{_redact(str(exc), request_token)}",
            hint="check the runner's network; the request is retried on resets and 5xx",
        ) from None
    finally:
        if own_session:
            http.close()

    if not 200 <= response.status_code < 300:
        raise TokenRequestError(
            f"the GitHub Actions token service answered HTTP {response.status_code} "
            f"{response.reason or ''}".rstrip(),
            hint=_status_hint(response.status_code),
        )
    try:  # the token service is GitHub's, but the answer is still parsed under limits
        document = parse_json(response.content, "token answer", max_bytes=256 * 1024)
    except FormatError:
        document = None
    value = document.get("value") if isinstance(document, dict) else None
    if not isinstance(value, str) or value.count(".") != 2:
        raise TokenRequestError(
            "the GitHub Actions token service answered without an ID token "
            '(expected JSON {"count": N, "value": "<jwt>"})',
            hint=f"{REQUEST_URL_VAR} should point at GitHub's token service; re-run the job",
        )
    return value


def github_issuer(env: Mapping[str, str]) -> str:
    """The issuer GitHub uses for this server: github.com, GHE.com data residency, or GHES."""
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    host = urlsplit(server).hostname or ""
    if host == "github.com":
        return GITHUB_ISSUER
    if host.endswith(".ghe.com"):
        return f"https://token.actions.{host}"
    return f"{server}/_services/token"


class GitHubActionsProvider:
    """ID tokens from the GitHub Actions runner (the TokenProvider for GitHub)."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] = os.environ,
        session: requests.Session | None = None,
        issuer: str | None = None,
    ) -> None:
        self._env = env
        self._session = session
        # The emulator's issuer cannot be derived from the environment: pass it explicitly.
        self._issuer = issuer

    @property
    def issuer_hint(self) -> str:
        return self._issuer or github_issuer(self._env)

    def id_token(self, audience: str) -> str:
        return request_github_id_token(audience, env=self._env, session=self._session)
