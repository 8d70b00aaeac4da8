"""PK token construction, serialisations, OSMs and verification rules."""

from __future__ import annotations

import json

import pytest

from opk_sign.errors import (
    CICError,
    CommitmentError,
    ExpiredTokenError,
    FormatError,
    GQProofError,
    IssuerError,
    OSMError,
    SignatureError,
    TrustError,
)
from opk_sign.jose import b64decode, b64encode, go_json
from opk_sign.pktoken import (
    GITHUB_ISSUER,
    ExpiryPolicy,
    PKToken,
    StaticJWKS,
    UserKey,
    commitment,
    new_cic_header,
    new_osm,
    verify_osm,
    verify_pktoken,
)
from tests.helpers import Minted, mint, op_key

NOW = 1_790_000_000

SPEC_VECTORS = [
    (
        "bca0353ea63adbfce72032ab7d8fb7940def3488ca0765546a89d46760113c70",
        "5BP8B8bXgf0OFxHLJS5LSFlPOsfdIvf2tJU_3mwTGNE",
        "7KzWJi88qdZOI_j-kUG2aPjkzEA7IGMXFp1f-jdt28I",
        "LEQE668yEBBpVxKfi4SvIkl8wFxn55TdzNF79aEomIA",
    ),
    (
        "b9522b5c4cff90687ec6787236184659e077a619b82827227114108440fec26a",
        "cvqyUFNs1OUdRcDSmzJfS7ynuTHAjlDqoeinCZy_r1Q",
        "Whl5jJUIz7ujFvlB5Hzhaz6DIlpyWQmIIA3J7VMj53o",
        "fsTLlOIUqtJHomMB2t6HymoAqJi-wORIFtg3y8c65VY",
    ),
]


@pytest.mark.parametrize(("rz", "x", "y", "expected"), SPEC_VECTORS)
def test_commitment_vectors(rz: str, x: str, y: str, expected: str) -> None:
    header = {
        "alg": "ES256",
        "typ": "CIC",
        "rz": rz,
        "upk": {"alg": "ES256", "crv": "P-256", "kty": "EC", "x": x, "y": y},
    }
    assert commitment(header) == expected
    # Member order in the input does not matter: the hash is over sorted JSON.
    assert commitment(dict(reversed(list(header.items())))) == expected


@pytest.fixture(scope="module")
def minted() -> Minted:
    return mint(now=NOW)


def keys(m: Minted) -> StaticJWKS:
    return StaticJWKS(GITHUB_ISSUER, m.jwks)


def test_build_and_verify(minted: Minted) -> None:
    verified = verify_pktoken(minted.pkt, keys(minted), now=NOW + 60)
    assert verified.claims["repository"] == "octo-org/octo-repo"
    assert verified.cic.commitment == verified.claims["aud"]
    assert verified.issuer == GITHUB_ISSUER


def test_json_round_trip_is_byte_exact(minted: Minted) -> None:
    data = minted.pkt.to_json()
    assert PKToken.from_json(data).to_json() == data
    doc = json.loads(data)
    assert list(doc) == ["payload", "signatures"]
    assert [list(s) for s in doc["signatures"]] == [["protected", "signature"]] * 2
    # The payload segment is the ID token's, byte for byte: the ID token itself is not.
    assert doc["payload"] == minted.id_token.split(".")[1]
    assert minted.id_token.split(".")[2] not in data.decode()


def test_compact_round_trip(minted: Minted) -> None:
    compact = minted.pkt.to_compact()
    assert compact.count(":") == 4
    assert PKToken.from_compact(compact) == minted.pkt
    assert PKToken.from_compact(compact).to_compact() == compact


def test_signature_order_does_not_change_hash(minted: Minted) -> None:
    doc = json.loads(minted.pkt.to_json())
    doc["signatures"].reverse()
    assert PKToken.from_json(json.dumps(doc)).hash() == minted.pkt.hash()


def _json_with(minted: Minted, signatures: list[dict[str, str]]) -> str:
    return json.dumps({"payload": minted.pkt.payload_b64, "signatures": signatures})


def test_two_cic_signatures_refused(minted: Minted) -> None:
    sigs = json.loads(minted.pkt.to_json())["signatures"]
    with pytest.raises(FormatError, match="2 CIC signatures; at most one"):
        PKToken.from_json(_json_with(minted, [*sigs, sigs[1]]))


def test_missing_op_or_cic_refused(minted: Minted) -> None:
    op, cic = json.loads(minted.pkt.to_json())["signatures"]
    with pytest.raises(FormatError, match="list of 2 or 3"):
        PKToken.from_json(_json_with(minted, [cic]))
    cos = {"protected": b64encode(b'{"alg":"ES256","typ":"COS"}'), "signature": "AA"}
    with pytest.raises(FormatError, match="OP signature is missing"):
        PKToken.from_json(_json_with(minted, [cic, cos]))
    assert PKToken.from_json(_json_with(minted, [op, cic, cos])).cos is not None


