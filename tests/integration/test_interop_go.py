"""Byte compatibility with the OpenPubkey Go reference implementation, both ways.

(a) PK tokens and OSMs made by opk_sign pass the Go verifier; (b) those minted by the Go
library's mock GitHub provider pass ours, and re-serialise to the same bytes and hash;
(c) the same tampered variants are refused by both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opk_sign.errors import OpkSignError
from opk_sign.jose import b64decode, b64encode
from opk_sign.pktoken import (
    GITHUB_ISSUER,
    PKToken,
    Signature,
    StaticJWKS,
    new_osm,
    verify_osm,
    verify_pktoken,
)
from tests.helpers import mint
from tests.services.interop import MintedSet, go_gqsign, go_mint, go_verify, load_minted

pytestmark = pytest.mark.integration

MESSAGE = b'{"critical":{"image":{"docker-manifest-digest":"sha256:00"}}}'


@pytest.fixture(scope="module")
def go_sets(tmp_path_factory: pytest.TempPathFactory) -> list[MintedSet]:
    out = tmp_path_factory.mktemp("go-minted")
    go_mint(out, count=3)
    return [load_minted(out / str(i)) for i in range(3)]


# --- (a) ours -> Go ---------------------------------------------------------------------------


def test_go_verifier_accepts_opk_sign_tokens_and_osms() -> None:
    cases = []
    for i, alg in enumerate(["ES256", "ES256", "EdDSA"]):
        m = mint(now=int(time.time()), user_alg=alg)
        osm = new_osm(m.pkt, m.user_key, MESSAGE + str(i).encode())
        for form, text in (("json", m.pkt.to_json().decode()), ("compact", m.pkt.to_compact())):
            cases.append({"name": f"{alg}-{i}-{form}", "pktoken": text, "osm": osm, "jwks": m.jwks})
    results = go_verify(cases)
    assert {name: (r["ok"], r["error"]) for name, r in results.items()} == {
        c["name"]: (True, "") for c in cases
    }
    assert b64decode(b64encode(MESSAGE)) == MESSAGE
    assert all(json.loads(json.dumps(r))["message_b64"] for r in results.values())


# --- (b) Go -> ours ---------------------------------------------------------------------------


def test_opk_sign_accepts_go_tokens_byte_for_byte(go_sets: list[MintedSet]) -> None:
    for s in go_sets:
        pkt = PKToken.from_json(s.pktoken_json)
        # Our canonical serialisation is Go's MarshalJSON output, byte for byte.
        assert pkt.to_json() == s.pktoken_json.encode()
        assert pkt.hash() == s.meta["pkt_hash"]
        assert PKToken.from_compact(s.pktoken_compact) == pkt
        assert pkt.to_compact() == s.pktoken_compact
        verified = verify_pktoken(pkt, StaticJWKS(GITHUB_ISSUER, s.jwks))
        assert verified.claims["repository"] == "octo-org/octo-repo"
        assert verify_osm(pkt, s.osm) == s.message


def test_gq_proofs_agree_both_ways(go_sets: list[MintedSet]) -> None:
    """GQ256 over the same RS256 ID token: Go's proof verifies here, ours verifies in Go."""
    from opk_sign.pktoken import gq
    from tests.services.interop import go_gqverify

    s = go_sets[0]
    go_token = go_gqsign(s.idtoken, s.op_jwk)
    gq.verify_jwt(go_token, s.op_jwk)
    ours = gq.sign_jwt(s.idtoken, s.op_jwk)
    assert ours.split(".")[0] == go_token.split(".")[0]  # identical GQ header bytes
    assert go_gqverify(ours, s.op_jwk) == (True, "")


# --- (c) tampered variants refused by both ----------------------------------------------------

Tamper = Callable[[PKToken, str], tuple[str, str]]


def _flip_b64(segment: str, index: int) -> str:
    raw = bytearray(b64decode(segment))
    raw[index] ^= 0x01
    return b64encode(bytes(raw))


