"""The JWKS archive: format, merging snapshots, the seen window, and key source chains."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opk_sign.errors import EXIT_INVALID_SIGNATURE, EXIT_TRUST, IssuerError, TrustError, UsageError
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS, verify_pktoken
from opk_sign.pktoken.verify import select_key
from opk_sign.trust.jwks_archive import WINDOW_MARGIN, JWKSArchive, KeySourceChain
from tests.helpers import mint, op_key
from tests.services.oidc import generated_op_key

T0 = 1_700_000_000
DAY = 86_400


def jwk(index: int = 0) -> dict[str, Any]:
    return generated_op_key(index).public_jwk()


def jwks(*indexes: int) -> dict[str, Any]:
    return {"keys": [jwk(i) for i in indexes]}


def test_observe_records_first_and_last_seen_and_never_drops_keys() -> None:
    archive = JWKSArchive(GITHUB_ISSUER).observe(jwks(0), T0)
    archive = archive.observe(jwks(0, 1), T0 + DAY)
    archive = archive.observe(jwks(1), T0 + 2 * DAY)  # key 0 rotated out of the live JWKS
    seen = {k.kid: (k.first_seen, k.last_seen) for k in archive.keys}
    assert seen == {jwk(0)["kid"]: (T0, T0 + DAY), jwk(1)["kid"]: (T0 + DAY, T0 + 2 * DAY)}


def test_observe_in_any_order_gives_the_same_archive() -> None:
    forward = JWKSArchive(GITHUB_ISSUER).observe(jwks(0), T0).observe(jwks(0), T0 + DAY)
    backward = JWKSArchive(GITHUB_ISSUER).observe(jwks(0), T0 + DAY).observe(jwks(0), T0)
    assert forward == backward
    assert forward.to_json() == backward.to_json()


def test_a_kid_whose_key_material_changed_is_refused() -> None:
    archive = JWKSArchive(GITHUB_ISSUER).observe(jwks(0), T0)
    impostor = {**jwk(1), "kid": jwk(0)["kid"]}
    with pytest.raises(TrustError, match="other key material") as caught:
        archive.observe({"keys": [impostor]}, T0 + DAY)
    assert caught.value.hint


def test_same_key_with_other_metadata_is_the_same_key() -> None:
    archive = JWKSArchive(GITHUB_ISSUER).observe(jwks(0), T0)
    padded = {**jwk(0), "n": "AAAA" + jwk(0)["n"], "x5c": []}  # zero bytes first: same modulus
    again = archive.observe({"keys": [padded]}, T0 + DAY)
    assert again.keys[0].last_seen == T0 + DAY
    assert again.keys[0].jwk == jwk(0)  # the first-seen JWK is kept


@pytest.mark.parametrize(
    ("snapshot", "message"),
    [
        ({"keys": {}}, "'keys' list"),
        ([], "'keys' list"),
        ({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}, "no 'kid'"),
        ({"keys": [{**jwk(0), "d": "AQAB"}]}, "private key material"),
        ({"keys": [{**jwk(0), "kty": "EC"}]}, "kty must be 'RSA'"),
        ({"keys": [jwk(0), jwk(0)]}, "twice"),
    ],
)
def test_bad_snapshots_are_refused(snapshot: Any, message: str) -> None:
    with pytest.raises(TrustError, match=message):
        JWKSArchive(GITHUB_ISSUER).observe(snapshot, T0)


@pytest.mark.parametrize("at", [0, -1, True, 1.5])
def test_snapshot_time_must_be_positive_seconds(at: Any) -> None:
    with pytest.raises(TrustError, match="positive integer"):
        JWKSArchive(GITHUB_ISSUER).observe(jwks(0), at)


# --- the format


def test_round_trip_keeps_unknown_members() -> None:
    archive = JWKSArchive(GITHUB_ISSUER).observe(jwks(0, 1), T0)
    doc = json.loads(archive.to_json())
    doc["comment"] = "kept"
    doc["keys"][0]["note"] = {"also": "kept"}
    parsed = JWKSArchive.from_json(json.dumps(doc).encode())
    assert json.loads(parsed.to_json()) == doc
    assert parsed == archive


def test_documented_example_parses() -> None:
    doc = {
        "issuer": GITHUB_ISSUER,
        "keys": [{"jwk": jwk(0), "firstSeen": 1700000000, "lastSeen": 1700086400}],
    }
    archive = JWKSArchive.from_json(json.dumps(doc))
    assert archive.keys[0].window == (1700000000 - WINDOW_MARGIN, 1700086400 + WINDOW_MARGIN)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("issuer"), "'issuer'"),
        (lambda d: d.update(keys={}), "'keys' must be a list"),
        (lambda d: d["keys"].append("x"), r"keys\[1\] must be a JSON object"),
        (lambda d: d["keys"][0].update(firstSeen="1"), "firstSeen must be a positive integer"),
        (lambda d: d["keys"][0].update(lastSeen=True), "lastSeen must be a positive integer"),
        (lambda d: d["keys"][0].update(firstSeen=T0 + 1, lastSeen=T0), "after lastSeen"),
        (lambda d: d["keys"][0]["jwk"].pop("kid"), "no 'kid'"),
        (lambda d: d["keys"][0]["jwk"].update(d="AQAB"), "private key material"),
        (lambda d: d["keys"].append(dict(d["keys"][0])), "more than once"),
    ],
)
def test_strict_parse(mutate: Any, message: str) -> None:
    doc = json.loads(JWKSArchive(GITHUB_ISSUER).observe(jwks(0), T0).to_json())
    mutate(doc)
    with pytest.raises(TrustError, match=message) as caught:
        JWKSArchive.from_json(json.dumps(doc))
    assert caught.value.exit_code == EXIT_TRUST


@pytest.mark.parametrize("data", [b"", b"[]", b"{", b'{"issuer": "a", "issuer": "b", "keys": []}'])
def test_not_an_archive(data: bytes) -> None:
    with pytest.raises(TrustError, match="JWKS archive"):
        JWKSArchive.from_json(data)


# --- the window


@pytest.fixture(scope="module")
def archive() -> JWKSArchive:
    return JWKSArchive(GITHUB_ISSUER).observe(jwks(0), T0).observe(jwks(0), T0 + 10 * DAY)


@pytest.mark.parametrize(
    "iat", [T0 - WINDOW_MARGIN, T0, T0 + 5 * DAY, T0 + 10 * DAY + WINDOW_MARGIN]
)
def test_iat_inside_the_seen_window(archive: JWKSArchive, iat: int) -> None:
    assert archive.op_key(GITHUB_ISSUER, jwk(0)["kid"], iat) == jwk(0)


@pytest.mark.parametrize("iat", [T0 - WINDOW_MARGIN - 1, T0 + 10 * DAY + WINDOW_MARGIN + 1])
def test_iat_just_outside_the_seen_window(archive: JWKSArchive, iat: int) -> None:
    with pytest.raises(IssuerError, match="outside that window") as caught:
        archive.op_key(GITHUB_ISSUER, jwk(0)["kid"], iat)
    assert caught.value.exit_code == EXIT_INVALID_SIGNATURE
    assert caught.value.hint


def test_unknown_kid_is_the_error_select_key_raises(archive: JWKSArchive) -> None:
    with pytest.raises(IssuerError) as from_select_key:
        select_key([jwk(0)], GITHUB_ISSUER, "nope")
    with pytest.raises(IssuerError, match="not in the JWKS archive") as from_archive:
        archive.op_key(GITHUB_ISSUER, "nope", T0)
    assert type(from_archive.value) is type(from_select_key.value)
    assert from_archive.value.exit_code == EXIT_INVALID_SIGNATURE


def test_other_issuer_is_refused(archive: JWKSArchive) -> None:
    with pytest.raises(IssuerError, match="not of 'https://other.example'"):
        archive.op_key("https://other.example", jwk(0)["kid"], T0)


def test_no_kid_takes_the_one_key_in_use(archive: JWKSArchive) -> None:
    assert archive.op_key(GITHUB_ISSUER, None, T0) == jwk(0)
    two = archive.observe(jwks(0, 1), T0 + 10 * DAY)
    with pytest.raises(IssuerError, match="no key id and 2 archived keys"):
        two.op_key(GITHUB_ISSUER, None, T0 + 10 * DAY)


def test_archive_verifies_a_pk_token() -> None:
    minted = mint(now=T0 + 3600)
    archive = JWKSArchive(GITHUB_ISSUER).observe(minted.jwks, T0)
    verified = verify_pktoken(minted.pkt, archive, now=T0 + 7200)
    assert verified.op_jwk["kid"] == op_key().kid


# --- chains


class Recording:
    def __init__(self, name: str, answer: dict[str, Any] | Exception) -> None:
        self.name, self.answer, self.asked = name, answer, 0

    def op_key(self, issuer: str, kid: str | None, issued_at: int) -> dict[str, Any]:
        self.asked += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_chain_returns_the_first_hit_in_order() -> None:
    first, second = Recording("live", jwk(0)), Recording("archive", jwk(1))
    assert KeySourceChain(first, second).op_key(GITHUB_ISSUER, "k", T0) == jwk(0)
    assert (first.asked, second.asked) == (1, 0)


def test_chain_falls_back_on_a_miss_or_an_unavailable_source() -> None:
    missing = Recording("live", IssuerError("key 'k' is not in the JWKS"))
    down = Recording("live", TrustError("could not fetch the JWKS"))
    archive = Recording("archive", jwk(1))
    assert KeySourceChain(missing, archive).op_key(GITHUB_ISSUER, "k", T0) == jwk(1)
    assert KeySourceChain(down, archive).op_key(GITHUB_ISSUER, "k", T0) == jwk(1)


def test_chain_raises_the_last_error_with_every_message() -> None:
    down = Recording("live", TrustError("could not fetch the JWKS"))
    missing = Recording("archive", IssuerError("key 'k' is not in the archive", hint="update"))
    with pytest.raises(IssuerError) as caught:
        KeySourceChain(down, missing).op_key(GITHUB_ISSUER, "k", T0)
    assert caught.value.message == "could not fetch the JWKS; key 'k' is not in the archive"
    assert caught.value.hint == "update"
    with pytest.raises(TrustError, match="not in the archive; could not fetch"):
        KeySourceChain(missing, down).op_key(GITHUB_ISSUER, "k", T0)


def test_chain_does_not_swallow_other_errors() -> None:
    broken = Recording("live", ValueError("bug"))
    with pytest.raises(ValueError, match="bug"):
        KeySourceChain(broken, Recording("archive", jwk(0))).op_key(GITHUB_ISSUER, "k", T0)


def test_empty_chain_is_refused() -> None:
    with pytest.raises(UsageError):
        KeySourceChain()


def test_live_jwks_then_archive_after_rotation() -> None:
    minted = mint(op=generated_op_key(0), now=T0 + 3600)
    archive = JWKSArchive(GITHUB_ISSUER).observe(jwks(0), T0)
    live_after_rotation = StaticJWKS(GITHUB_ISSUER, jwks(1))
    with pytest.raises(IssuerError, match="not in the JWKS"):
        verify_pktoken(minted.pkt, live_after_rotation, now=T0 + 7200)
    chain = KeySourceChain(live_after_rotation, archive)
    assert verify_pktoken(minted.pkt, chain, now=T0 + 7200).op_jwk["kid"] == jwk(0)["kid"]