def test_unknown_typ_and_members_refused(minted: Minted) -> None:
    op, cic = json.loads(minted.pkt.to_json())["signatures"]
    weird = {"protected": b64encode(b'{"alg":"ES256","typ":"XYZ"}'), "signature": "AA"}
    with pytest.raises(FormatError, match="unrecognised signature typ 'XYZ'"):
        PKToken.from_json(_json_with(minted, [op, cic, weird]))
    with pytest.raises(FormatError, match="unexpected members"):
        PKToken.from_json(_json_with(minted, [op, {**cic, "extra": "1"}]))
    doc = json.loads(minted.pkt.to_json())
    doc["x"] = 1
    with pytest.raises(FormatError, match="unexpected members"):
        PKToken.from_json(json.dumps(doc))


def test_padding_in_base64_refused(minted: Minted) -> None:
    doc = json.loads(minted.pkt.to_json())
    doc["payload"] += "=" * (-len(doc["payload"]) % 4 or 4)
    with pytest.raises(FormatError, match="payload"):
        PKToken.from_json(json.dumps(doc))


def test_compact_segment_count(minted: Minted) -> None:
    with pytest.raises(FormatError, match="got 3 segments"):
        PKToken.from_compact("a:b:c")


# --- verification rules ---------------------------------------------------------------------


def test_cic_signature_tampered(minted: Minted) -> None:
    raw = bytearray(b64decode(minted.pkt.cic.signature_b64))
    raw[0] ^= 1
    pkt = PKToken(
        minted.pkt.payload_b64,
        minted.pkt.op,
        type(minted.pkt.cic)(minted.pkt.cic.protected_b64, b64encode(bytes(raw))),
    )
    with pytest.raises(SignatureError, match="CIC: signature does not verify"):
        verify_pktoken(pkt, keys(minted), now=NOW)


def _with_cic(minted: Minted, header: dict[str, object], key: UserKey | None = None) -> PKToken:
    """A PK token whose CIC header is ``header``, correctly signed by ``key``."""
    key = key or minted.user_key
    protected = b64encode(go_json(header))
    sig = key.sign(f"{protected}.{minted.pkt.payload_b64}".encode())
    return PKToken(
        minted.pkt.payload_b64, minted.pkt.op, type(minted.pkt.cic)(protected, b64encode(sig))
    )


def test_cic_rz_changed_breaks_commitment(minted: Minted) -> None:
    header = dict(minted.pkt.cic.protected)
    header["rz"] = "00" * 32
    with pytest.raises(CommitmentError, match="not the commitment"):
        verify_pktoken(_with_cic(minted, header), keys(minted), now=NOW)


def test_cic_key_swapped_breaks_commitment(minted: Minted) -> None:
    """An attacker with the PK token but not the key substitutes their own key."""
    attacker = UserKey.generate()
    header = new_cic_header(attacker, rz=minted.pkt.cic.protected["rz"])
    with pytest.raises(CommitmentError, match="not the commitment"):
        verify_pktoken(_with_cic(minted, header, attacker), keys(minted), now=NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"alg": "RS256"}, "upk.alg 'ES256' differs from the header alg 'RS256'"),
        ({"alg": "HS256"}, "alg must be one of"),
        ({"rz": "short"}, "rz must be"),
        ({"upk": None}, "upk .* is missing"),
        ({"typ": "JWT"}, "unrecognised|typ"),
    ],
)
def test_cic_malformed(minted: Minted, change: dict[str, object], reason: str) -> None:
    header = {**minted.pkt.cic.protected, **change}
    header = {k: v for k, v in header.items() if v is not None}
    with pytest.raises((CICError, FormatError), match=reason):
        verify_pktoken(_with_cic(minted, header), keys(minted), now=NOW)


def test_untrusted_issuer() -> None:
    m = mint(now=NOW, issuer="https://evil.example")
    with pytest.raises(IssuerError, match="issuer 'https://evil.example' is not trusted"):
        verify_pktoken(m.pkt, StaticJWKS("https://evil.example", m.jwks), now=NOW)
    verify_pktoken(
        m.pkt,
        StaticJWKS("https://evil.example", m.jwks),
        issuers={"https://evil.example"},
        now=NOW,
    )


def test_unknown_kid(minted: Minted) -> None:
    other = {"keys": [op_key(2048, 3, kid="other").public_jwk()]}
    with pytest.raises(IssuerError, match="key 'test-key-1' is not in the JWKS"):
        verify_pktoken(minted.pkt, StaticJWKS(GITHUB_ISSUER, other), now=NOW)


def test_same_kid_other_key_fails_gq(minted: Minted) -> None:
    impostor = {"keys": [op_key(2048, 3, kid="test-key-1").public_jwk()]}
    with pytest.raises(GQProofError):
        verify_pktoken(minted.pkt, StaticJWKS(GITHUB_ISSUER, impostor), now=NOW)


