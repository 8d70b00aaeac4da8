"""Writing to a Rekor v2 log: ``POST {url}/api/v2/log/entries`` (sigstore/rekor-tiles).

The log answers only once a checkpoint holds the new entry (its checkpoint interval, 1 s in the
tests and some seconds in production), with a ``TransparencyLogEntry`` carrying the inclusion
proof and that checkpoint: everything a verifier needs offline. The answer is checked as a
verifier would before it goes into a bundle (same body, proof leading to the checkpoint's root),
but not under a trusted key: which keys to trust is the verifier's decision.
"""

from __future__ import annotations

from typing import Final

import requests

from opk_sign.errors import FormatError, TransparencyError
from opk_sign.http import HTTPConfig, post_within
from opk_sign.jose import JSONObject, parse_json_object
from opk_sign.tlog.checkpoint import Checkpoint
from opk_sign.tlog.entry import LogEntry
from opk_sign.tlog.hashedrekord import SignedDigest, canonical_body, request_body
from opk_sign.tlog.merkle import leaf_hash, verify_inclusion
from opk_sign.tlog.note import Note
from opk_sign.urls import require_secure_url

ENTRIES_PATH: Final = "/api/v2/log/entries"
#: A TransparencyLogEntry is the body (a few KiB with the PK token) and a proof: well under this.
MAX_RESPONSE_BYTES: Final = 256 * 1024
#: Rekor v2 answers once a checkpoint holds the entry; clients are told to wait at least 20 s.
LOG_TIMEOUT: Final = HTTPConfig(read_timeout=60.0, exchange_timeout=90.0, retries=2)
_HINT: Final = (
    "check the log URL (--tlog-url, OPK_SIGN_TLOG_URL, or the action's tlog-url input), or "
    "sign without logging (--tlog never)"
)


def log_entry(
    url: str,
    entry: SignedDigest,
    certificate_der: bytes,
    session: requests.Session | None = None,
) -> JSONObject:
    """Log one hashedrekord entry; the ``TransparencyLogEntry`` (JSON) the log returned,
    checked to be this entry's with an inclusion proof leading to its checkpoint's root."""
    require_secure_url(url, "the transparency log URL")
    endpoint = url.rstrip("/") + ENTRIES_PATH
    answer = _post(endpoint, request_body(entry, certificate_der), session)
    try:
        data = parse_json_object(answer, "transparency log answer")
        parsed = LogEntry.from_dict(data)
        checkpoint = Checkpoint.parse_text(Note.parse(parsed.proof.checkpoint).text)
    except FormatError as err:
        raise TransparencyError(f"the transparency log {url} answered: {err.message}") from None
    body = canonical_body(entry, certificate_der)
    if parsed.body != body:
        raise TransparencyError(f"the transparency log {url} logged another body than was sent")
    verify_inclusion(
        parsed.log_index,
        checkpoint.size,
        leaf_hash(body),
        parsed.proof.hashes,
        checkpoint.root_hash,
    )
    return data


def _post(url: str, document: JSONObject, session: requests.Session | None) -> bytes:
    status, body = post_within(
        session,
        LOG_TIMEOUT,
        url,
        service="the transparency log",
        activity=f"the transparency log request to {url}",
        hint=_HINT,
        limit=MAX_RESPONSE_BYTES,
        too_large=TransparencyError,
        json=document,
        headers={"Accept": "application/json"},
    )
    if status not in (200, 201):
        text = body[:300].decode("utf-8", "replace").strip()
        raise TransparencyError(
            f"the transparency log {url} refused the entry: HTTP {status}"
            + (f": {text}" if text else ""),
            hint=_HINT,
        )
    return body
