"""Strict encodings and JWK handling: every malformed input is a FormatError naming the field."""

from __future__ import annotations

import json

import pytest

from opk_sign.errors import FormatError, SignatureError
from opk_sign.jose import (
    CompactJWS,
    b64decode,
    b64encode,
    go_json,
    jwk_thumbprint,
    parse_json_object,
    public_key_from_jwk,
    verify,
)
from opk_sign.pktoken import UserKey

# RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY3"
    "68QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4"
    "lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def test_rfc7638_thumbprint() -> None:
    assert jwk_thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xfe", bytes(range(256))])
def test_b64_round_trip(data: bytes) -> None:
    assert b64decode(b64encode(data)) == data


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("YQ==", "only A-Z"),  # padding
        ("YQ=", "only A-Z"),
        ("Y Q", "only A-Z"),  # whitespace
        ("YR", "non-canonical"),  # trailing bits set: 'a' is YQ
        ("Y", "impossible length"),
        ("a+b/", "only A-Z"),  # standard alphabet
        ("é", "only A-Z"),
    ],
)
def test_b64_strict(text: str, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        b64decode(text, "field-x")


def test_b64_error_names_field() -> None:
    with pytest.raises(FormatError, match="^my-field"):
        b64decode("YQ==", "my-field")


def test_go_json_matches_go_marshal() -> None:
    obj = {"b": 1, "a": {"z": "<&>", "y": [True, None, 2.0, 1.5]}, "\u2028": "é"}
    assert go_json(obj) == (
        b'{"a":{"y":[true,null,2,1.5],"z":"\\u003c\\u0026\\u003e"},"b":1,"\\u2028":"\xc3\xa9"}'
    )


def test_go_json_sorts_by_utf8_bytes() -> None:
    assert go_json({"é": 1, "z": 2, "Z": 3}) == '{"Z":3,"z":2,"é":1}'.encode()


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ('{"a":1,"a":2}', "duplicate"),
        ('{"a":NaN}', "NaN"),
        ("[1]", "expected a JSON object"),
        ("{", "not valid JSON"),
        ("[" * 100 + "]" * 100, "deeper|not valid JSON|expected"),
    ],
)
def test_parse_json_strict(doc: str, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        parse_json_object(doc, "doc")


def test_parse_json_rejects_invalid_utf8() -> None:
    with pytest.raises(FormatError, match="not UTF-8"):
        parse_json_object(b'{"a":"\xff"}', "doc")


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        ({"kty": "RSA", "e": "AQAB"}, "member 'n' is missing"),
        ({"kty": "RSA", "n": RFC7638_JWK["n"]}, "member 'e' is missing"),
        ({"kty": "RSA", "n": RFC7638_JWK["n"], "e": "AQAB=="}, "base64url"),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "at least 1024 bits"),
        ({"kty": "RSA", "n": RFC7638_JWK["n"], "e": "Ag"}, "exponent must be odd"),
        ({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}, "P-256"),
        (
            {
                "kty": "EC",
                "crv": "P-256",
                "x": b64encode(b"\x01" * 32),
                "y": b64encode(b"\x02" * 32),
            },
            "invalid key",
        ),
        ({"kty": "oct", "k": "AA"}, "unsupported kty"),
        ({**RFC7638_JWK, "d": "AA"}, "private key material"),
    ],
)
def test_jwk_errors_name_the_member(jwk: dict[str, str], reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        public_key_from_jwk(jwk)


def test_compact_jws_segments() -> None:
    with pytest.raises(FormatError, match="3 dot-separated segments"):
        CompactJWS.parse("a.b")
    with pytest.raises(FormatError, match="protected header"):
        CompactJWS.parse("e30=.e30.AA")
    token = CompactJWS.parse(f"{b64encode(b'{}')}.{b64encode(b'x')}.AA")
    assert token.payload == b"x"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_user_key_signatures(alg: str) -> None:
    key = UserKey.generate(alg)
    sig = key.sign(b"data")
    verify(key.public_key, alg, sig, b"data", "test")
    with pytest.raises(SignatureError, match="does not verify"):
        verify(key.public_key, alg, sig, b"datb", "test")
    if alg == "ES256":
        assert len(sig) == 64  # raw r||s, not DER
        with pytest.raises(SignatureError, match="64 bytes"):
            verify(key.public_key, alg, sig + b"\x00", b"data", "test")
    assert json.loads(go_json(key.public_jwk))["alg"] == alg
