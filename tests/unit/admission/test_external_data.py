"""The external data provider request and response (issue 15): Gatekeeper's shape."""

from __future__ import annotations

import json

import pytest

from opk_sign.admission import external_data
from opk_sign.admission.decision import Decision
from opk_sign.errors import UsageError


def body(**document: object) -> bytes:
    return json.dumps(document).encode()


def test_parse_request_keeps_order_and_drops_repeats() -> None:
    api, keys = external_data.parse_request(
        body(
            apiVersion="externaldata.gatekeeper.sh/v1beta1",
            kind="ProviderRequest",
            request={"keys": ["b:1", "a:1", "b:1"]},
        )
    )
    assert api == "externaldata.gatekeeper.sh/v1beta1"
    assert keys == ["b:1", "a:1"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not JSON"),
        (b"[1]", "not a JSON object"),
        (body(apiVersion="v1", request={"keys": []}), "apiVersion 'v1'"),
        (body(kind="Other", request={"keys": []}), "kind 'Other'"),
        (body(kind="ProviderRequest"), 'no "request" object'),
        (body(request={"keys": "a"}), "must be a list"),
        (body(request={"keys": [1]}), "must be a list"),
        (body(request={"keys": [""]}), "1 to 1024 characters"),
        (body(request={"keys": ["x" * 1025]}), "1 to 1024 characters"),
        (b"[" * 100_000, "not JSON"),
        # Strict: two "request" members (which one counts?) and NaN are refused (red team).
        (b'{"request": {"keys": ["a:1"]}, "request": {"keys": ["b:1"]}}', "duplicate"),
        (b'{"request": {"keys": ["a:1"]}, "x": NaN}', "not JSON"),
    ],
)
def test_bad_requests(data: bytes, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        external_data.parse_request(data)
    assert message in caught.value.message


def test_too_many_keys() -> None:
    with pytest.raises(UsageError, match="at most 3"):
        external_data.parse_request(body(request={"keys": ["a", "b", "c", "d"]}), max_keys=3)


def test_response_items() -> None:
    refused = Decision("a:1", False, "no-signatures", 10, "a signature", "none", "sha256:1")
    allowed = Decision("b:1", True, "verified", 0, "a signature", "verified", "sha256:2")
    document = external_data.response(
        [external_data.item("a:1", refused), external_data.item("b:1", allowed)]
    )
    assert document["kind"] == "ProviderResponse"
    first, second = document["response"]["items"]
    assert first["error"] == refused.reason() and first["value"]["allowed"] is False
    assert "error" not in second and second["value"]["exitCode"] == 0
    assert "systemError" not in document["response"]
    failed = external_data.response([], system_error="boom")
    assert failed["response"]["systemError"] == "boom"