def _with(pkt: PKToken, **changes: object) -> PKToken:
    fields = {"payload_b64": pkt.payload_b64, "op": pkt.op, "cic": pkt.cic, "cos": pkt.cos}
    fields.update(changes)
    return PKToken(**fields)  # type: ignore[arg-type]


def _payload_claim(pkt: PKToken, claim: str, value: object) -> PKToken:
    claims = json.loads(pkt.payload)
    claims[claim] = value
    return _with(pkt, payload_b64=b64encode(json.dumps(claims, separators=(",", ":")).encode()))


TAMPERS: dict[str, Tamper] = {
    "payload-repository-changed": lambda p, o: (
        _payload_claim(p, "repository", "evil/repo").to_json().decode(),
        o,
    ),
    "payload-aud-changed": lambda p, o: (
        _payload_claim(p, "aud", "x" * 43).to_json().decode(),
        o,
    ),
    "gq-proof-bit-flipped": lambda p, o: (
        _with(p, op=Signature(p.op.protected_b64, _flip_b64(p.op.signature_b64, 40)))
        .to_json()
        .decode(),
        o,
    ),
    "gq-header-jkt-removed": lambda p, o: (
        _with(
            p,
            op=Signature(
                b64encode(
                    json.dumps(
                        {k: v for k, v in p.op.protected.items() if k != "jkt"},
                        separators=(",", ":"),
                    ).encode()
                ),
                p.op.signature_b64,
            ),
        )
        .to_json()
        .decode(),
        o,
    ),
    "cic-signature-bit-flipped": lambda p, o: (
        _with(p, cic=Signature(p.cic.protected_b64, _flip_b64(p.cic.signature_b64, 5)))
        .to_json()
        .decode(),
        o,
    ),
    "osm-payload-changed": lambda p, o: (
        p.to_json().decode(),
        ".".join([o.split(".")[0], b64encode(b"another digest"), o.split(".")[2]]),
    ),
    "osm-kid-of-another-token": lambda p, o: (
        p.to_json().decode(),
        o.replace(
            o.split(".")[0],
            b64encode(json.dumps({"alg": "ES256", "kid": "A" * 43, "typ": "osm"}).encode()),
        ),
    ),
}


def _refused_by_opk_sign(pkt_text: str, osm: str, jwks: dict[str, object]) -> bool:
    try:
        pkt = PKToken.from_json(pkt_text)
        verify_pktoken(pkt, StaticJWKS(GITHUB_ISSUER, jwks))
        verify_osm(pkt, osm)
    except OpkSignError:
        return True
    return False


def _sources(go_sets: list[MintedSet]) -> list[tuple[str, PKToken, str, dict[str, object]]]:
    m = mint(now=int(time.time()))
    ours = ("ours", m.pkt, new_osm(m.pkt, m.user_key, MESSAGE), m.jwks)
    s = go_sets[1]
    theirs = ("go", PKToken.from_json(s.pktoken_json), s.osm, s.jwks)
    return [ours, theirs]


def test_tampered_variants_refused_by_both(go_sets: list[MintedSet], tmp_path: Path) -> None:
    cases = []
    for origin, pkt, osm, jwks in _sources(go_sets):
        for name, tamper in TAMPERS.items():
            pkt_text, osm_text = tamper(pkt, osm)
            assert _refused_by_opk_sign(pkt_text, osm_text, jwks), (
                f"opk_sign accepted {origin}/{name}"
            )
            cases.append(
                {"name": f"{origin}/{name}", "pktoken": pkt_text, "osm": osm_text, "jwks": jwks}
            )
        # And the untampered originals pass both, so the refusals above mean something.
        assert not _refused_by_opk_sign(pkt.to_json().decode(), osm, jwks)
        cases.append(
            {
                "name": f"{origin}/original",
                "pktoken": pkt.to_json().decode(),
                "osm": osm,
                "jwks": jwks,
            }
        )
    results = go_verify(cases)
    accepted = sorted(n for n, r in results.items() if r["ok"])
    assert accepted == ["go/original", "ours/original"]
