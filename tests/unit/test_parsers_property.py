"""Property tests: any malformed input to any parser raises an OpkSignError, never another
exception (no KeyError, ValueError, UnicodeError, RecursionError ... escapes)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opk_sign.errors import OpkSignError
from opk_sign.jose import CompactJWS, b64encode, parse_json_object, public_key_from_jwk
from opk_sign.pktoken import GITHUB_ISSUER, PKToken, StaticJWKS, verify_osm, verify_pktoken
from tests.helpers import Minted, mint

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

MINTED: Minted = mint(now=1_790_000_000)
VALID_JSON = json.loads(MINTED.pkt.to_json())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
b64_text = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/. :", max_size=60
)


def only_opk_errors(parse: Callable[[], object]) -> None:
    with contextlib.suppress(OpkSignError):
        parse()


@SETTINGS
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_pktoken_json_from_arbitrary_bytes(data: bytes) -> None:
    only_opk_errors(lambda: PKToken.from_json(data))


@SETTINGS
@given(json_values)
def test_pktoken_json_from_arbitrary_json(value: Any) -> None:
    only_opk_errors(lambda: PKToken.from_json(json.dumps(value)))


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    """Structurally plausible PK tokens: the valid one with a member replaced."""

    def mutate(path: tuple[str, ...], value: Any) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(json.dumps(VALID_JSON))
        target: Any = doc
        for key in path[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = path[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
        return doc

    paths = st.sampled_from(
        [
            ("payload",),
            ("signatures",),
            ("signatures", "0"),
            ("signatures", "0", "protected"),
            ("signatures", "1", "protected"),
            ("signatures", "1", "signature"),
            ("signatures", "0", "header"),
        ]
    )
    return st.builds(mutate, paths, json_values | b64_text)


@SETTINGS
@given(_mutations())
def test_pktoken_mutated_json_parses_or_fails_cleanly(doc: dict[str, Any]) -> None:
    def parse_and_verify() -> None:
        pkt = PKToken.from_json(json.dumps(doc))
        verify_pktoken(pkt, StaticJWKS(GITHUB_ISSUER, MINTED.jwks), now=1_790_000_000)

    only_opk_errors(parse_and_verify)


@SETTINGS
@given(st.lists(b64_text, min_size=0, max_size=8).map(":".join), st.none() | b64_text)
def test_pktoken_compact_arbitrary(tokens: str, fresh: str | None) -> None:
    text = tokens if fresh is None else f"{tokens}.{fresh}"
    only_opk_errors(lambda: PKToken.from_compact(text))


@SETTINGS
@given(st.binary(max_size=200))
def test_pktoken_compact_bytes(data: bytes) -> None:
    only_opk_errors(lambda: PKToken.from_compact(data))


@SETTINGS
@given(st.text(max_size=200) | st.lists(b64_text, max_size=5).map(".".join))
def test_compact_jws_and_osm_arbitrary(text: str) -> None:
    only_opk_errors(lambda: CompactJWS.parse(text))
    only_opk_errors(lambda: verify_osm(MINTED.pkt, text))


@SETTINGS
@given(json_values, json_values, st.binary(max_size=40))
def test_osm_with_arbitrary_header_and_payload(header: Any, extra: Any, payload: bytes) -> None:
    protected = b64encode(json.dumps(header).encode())
    osm = f"{protected}.{b64encode(payload)}.{b64encode(json.dumps(extra).encode())}"
    only_opk_errors(lambda: verify_osm(MINTED.pkt, osm))


jwk_like = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["RSA", "EC", "OKP", "oct", ""]) | json_values,
        "crv": st.sampled_from(["P-256", "Ed25519", "P-384"]) | json_values,
        "n": b64_text | json_values,
        "e": st.sampled_from(["AQAB", "Aw", "AA", ""]) | b64_text,
        "x": b64_text | st.just(b64encode(bytes(32))),
        "y": b64_text | st.just(b64encode(bytes(32))),
        "alg": st.sampled_from(["ES256", "RS256", "EdDSA"]),
    },
)


@SETTINGS
@given(jwk_like | json_values)
def test_jwk_arbitrary(jwk: Any) -> None:
    only_opk_errors(lambda: public_key_from_jwk(jwk))


@SETTINGS
@given(json_values)
def test_cic_header_arbitrary(header: Any) -> None:
    """A CIC protected header of any shape, correctly signed, fails cleanly."""
    protected = b64encode(json.dumps(header).encode())
    sig = MINTED.user_key.sign(f"{protected}.{MINTED.pkt.payload_b64}".encode())
    pkt = PKToken(
        MINTED.pkt.payload_b64, MINTED.pkt.op, type(MINTED.pkt.cic)(protected, b64encode(sig))
    )
    only_opk_errors(
        lambda: verify_pktoken(pkt, StaticJWKS(GITHUB_ISSUER, MINTED.jwks), now=1_790_000_000)
    )


@SETTINGS
@given(st.text(max_size=100) | st.binary(max_size=100))
def test_parse_json_object_arbitrary(data: str | bytes) -> None:
    only_opk_errors(lambda: parse_json_object(data, "doc"))


def test_deep_nesting_is_a_format_error() -> None:
    with pytest.raises(OpkSignError):
        parse_json_object("[" * 100_000 + "]" * 100_000, "doc")
