"""Asking a timestamp authority for an RFC 3161 timestamp over a signature (HTTP POST).

What a timestamp proves and how it is checked: :mod:`opk_sign.trust.timestamp` (docs/timestamps.md).
"""

from __future__ import annotations

import hashlib
from typing import Final

import requests
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    decode_timestamp_response,
)

from opk_sign.bundle import MAX_TIMESTAMP_BYTES, Timestamp
from opk_sign.errors import TimestampError
from opk_sign.http import DEFAULT_HTTP, post_within
from opk_sign.trust.timestamp import SHA256_OID, parse_token
from opk_sign.urls import require_secure_url

#: The public TSA signing uses unless told otherwise: Sigstore's timestamp authority.
DEFAULT_TIMESTAMP_URL: Final = "https://timestamp.sigstore.dev/api/v1/timestamp"
#: Environment variable naming the TSA (CLI and action), e.g. a private or loopback one.
TIMESTAMP_URL_VAR: Final = "OPK_SIGN_TIMESTAMP_URL"

REQUEST_MEDIA_TYPE: Final = "application/timestamp-query"
RESPONSE_MEDIA_TYPE: Final = "application/timestamp-reply"
#: The status and the token: a response is barely larger than the token it carries.
MAX_RESPONSE_BYTES: Final = MAX_TIMESTAMP_BYTES + 1024
_TSA_HINT: Final = (
    "check the TSA URL (--timestamp-url, OPK_SIGN_TIMESTAMP_URL, or the action's timestamp-url "
    "input), or sign without timestamps (--no-timestamp)"
)


def request_timestamp(
    url: str, signature: bytes, session: requests.Session | None = None
) -> Timestamp:
    """A timestamp over ``signature`` from the TSA at ``url`` (RFC 3161 over HTTP POST).

    The response must grant the request and answer exactly it: same nonce, SHA-256 imprint of
    ``signature``, the TSA's certificate included. Transport failures raise
    :class:`NetworkError` (:class:`~opk_sign.deadline.DeadlineExceeded` when the exchange ran out
    of time: ``HTTPConfig.exchange_timeout`` of the session, within any ``deadline.within``); a
    refusal or a response that does not match, :class:`TimestampError`.
    The TSA's certificate chain is not checked here: that is the verifier's trust decision.
    """
    require_secure_url(url, "the timestamp authority URL")
    if not signature:
        raise TimestampError("nothing to timestamp: the signature is empty")
    request = (
        TimestampRequestBuilder()
        .data(signature)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    body = _post(url, request.as_bytes(), session)
    try:
        response = decode_timestamp_response(body)
        status = response.status
    except ValueError as err:
        raise TimestampError(
            f"the timestamp authority {url} answered something that is not an RFC 3161 "
            f"response: {err}",
            hint=_TSA_HINT,
        ) from None
    if status != PKIStatus.GRANTED:
        detail = "; ".join(response.status_string) or "no reason given"
        raise TimestampError(
            f"the timestamp authority {url} refused the request: status {status} ({detail})",
            hint=_TSA_HINT,
        )
    try:
        token = response.time_stamp_token()
    except ValueError as err:
        raise TimestampError(f"the timestamp authority {url} sent no token: {err}") from None
    timestamp = Timestamp(token)
    stated = parse_token(token)
    info = stated.tst_info
    if info.nonce != request.nonce:
        raise TimestampError(
            f"the timestamp authority {url} answered another request (nonce {info.nonce}, "
            f"sent {request.nonce})"
        )
    if info.message_imprint.hash_algorithm != SHA256_OID or info.message_imprint.message != (
        hashlib.sha256(signature).digest()
    ):
        raise TimestampError(
            f"the timestamp authority {url} timestamped other data than the signature sent"
        )
    if not stated.signed_data.certificates:
        raise TimestampError(
            f"the timestamp authority {url} left out its certificate although it was requested"
        )
    return timestamp


def _post(url: str, query: bytes, session: requests.Session | None) -> bytes:
    status, body = post_within(
        session,
        DEFAULT_HTTP,
        url,
        service="the timestamp authority",
        activity=f"the timestamp request to {url}",
        hint=_TSA_HINT,
        limit=MAX_RESPONSE_BYTES,
        too_large=TimestampError,
        data=query,
        headers={"Content-Type": REQUEST_MEDIA_TYPE, "Accept": RESPONSE_MEDIA_TYPE},
    )
    if status not in (200, 201):
        text = body[:200].decode("utf-8", "replace").strip()
        raise TimestampError(
            f"the timestamp authority {url} answered HTTP {status}" + (f": {text}" if text else ""),
            hint=_TSA_HINT,
        )
    return body