def test_raw_rs256_op_signature_refused(minted: Minted) -> None:
    header, payload, sig = minted.id_token.split(".")
    pkt = PKToken(payload, type(minted.pkt.op)(header, sig), minted.pkt.cic)
    with pytest.raises(GQProofError, match="replayable ID token"):
        verify_pktoken(pkt, keys(minted), now=NOW)


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_alg_none_and_hs256_refused(minted: Minted, alg: str) -> None:
    header = b64encode(go_json({"alg": alg, "typ": "JWT"}))
    pkt = PKToken(minted.pkt.payload_b64, type(minted.pkt.op)(header, "AA"), minted.pkt.cic)
    with pytest.raises(GQProofError, match=f"alg is '{alg}'; only GQ256"):
        verify_pktoken(pkt, keys(minted), now=NOW)


def test_commitment_in_aud_must_match() -> None:
    m = mint(now=NOW, audience="sigstore")
    with pytest.raises(CommitmentError, match="aud 'sigstore' is not the commitment"):
        verify_pktoken(m.pkt, keys(m), now=NOW)


@pytest.mark.parametrize(
    ("policy", "offset", "ok"),
    [
        ("24h", 24 * 3600 - 1, True),
        ("24h", 24 * 3600, False),
        ("12h", 12 * 3600, False),
        ("oidc", 299, True),
        ("oidc", 300, False),
        ("90m", 5399, True),
        ("90m", 5400, False),
        ("never", 10 * 365 * 86400, True),
    ],
)
def test_expiry_policies(minted: Minted, policy: str, offset: int, ok: bool) -> None:
    expiry = ExpiryPolicy.from_name(policy)
    if ok:
        verify_pktoken(minted.pkt, keys(minted), expiry=expiry, now=NOW + offset)
    else:
        with pytest.raises(ExpiredTokenError, match=f"expired under the '{policy}' policy"):
            verify_pktoken(minted.pkt, keys(minted), expiry=expiry, now=NOW + offset)


def test_unknown_expiry_policy() -> None:
    with pytest.raises(FormatError, match="unknown expiry policy"):
        ExpiryPolicy.from_name("forever")


def test_iat_must_be_integer() -> None:
    m = mint(now=NOW, raw_claims={"iat": str(NOW)})
    with pytest.raises(FormatError, match="'iat' must be a positive JSON integer"):
        verify_pktoken(m.pkt, keys(m), now=NOW)


def test_bad_jwks_is_trust_error() -> None:
    with pytest.raises(TrustError, match="'keys' list"):
        StaticJWKS(GITHUB_ISSUER, {"keys": "nope"})


# --- OSM --------------------------------------------------------------------------------------


def test_osm_round_trip(minted: Minted) -> None:
    osm = new_osm(minted.pkt, minted.user_key, b"hello")
    assert verify_osm(minted.pkt, osm) == b"hello"
    header = json.loads(b64decode(osm.split(".")[0]))
    assert header == {"alg": "ES256", "kid": minted.pkt.hash(), "typ": "osm"}


def test_osm_bound_to_its_pk_token(minted: Minted) -> None:
    other = mint(now=NOW)
    osm = new_osm(other.pkt, other.user_key, b"hello")
    with pytest.raises(OSMError, match="kid is not the hash of this PK token"):
        verify_osm(minted.pkt, osm)


def test_osm_by_another_key(minted: Minted) -> None:
    with pytest.raises(OSMError, match="not the PK token's user key"):
        new_osm(minted.pkt, UserKey.generate(), b"x")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("typ", "JWT", "typ must be 'osm'"),
        ("alg", "EdDSA", "alg 'EdDSA' differs from the CIC alg"),
        ("kid", "x", "kid is not the hash"),
        ("crit", ["b64"], "header 'crit' is not allowed"),
    ],
)
def test_osm_header_tampering(minted: Minted, field: str, value: object, reason: str) -> None:
    header = {"alg": "ES256", "kid": minted.pkt.hash(), "typ": "osm", field: value}
    protected = b64encode(go_json(header))
    payload = b64encode(b"m")
    sig = minted.user_key.sign(f"{protected}.{payload}".encode())
    with pytest.raises(OSMError, match=reason):
        verify_osm(minted.pkt, f"{protected}.{payload}.{b64encode(sig)}")


def test_osm_payload_tampered(minted: Minted) -> None:
    protected, _, sig = new_osm(minted.pkt, minted.user_key, b"digest-a").split(".")
    with pytest.raises(OSMError, match="signature does not verify"):
        verify_osm(minted.pkt, f"{protected}.{b64encode(b'digest-b')}.{sig}")


def test_eddsa_user_key() -> None:
    m = mint(now=NOW, user_alg="EdDSA")
    verify_pktoken(m.pkt, keys(m), now=NOW)
    assert verify_osm(m.pkt, new_osm(m.pkt, m.user_key, b"x")) == b"x"
    assert m.pkt.cic.protected["upk"]["kty"] == "OKP"
