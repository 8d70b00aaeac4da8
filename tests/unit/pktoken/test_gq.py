"""GQ256: the ISO/IEC 14888-2 vector, round trips over key sizes and exponents, and refusal of
every single-bit change of the GQ header, payload and proof."""

from __future__ import annotations

import hashlib

import pytest

from opk_sign._dev.github_oidc import OPSigningKey, github_claims, mint_id_token
from opk_sign.errors import FormatError, GQProofError, OpkSignError
from opk_sign.jose import CompactJWS, b64decode, b64encode
from opk_sign.pktoken import gq
from tests.helpers import op_key

# ISO/IEC 14888-2 GQ1 example (as used by the Go reference's gq_iso_test.go): SHA-1 as the hash,
# t = 1, v = 0x010000000000000000000D, G given directly (the standard formats Id with PSS).
ISO_N = int(
    "D37B4534B4B788AE23E1E4719A395BBFF8A98EDBDCB3992306C513AAA95E9A335221998C20CD1344CA50C59193B8"
    "4437FFC1E91E5EBEF9587615875102A7E83624DA4F72CAF28D1DF429652346D6F203E17C65288790F6F6D9783521"
    "6B49F5932728A967D6D36561621FF38DFC185DFA5A160962E7C8E087CE90897B16EA4EA1",
    16,
)
ISO_V = 0x010000000000000000000D
ISO_Q = int(
    "3BED38CEBB1219BC068774E0E2655CDEF67FE547BCF2D9FA9FE167B1E63B2F101A1483D38A8F24EDE365A3E44F4F"
    "10ADECEA7B30D042C14C162477B8184AE6CFAA78441B1FDFB0B223ABCD528B61F313D859FCF9C26FCAF9E4D9DA9B"
    "A83E9D2FDA041E8CCBF90056C31D654B546C1A7F6729A8DD8E68512F39E3B6F07959CE61",
    16,
)
ISO_G = int(
    "3E641A22D0D0747D4ACC71884D3DFF2B2ADFDC1703B5A74EFD8333AB8C4377BB2A9B48E707F73409ABFBCD2DED69"
    "F52B16A145CE062FE6BD712C1952110DFB2316C5F3F321922ED375A4DEB8C41FA79BCAD86B0EA0D8FF02C9D0D591"
    "1BFF1E87DBCF073F71F18C08EB944AE84883A1E13FB1DEA123B5B1EFEA2A92635BD5D88F",
    16,
)
ISO_R = int(
    "487CDB0041BEED0323FDD3DEC8542584FA0E6CB990FAD5878DB34E9BEDDC95B65D22790C108E218407ED7F7D6866"
    "57BAB5A28EF81C2E24985B56E37D9934E195A38A835CC02CEE8EBA2F56C87663E332976F5A3720DACA120BCD3DF0"
    "AEF6FD78582EBFCEE6D05E06172A871EAB0E8F5FC22DDB600F541B87CF8E147358374406",
    16,
)
ISO_SIG = bytes.fromhex(
    "99394F1D15924C0374CF80C7274CD9F232903A6423D9327156F69743EAEF03E1EFEDFDA8474C97F6570D9EF53C6C"
    "E2AE2BA68D01FFF9AA82068214BCD775B95CC297DDC38A63741AB3166B58275E0FB728D26DB18A2C3F14B621CF38"
    "63F8648B3149FE896348BE73D37E2F06E6E26C84C044984C09C658300B58EC2383E3B0A1F1390D62B772A69F37B5"
)
ISO_M = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopqo"
ISO_PARAMS = gq.GQParams(n=ISO_N, v=ISO_V, t=1, n_bytes=128, v_bytes=10)


def sha1_hash(length: int, data: bytes) -> bytes:
    return hashlib.sha1(data).digest()[:length]


def test_iso_14888_2_sign_vector() -> None:
    proof = gq.sign(ISO_PARAMS, ISO_Q, ISO_M, hash_fn=sha1_hash, randoms=[ISO_R])
    assert proof == ISO_SIG


def test_iso_14888_2_verify_vector() -> None:
    assert gq.verify(ISO_PARAMS, ISO_SIG, ISO_M, public_number=ISO_G, hash_fn=sha1_hash)
    assert not gq.verify(ISO_PARAMS, ISO_SIG, ISO_M + b"x", public_number=ISO_G, hash_fn=sha1_hash)


@pytest.mark.parametrize(("e", "t", "v_bytes"), [(65537, 16, 2), (3, 256, 1), (17, 64, 1)])
def test_parameters(e: int, t: int, v_bytes: int) -> None:
    params = gq.GQParams.for_rsa(ISO_N, e)
    assert (params.t, params.v_bytes, params.n_bytes) == (t, v_bytes, 128)


def test_gq256_token_shape_for_rsa2048() -> None:
    key = op_key(2048)
    token = gq.sign_jwt(
        mint_id_token(key, github_claims("aud", issuer="https://i")), key.public_jwk()
    )
    proof_b64 = token.split(".")[2]
    assert len(b64decode(proof_b64)) == 32 + 16 * 256 == 4128
    assert len(proof_b64) == 5504
    header = CompactJWS.parse(token).header()
    assert sorted(header) == ["alg", "jkt", "kid", "typ"]
    assert header["alg"] == "GQ256" and header["typ"] == "JWT"


