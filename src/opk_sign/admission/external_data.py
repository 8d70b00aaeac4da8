"""The external data provider protocol (Gatekeeper's ``externaldata.gatekeeper.sh``, which a
Kyverno ``apiCall`` posts just as well): a ``ProviderRequest`` with image references as keys, and
a ``ProviderResponse`` with an item per key. Pure logic.

Request::

    {"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest",
     "request": {"keys": ["ghcr.io/octo-org/app@sha256:...", ...]}}

Response: each item's ``value`` says what was decided; ``error`` holds the refusal's reason (so a
Gatekeeper template denies on ``responses.errors``, a Kyverno rule on the items' ``error``);
``systemError`` is set when the request as a whole could not be decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from opk_sign.admission.decision import Decision
from opk_sign.errors import FormatError, UsageError
from opk_sign.jose import parse_json

API_VERSIONS: Final = ("externaldata.gatekeeper.sh/v1beta1", "externaldata.gatekeeper.sh/v1alpha1")
REQUEST_KIND: Final = "ProviderRequest"
RESPONSE_KIND: Final = "ProviderResponse"
#: Keys in one request: a pod's images, or a batch a policy test sends; not a fleet.
MAX_KEYS: Final = 1000
MAX_KEY_LENGTH: Final = 1024


def parse_request(data: bytes, max_keys: int = MAX_KEYS) -> tuple[str, list[str]]:
    """The request's apiVersion and keys (each once, in order); UsageError saying what is wrong."""
    try:  # strict: duplicate members (which one would count?), NaN, depth; the server bounds size
        document = parse_json(data, "the request body", max_bytes=max(len(data), 1))
    except FormatError as err:
        raise UsageError(f"the request body is not JSON we accept: {err.message}") from None
    if not isinstance(document, dict):
        raise UsageError("the request body is not a JSON object")
    api_version = document.get("apiVersion", API_VERSIONS[0])
    if api_version not in API_VERSIONS:
        raise UsageError(f"apiVersion {api_version!r}: expected one of {', '.join(API_VERSIONS)}")
    kind = document.get("kind", REQUEST_KIND)
    if kind != REQUEST_KIND:
        raise UsageError(f"kind {kind!r}: expected {REQUEST_KIND}")
    request = document.get("request")
    if not isinstance(request, dict):
        raise UsageError('no "request" object')
    keys = request.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise UsageError('"request.keys" must be a list of image references')
    if len(keys) > max_keys:
        raise UsageError(f"{len(keys)} keys in one request; at most {max_keys}")
    for key in keys:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise UsageError(f"a key must be 1 to {MAX_KEY_LENGTH} characters")
    return api_version, list(dict.fromkeys(keys))


def item(key: str, decision: Decision) -> dict[str, Any]:
    value = {
        "allowed": decision.allowed,
        "outcome": decision.outcome,
        "exitCode": decision.exit_code,
        "digest": decision.digest,
        "reason": decision.reason(),
    }
    if decision.identity:
        value["identity"] = decision.identity
    entry: dict[str, Any] = {"key": key, "value": value}
    if not decision.allowed:
        entry["error"] = decision.reason()
    return entry


def response(
    items: Sequence[dict[str, Any]],
    *,
    api_version: str = API_VERSIONS[0],
    system_error: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"idempotent": True, "items": list(items)}
    if system_error:
        body["systemError"] = system_error
    return {"apiVersion": api_version, "kind": RESPONSE_KIND, "response": body}
