"""GQ256: a Guillou-Quisquater (ISO/IEC 14888-2 GQ1) proof of knowledge of an OP's RSA signature.

A PK token must not carry the OP's RS256 signature (anyone could replay the ID token), so the
signature ``s`` becomes the GQ private number ``Q = s^-1 mod n`` and the token carries a proof of
knowledge of it instead. Byte-compatible with ``github.com/openpubkey/openpubkey/gq`` v0.25.0+:
the proof signs ``GQheader.payload`` and the identity is ``origheader.payload``.

Pure logic, no I/O. The modular arithmetic runs on GMP (gmpy2): 5-7x faster than Python ints
for RSA-size moduli, which puts verification on par with the Go reference. gmpy2 is imported by
the functions that compute (its import reads package metadata: a start-up cost, issue 13).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opk_sign.errors import FormatError, GQProofError
from opk_sign.jose import (
    CompactJWS,
    b64encode,
    go_json,
    jwk_thumbprint,
    require_str,
    rsa_public_numbers,
)

#: Soundness in bits: each round gives floor(log2 e) bits, so t = ceil(256 / floor(log2 e)).
SECURITY_BITS: Final = 256

#: DER prefix of DigestInfo for SHA-256 (RFC 8017 §9.2 note 1).
_SHA256_DIGEST_INFO: Final = bytes.fromhex("3031300d060960864801650304020105000420")

HashFn = Callable[[int, bytes], bytes]


def shake256(length: int, data: bytes) -> bytes:
    return hashlib.shake_256(data).digest(length)


@dataclass(frozen=True)
class GQParams:
    """The public parameters of one GQ1 instance: modulus n, exponent v (RSA's e), t rounds."""

    n: int
    v: int
    t: int
    n_bytes: int
    v_bytes: int

    @classmethod
    def for_rsa(cls, n: int, e: int, security_bits: int = SECURITY_BITS) -> GQParams:
        if e < 3 or e % 2 == 0:
            raise FormatError(f"unsupported RSA exponent {e}: must be odd and at least 3")
        bits_per_round = e.bit_length() - 1  # floor(log2 e), exact for integers
        return cls(
            n=n,
            v=e,
            t=-(-security_bits // bits_per_round),
            n_bytes=(n.bit_length() + 7) // 8,
            v_bytes=(e.bit_length() - 1 + 7) // 8,
        )

    @classmethod
    def for_jwk(cls, jwk: Mapping[str, Any]) -> GQParams:
        numbers = rsa_public_numbers(jwk, "OP JWK")
        return cls.for_rsa(numbers.n, numbers.e)

    @property
    def proof_size(self) -> int:
        return self.t * self.v_bytes + self.t * self.n_bytes


def sign(
    params: GQParams,
    private: int,
    message: bytes,
    *,
    hash_fn: HashFn = shake256,
    randoms: Sequence[int] | None = None,
) -> bytes:
    """GQ1 proof ``R || S_1 .. S_t`` over ``message`` with private number ``Q``.

    ``randoms`` and ``hash_fn`` exist for the ISO/IEC 14888-2 test vector only.
    """
    from gmpy2 import mpz

    n, t, nb, vb = mpz(params.n), params.t, params.n_bytes, params.v_bytes
    r = (
        [mpz(x) for x in randoms]
        if randoms is not None
        else [mpz(secrets.randbelow(params.n)) for _ in range(t)]
    )
    if len(r) != t:
        raise FormatError(f"need {t} random numbers, got {len(r)}")
    q = mpz(private)
    # Stage 2: test number W = r_1^v || ... || r_t^v (each nBytes, big-endian).
    # r_i and Q are secret: GMP's constant-time powmod_sec keeps their bits off the clock.
    w = b"".join(_powmod_secret(r_i, params.v, n).to_bytes(nb, "big") for r_i in r)
    # Stage 3: question number R = h(W || M), split into t numbers of vBytes.
    big_r = hash_fn(t * vb, w + message)
    # Stage 4: witness numbers S_i = r_i * Q^R_i mod n.
    s = b"".join(
        (
            r[i] * _powmod_secret(q, int.from_bytes(big_r[i * vb : (i + 1) * vb], "big"), n) % n
        ).to_bytes(nb, "big")
        for i in range(t)
    )
    return big_r + s


def _powmod_secret(base: Any, exponent: int, modulus: Any) -> Any:
    from gmpy2 import mpz, powmod_sec

    # mpz_powm_sec needs an odd modulus and a positive exponent; x^0 is 1 whatever x is.
    return powmod_sec(base, exponent, modulus) if exponent else mpz(1)


def pkcs1v15_sha256(identity: bytes, n_bytes: int) -> int:
    """EMSA-PKCS1-v1_5 encoding of SHA-256(identity): the public number G an RS256 signature
    is the e-th root of."""
    t = _SHA256_DIGEST_INFO + hashlib.sha256(identity).digest()
    if n_bytes < len(t) + 11:
        raise FormatError("RSA modulus too short for PKCS#1 v1.5 SHA-256")
    return int.from_bytes(b"\x00\x01" + b"\xff" * (n_bytes - len(t) - 3) + b"\x00" + t, "big")


def verify(
    params: GQParams,
    proof: bytes,
    message: bytes,
    *,
    identity: bytes | None = None,
    public_number: int | None = None,
    hash_fn: HashFn = shake256,
) -> bool:
    """True iff ``proof`` is a valid GQ1 proof over ``message`` for ``identity``.

    The public number is ``G = PKCS1v15(SHA-256(identity))`` unless given directly (test vector).
    """
    from gmpy2 import mpz, powmod

    n, t, nb, vb = mpz(params.n), params.t, params.n_bytes, params.v_bytes
    # Stage 0: exact size, every S_i in (0, n).
    if len(proof) != params.proof_size:
        return False
    big_r, s = proof[: t * vb], proof[t * vb :]
    if public_number is None:
        if identity is None:
            raise FormatError("verify needs an identity or a public number")
        public_number = pkcs1v15_sha256(identity, nb)
    g = mpz(public_number)
    w_star = bytearray()
    for i in range(t):
        s_i = mpz.from_bytes(s[i * nb : (i + 1) * nb], "big")
        if not 0 < s_i < n:
            return False
        r_i = int.from_bytes(big_r[i * vb : (i + 1) * vb], "big")
        # Stage 2: W*_i = S_i^v * G^R_i mod n.
        w_star += (powmod(s_i, params.v, n) * powmod(g, r_i, n) % n).to_bytes(nb, "big")
    # Stages 3-4: accept iff h(W* || M) reproduces R.
    return hmac.compare_digest(hash_fn(t * vb, bytes(w_star) + message), big_r)


def check_proof_shape(params: GQParams, proof: bytes) -> None:
    """Name what is wrong with a proof's shape before the arithmetic says only "invalid"."""
    if len(proof) != params.proof_size:
        raise GQProofError(
            f"GQ proof is {len(proof)} bytes; this OP key needs exactly {params.proof_size}"
            f" (t={params.t} rounds of {params.v_bytes}+{params.n_bytes} bytes)"
        )
    offset = params.t * params.v_bytes
    for i in range(params.t):
        start = offset + i * params.n_bytes
        s_i = int.from_bytes(proof[start : start + params.n_bytes], "big")
        if not 0 < s_i < params.n:
            raise GQProofError(f"GQ proof: witness S_{i + 1} is not in the range (0, n)")


# --- GQ256 over JWTs ----------------------------------------------------------------------------


def _private_number(signature: int, n: int) -> int:
    """Q = s^-1 mod n, blinded so the inversion's timing says nothing about s."""
    from gmpy2 import invert, mpz

    modulus = mpz(n)
    while True:
        blind = mpz(secrets.randbelow(n - 2) + 2)
        try:
            inverse = invert(mpz(signature) * blind % modulus, modulus)
        except ZeroDivisionError:  # not invertible: gcd(s*b, n) != 1, never for a real RSA key
            continue
        return int(inverse * blind % modulus)


def gq_header(original_header_b64: str, op_jwk: Mapping[str, Any]) -> dict[str, str]:
    return {"alg": "GQ256", "jkt": jwk_thumbprint(op_jwk), "kid": original_header_b64, "typ": "JWT"}


def sign_jwt(jwt: str, op_jwk: Mapping[str, Any]) -> str:
    """Turn an RS256 JWT into a GQ256 token: same payload, RSA signature replaced by a GQ proof.

    The RS256 signature is checked first: a GQ proof over a wrong signature would be worthless.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    token = CompactJWS.parse(jwt, "ID token")
    header = token.header("ID token")
    if header.get("alg") != "RS256":
        raise FormatError(
            f"ID token: GQ256 needs an RS256-signed JWT, got alg {header.get('alg')!r}"
        )
    numbers = rsa_public_numbers(op_jwk, "OP JWK")
    params = GQParams.for_rsa(numbers.n, numbers.e)
    signature = token.signature
    if len(signature) != params.n_bytes:
        raise FormatError(
            f"ID token: RS256 signature must be {params.n_bytes} bytes, got {len(signature)}"
        )
    try:
        numbers.public_key().verify(
            signature, token.signing_input, padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise GQProofError(
            "ID token: RS256 signature does not verify with the OP key given to GQ-sign it"
        ) from None
    protected = b64encode(go_json(gq_header(token.protected_b64, op_jwk)))
    private = _private_number(int.from_bytes(signature, "big"), params.n)
    proof = sign(params, private, f"{protected}.{token.payload_b64}".encode("ascii"))
    return f"{protected}.{token.payload_b64}.{b64encode(proof)}"


def original_header(token: CompactJWS, field: str = "GQ token") -> tuple[str, dict[str, Any]]:
    """The GQ header's ``kid``: the original RS256 header, as its base64 text and as JSON."""
    from opk_sign.jose import b64decode, parse_json_object

    header = token.header(field)
    if header.get("alg") != "GQ256":
        raise GQProofError(f"{field}: alg must be GQ256, got {header.get('alg')!r}")
    kid = require_str(header, "kid", f"{field} header")
    original = parse_json_object(b64decode(kid, f"{field} header kid"), f"{field} original header")
    if original.get("alg") != "RS256":
        raise GQProofError(
            f"{field}: the original header must be RS256, got alg {original.get('alg')!r}"
        )
    return kid, original


def verify_jwt(token: str, op_jwk: Mapping[str, Any]) -> None:
    """Verify a GQ256 token against the OP's RSA public JWK; raise :class:`GQProofError`."""
    jws = CompactJWS.parse(token, "GQ token")
    kid, _ = original_header(jws)
    header = jws.header("GQ token")
    jkt = header.get("jkt")
    if jkt is not None and jkt != jwk_thumbprint(op_jwk):
        raise GQProofError("GQ token: header jkt does not match the OP key's thumbprint")
    params = GQParams.for_jwk(op_jwk)
    check_proof_shape(params, jws.signature)
    ok = verify(
        params,
        jws.signature,
        jws.signing_input,
        identity=f"{kid}.{jws.payload_b64}".encode("ascii"),
    )
    if not ok:
        raise GQProofError("GQ token: the GQ256 proof does not verify with the OP key")