def _token(key: OPSigningKey) -> str:
    return gq.sign_jwt(
        mint_id_token(key, github_claims("aud", issuer="https://i")), key.public_jwk()
    )


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
@pytest.mark.parametrize("e", [3, 65537])
def test_round_trip(bits: int, e: int) -> None:
    key = op_key(bits, e)
    id_token = mint_id_token(key, github_claims("aud", issuer="https://i"))
    token = gq.sign_jwt(id_token, key.public_jwk())
    gq.verify_jwt(token, key.public_jwk())
    # The payload segment is the ID token's, byte for byte; the RSA signature is gone.
    assert token.split(".")[1] == id_token.split(".")[1]
    assert id_token.split(".")[2] not in token
    # A proof is not transferable to another key of the same size.
    with pytest.raises(GQProofError):
        gq.verify_jwt(token, op_key(bits, 65537 if e == 3 else 3).public_jwk())


def _flip(segment: str, bit: int) -> str:
    raw = bytearray(b64decode(segment))
    raw[bit // 8] ^= 1 << (bit % 8)
    return b64encode(bytes(raw))


def _refused_everywhere(token: str, jwk: dict[str, object], segment: int, bits: range) -> int:
    parts = token.split(".")
    refused = 0
    for bit in bits:
        tampered = parts.copy()
        tampered[segment] = _flip(parts[segment], bit)
        with pytest.raises(OpkSignError):
            gq.verify_jwt(".".join(tampered), jwk)
        refused += 1
    return refused


@pytest.mark.slow
@pytest.mark.parametrize(("segment", "name"), [(0, "header"), (1, "payload"), (2, "proof")])
def test_every_single_bit_change_is_refused(segment: int, name: str) -> None:
    """Exhaustive over every bit of the segment, with a 1024-bit OP key to keep it fast."""
    key = op_key(1024)
    token = _token(key)
    size = len(b64decode(token.split(".")[segment])) * 8
    assert _refused_everywhere(token, key.public_jwk(), segment, range(size)) == size


def test_single_bit_changes_rsa2048_header_and_question() -> None:
    """At GitHub's key size: every bit of the GQ header and of R, and a stride through S."""
    key = op_key(2048)
    token = _token(key)
    jwk = key.public_jwk()
    header_bits = len(b64decode(token.split(".")[0])) * 8
    assert _refused_everywhere(token, jwk, 0, range(header_bits)) == header_bits
    assert _refused_everywhere(token, jwk, 2, range(32 * 8)) == 256
    assert _refused_everywhere(token, jwk, 2, range(256, 4128 * 8, 97)) > 300


def test_wrong_length_proof_is_refused_by_name() -> None:
    key = op_key(2048)
    header, payload, proof = _token(key).split(".")
    raw = b64decode(proof)
    for bad in (raw[:-1], raw + b"\x00", b""):
        with pytest.raises(GQProofError, match="needs exactly 4128"):
            gq.verify_jwt(f"{header}.{payload}.{b64encode(bad)}", key.public_jwk())


@pytest.mark.parametrize("value", ["zero", "n", "n+1"])
def test_witness_out_of_range_is_refused(value: str) -> None:
    key = op_key(2048)
    jwk = key.public_jwk()
    header, payload, proof = _token(key).split(".")
    raw = bytearray(b64decode(proof))
    n = gq.GQParams.for_jwk(jwk).n
    s_i = {"zero": 0, "n": n, "n+1": n + 1}[value]
    raw[32 + 256 * 3 : 32 + 256 * 4] = s_i.to_bytes(256, "big")
    with pytest.raises(GQProofError, match="S_4 is not in the range"):
        gq.verify_jwt(f"{header}.{payload}.{b64encode(bytes(raw))}", jwk)


def test_sign_refuses_non_rs256_and_wrong_key() -> None:
    key = op_key(2048)
    jwt = mint_id_token(key, github_claims("aud", issuer="https://i"))
    header = b64encode(b'{"alg":"HS256","typ":"JWT"}')
    with pytest.raises(FormatError, match="needs an RS256-signed JWT, got alg 'HS256'"):
        gq.sign_jwt(header + jwt[jwt.index(".") :], key.public_jwk())
    with pytest.raises(GQProofError, match="does not verify with the OP key"):
        gq.sign_jwt(jwt, op_key(2048, 3).public_jwk())
    with pytest.raises(FormatError, match="member 'n' is missing"):
        gq.sign_jwt(jwt, {"kty": "RSA", "e": "AQAB"})


def test_verify_refuses_wrong_jkt_and_non_gq_alg() -> None:
    key = op_key(2048)
    token = _token(key)
    other = op_key(2048, 3).public_jwk()
    with pytest.raises(GQProofError, match="jkt does not match"):
        gq.verify_jwt(token, other)
    rs256 = mint_id_token(key, github_claims("aud", issuer="https://i"))
    with pytest.raises(GQProofError, match="alg must be GQ256, got 'RS256'"):
        gq.verify_jwt(rs256, key.public_jwk())
