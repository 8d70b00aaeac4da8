"""Attack cases: The PK token: claims changed after the OP signed, the OP's signature and algorithm confusion, the GQ proof, the CIC."""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Final

from opk_sign.errors import (
    CICError,
    CommitmentError,
    FormatError,
    GQProofError,
    IssuerError,
    SignatureError,
)
from opk_sign.jose import b64decode, b64encode, go_json, jwk_thumbprint
from opk_sign.pktoken import UserKey, commitment, new_cic_header
from tests.helpers import op_key
from tests.unit.attacks.world import (
    _N_BYTES,
    _R_BYTES,
    EVIL_ISSUER,
    GHES_ISSUER,
    GQ_CHECK,
    GQ_FAILS,
    HOUR,
    NOW,
    URL_ALPHABET,
    Run,
    World,
    attack,
    compact,
    flip,
    forge_pk,
    gq_header,
    header_b64,
    issue,
    jwks_of,
    noncanonical,
    on_signature,
    original_header,
    osm,
    other_op_key,
    padded_json,
    proof,
    resigned,
    signature_bundle,
    signed,
    token_bundle,
    two_issuers,
    with_claims,
)

# --- PK token payload: a claim changed after the OP signed ---------------------------------------

PAYLOAD = "PK token payload"


@attack(
    PAYLOAD,
    "changes `iss` to an issuer the verifier does not trust (CIC re-signed)",
    "issuer allow-list (`verify_pktoken` step 2)",
    IssuerError,
    f"issuer {EVIL_ISSUER!r} is not trusted",
)
def payload_iss_changed_to_untrusted_issuer(w: World) -> tuple[Run, Run]:
    return resigned(w, forge_pk(w.token, payload=with_claims(w.token, iss=EVIL_ISSUER)))


@attack(
    PAYLOAD,
    "changes `iss` to another trusted issuer that has the same key id (CIC re-signed)",
    GQ_CHECK,
    GQProofError,
    GQ_FAILS,
)
def payload_iss_changed_to_another_trusted_issuer(w: World) -> tuple[Run, Run]:
    pk = forge_pk(w.token, payload=with_claims(w.token, iss=GHES_ISSUER))
    return resigned(w, pk, **two_issuers())


def _claim_case(claim: str, value: Any, what: str) -> None:
    def build(w: World) -> tuple[Run, Run]:
        return resigned(w, forge_pk(w.token, payload=with_claims(w.token, **{claim: value})))

    attack(PAYLOAD, what, GQ_CHECK, GQProofError, GQ_FAILS, name=f"payload_{claim}_changed")(build)


_claim_case("aud", "x" * 43, "replaces `aud` (the commitment) with another value")
_claim_case("sub", "repo:evil-org/evil:ref:refs/heads/main", "rewrites `sub`")
_claim_case("repository", "evil-org/evil-repo", "rewrites `repository` to the attacker's")
_claim_case(
    "job_workflow_ref",
    "octo-org/octo-repo/.github/workflows/evil.yml@refs/heads/evil",
    "rewrites `job_workflow_ref` (the signer workflow)",
)
_claim_case("iat", NOW + 20 * HOUR, "moves `iat` later to make an old token fresh again")
_claim_case("exp", NOW + 365 * 24 * HOUR, "extends `exp` by a year")
_claim_case("environment", "production", "adds an `environment` claim the job never had")


@attack(
    PAYLOAD,
    "a payload with a duplicate `repository` member (parsers disagree on which wins), validly "
    "signed by the OP",
    "strict JSON (no duplicate members)",
    FormatError,
    "duplicate JSON member 'repository'",
)
def payload_duplicate_claim(w: World) -> tuple[Run, Run]:
    def duplicate(claims: dict[str, Any]) -> bytes:
        return compact(claims)[:-1] + b',"repository":"evil-org/evil-repo"}'

    return on_signature(w, token_bundle(issue(payload=duplicate)))


@attack(
    PAYLOAD,
    "re-encodes the payload segment with non-zero trailing bits (same bytes, other text)",
    "strict base64url",
    FormatError,
    "non-canonical base64url",
)
def payload_noncanonical_base64(w: World) -> tuple[Run, Run]:
    token = issue(payload=lambda claims: padded_json(compact(claims)))
    pk = token.pk
    pk["payload"] = noncanonical(pk["payload"], URL_ALPHABET)
    return signed(token_bundle(token)), signed(signature_bundle(pk, token_bundle(token)["osm"]))


# --- the OP's signature (GQ header, algorithm confusion, key selection) ---------------------------

OPSIG = "OP signature"
ALG_CHECK: Final = "GQ256 only (`verify_pktoken` step 3)"


@attack(
    OPSIG,
    '`alg` "none" with an empty signature',
    ALG_CHECK,
    GQProofError,
    "OP signature alg is 'none'; only GQ256 is accepted",
)
def op_alg_none(w: World) -> tuple[Run, Run]:
    pk = forge_pk(w.token, op_protected=header_b64({"alg": "none", "typ": "JWT"}), op_signature="")
    return resigned(w, pk)


@attack(
    OPSIG,
    '`alg` "HS256", a valid HMAC over the token keyed with the OP\'s public modulus (key confusion)',
    ALG_CHECK,
    GQProofError,
    "OP signature alg is 'HS256'; only GQ256 is accepted",
)
def op_alg_hs256_keyed_with_public_key(w: World) -> tuple[Run, Run]:
    protected = header_b64({"alg": "HS256", "kid": op_key().kid, "typ": "JWT"})
    modulus = b64decode(op_key().public_jwk()["n"])
    mac = hmac.new(modulus, f"{protected}.{w.token.pkt.payload_b64}".encode(), hashlib.sha256)
    pk = forge_pk(w.token, op_protected=protected, op_signature=b64encode(mac.digest()))
    return resigned(w, pk)


@attack(
    OPSIG,
    "publishes the raw RS256 ID token (GitHub's real signature) instead of a GQ proof",
    ALG_CHECK,
    GQProofError,
    "'RS256'; only GQ256 is accepted (a raw RS256 signature publishes the replayable ID token)",
)
def op_raw_rs256_id_token(w: World) -> tuple[Run, Run]:
    header, _, signature = w.token.id_token.split(".")
    return resigned(w, forge_pk(w.token, op_protected=header, op_signature=signature))


def _with_original(w: World, original: Mapping[str, Any], **gq_changes: Any) -> dict[str, Any]:
    header = gq_header(w.token) | {"kid": header_b64(original)} | gq_changes
    return forge_pk(w.token, op_protected=b64encode(go_json(header)))


def _two_key_jwks() -> dict[str, Any]:
    return {"keys": jwks_of(op_key(), other_op_key())}


@attack(
    OPSIG,
    "points the original header's `kid` at another key of the OP's JWKS",
    "GQ header `jkt` = thumbprint of the selected OP key",
    GQProofError,
    "header jkt does not match the OP key's thumbprint",
)
def op_kid_swapped_to_another_jwks_key(w: World) -> tuple[Run, Run]:
    original = original_header(w.token) | {"kid": other_op_key().kid}
    return resigned(w, _with_original(w, original), **_two_key_jwks())


@attack(
    OPSIG,
    "points `kid` at another key of the JWKS, sets `jkt` to that key's thumbprint and reduces "
    "the witnesses modulo its modulus so the proof's shape fits",
    GQ_CHECK,
    GQProofError,
    GQ_FAILS,
)
def op_kid_and_jkt_swapped_to_another_jwks_key(w: World) -> tuple[Run, Run]:
    other = other_op_key().public_jwk()
    original = original_header(w.token) | {"kid": other_op_key().kid}
    pk = _with_original(w, original, jkt=jwk_thumbprint(other))
    n = int.from_bytes(b64decode(other["n"]), "big")
    old = proof(w.token)
    witnesses = [
        (int.from_bytes(old[i : i + _N_BYTES], "big") % n).to_bytes(_N_BYTES, "big")
        for i in range(_R_BYTES, len(old), _N_BYTES)
    ]
    pk["signatures"][0]["signature"] = b64encode(bytes(old[:_R_BYTES]) + b"".join(witnesses))
    return resigned(w, pk, **_two_key_jwks())


@attack(
    OPSIG,
    "names a `kid` that is not in the OP's JWKS",
    "key selection by `kid` (`select_key`)",
    IssuerError,
    "key 'no-such-key' is not in the JWKS",
)
def op_kid_unknown(w: World) -> tuple[Run, Run]:
    return resigned(w, _with_original(w, original_header(w.token) | {"kid": "no-such-key"}))


@attack(
    OPSIG,
    "removes `kid` from the original header, with a one-key JWKS (the only key is tried)",
    GQ_CHECK,
    GQProofError,
    GQ_FAILS,
)
def op_original_kid_removed_single_key_jwks(w: World) -> tuple[Run, Run]:
    original = {k: v for k, v in original_header(w.token).items() if k != "kid"}
    return resigned(w, _with_original(w, original))


@attack(
    OPSIG,
    "removes `kid` from the original header, with a several-key JWKS",
    "key selection: no kid is only allowed with exactly one key",
    IssuerError,
    "token names no key id and the",
)
def op_original_kid_removed_multi_key_jwks(w: World) -> tuple[Run, Run]:
    original = {k: v for k, v in original_header(w.token).items() if k != "kid"}
    return resigned(w, _with_original(w, original), **_two_key_jwks())


@attack(
    OPSIG,
    "removes `kid` (the original header) from the GQ header",
    "GQ header shape",
    FormatError,
    "OP signature header: member 'kid' is missing",
)
def op_gq_header_kid_removed(w: World) -> tuple[Run, Run]:
    header = {k: v for k, v in gq_header(w.token).items() if k != "kid"}
    return resigned(w, forge_pk(w.token, op_protected=b64encode(go_json(header))))


@attack(
    OPSIG,
    'changes the original header\'s `alg` to "PS256"',
    "original header must be RS256 (`gq.original_header`)",
    GQProofError,
    "the original header must be RS256, got alg 'PS256'",
)
def op_original_alg_changed(w: World) -> tuple[Run, Run]:
    return resigned(w, _with_original(w, original_header(w.token) | {"alg": "PS256"}))


@attack(
    OPSIG,
    'changes the GQ header\'s `typ` to "CIC" (two client signatures, no OP one)',
    "PK token shape: exactly one OP and one CIC signature",
    FormatError,
    "PK token: 2 CIC signatures; at most one is allowed",
)
def op_typ_changed_to_cic(w: World) -> tuple[Run, Run]:
    header = gq_header(w.token) | {"typ": "CIC"}
    return resigned(w, forge_pk(w.token, op_protected=b64encode(go_json(header))))


@attack(OPSIG, "removes `typ` from the GQ header", GQ_CHECK, GQProofError, GQ_FAILS)
def op_typ_removed(w: World) -> tuple[Run, Run]:
    header = {k: v for k, v in gq_header(w.token).items() if k != "typ"}
    return resigned(w, forge_pk(w.token, op_protected=b64encode(go_json(header))))


@attack(OPSIG, "removes `jkt` from the GQ header", GQ_CHECK, GQProofError, GQ_FAILS)
def op_jkt_removed(w: World) -> tuple[Run, Run]:
    header = {k: v for k, v in gq_header(w.token).items() if k != "jkt"}
    return resigned(w, forge_pk(w.token, op_protected=b64encode(go_json(header))))


@attack(
    OPSIG,
    "adds a second OP signature (the raw RS256 one) beside the GQ256 one",
    "PK token shape: exactly one OP signature",
    FormatError,
    "PK token: 2 OP signatures; at most one is allowed",
)
def op_second_signature_added(w: World) -> tuple[Run, Run]:
    header, _, signature = w.token.id_token.split(".")
    pk = copy.deepcopy(w.pk)
    pk["signatures"].append({"protected": header, "signature": signature})
    return resigned(w, pk)


# --- the GQ proof --------------------------------------------------------------------------------

GQ = "GQ256 proof"
SHAPE_CHECK: Final = "GQ proof shape: exact length, every S_i in (0, n)"


def _proof_case(name: str, what: str, error_fragment: str, check: str, change: Any) -> None:
    def build(w: World) -> tuple[Run, Run]:
        tampered = change(proof(w.token))
        return resigned(w, forge_pk(w.token, op_signature=b64encode(bytes(tampered))))

    attack(GQ, what, check, GQProofError, error_fragment, name=name)(build)


_proof_case(
    "gq_bit_flip_in_r",
    "flips one bit of R (the challenge)",
    GQ_FAILS,
    GQ_CHECK,
    lambda p: flip(p, 0),
)
_proof_case(
    "gq_bit_flip_in_s",
    "flips the lowest bit of S_1 (a witness)",
    GQ_FAILS,
    GQ_CHECK,
    lambda p: flip(p, _R_BYTES + _N_BYTES - 1),
)
_proof_case(
    "gq_truncated",
    "drops the proof's last byte",
    "GQ proof is 4127 bytes; this OP key needs exactly 4128",
    SHAPE_CHECK,
    lambda p: p[:-1],
)
_proof_case(
    "gq_extended",
    "appends a byte to the proof",
    "GQ proof is 4129 bytes; this OP key needs exactly 4128",
    SHAPE_CHECK,
    lambda p: p + b"\x00",
)
_proof_case(
    "gq_s_zero",
    "sets S_1 = 0",
    "witness S_1 is not in the range (0, n)",
    SHAPE_CHECK,
    lambda p: p[:_R_BYTES] + bytes(_N_BYTES) + p[_R_BYTES + _N_BYTES :],
)
_proof_case(
    "gq_s_equals_n",
    "sets S_16 = n (the modulus, = 0 mod n)",
    "witness S_16 is not in the range (0, n)",
    SHAPE_CHECK,
    lambda p: p[:-_N_BYTES] + b64decode(op_key().public_jwk()["n"]),
)


@attack(
    GQ,
    "transplants the GQ proof of another token by the same OP key",
    GQ_CHECK,
    GQProofError,
    GQ_FAILS,
)
def gq_proof_from_another_token(w: World) -> tuple[Run, Run]:
    donor = issue()
    return resigned(w, forge_pk(w.token, op_signature=donor.pkt.op.signature_b64))


# --- the CIC (client instance claims) ------------------------------------------------------------

CIC = "CIC"
COMMITMENT_CHECK: Final = "commitment: `aud` = SHA3-256 of the CIC header (`verify_pktoken` step 4)"


@attack(
    CIC,
    "changes `rz` and re-signs the CIC with the right user key",
    COMMITMENT_CHECK,
    CommitmentError,
    "is not the commitment",
)
def cic_rz_changed(w: World) -> tuple[Run, Run]:
    header = w.token.cic_header | {"rz": "0" * 64}
    return resigned(w, forge_pk(w.token, cic_header=header))


@attack(
    CIC,
    "steals the PK token and swaps `upk` for their own key: CIC and OSM signed by the attacker",
    COMMITMENT_CHECK,
    CommitmentError,
    "(ID token reused with another key)",
)
def cic_upk_replaced_by_attacker(w: World) -> tuple[Run, Run]:
    header = w.token.cic_header | {"upk": w.attacker.public_jwk}
    pk = forge_pk(w.token, cic_header=header, cic_signer=w.attacker)
    return on_signature(w, signature_bundle(pk, osm(pk, w.attacker)))


@attack(
    CIC,
    'changes the CIC `alg` to "EdDSA" (upk stays an ES256 key)',
    "CIC: `alg` = `upk.alg`",
    CICError,
    "CIC: upk.alg 'ES256' differs from the header alg 'EdDSA'",
)
def cic_alg_changed(w: World) -> tuple[Run, Run]:
    return resigned(w, forge_pk(w.token, cic_header=w.token.cic_header | {"alg": "EdDSA"}))


@attack(
    CIC,
    'sets CIC `alg` and `upk.alg` to "RS256" over an EC key (key-type confusion)',
    "CIC: the upk key type matches `alg`",
    CICError,
    "CIC: upk is not a key for alg 'RS256'",
)
def cic_alg_and_upk_alg_rs256_on_ec_key(w: World) -> tuple[Run, Run]:
    upk = w.token.cic_header["upk"] | {"alg": "RS256"}
    header = w.token.cic_header | {"alg": "RS256", "upk": upk}
    return resigned(w, forge_pk(w.token, cic_header=header))


@attack(
    CIC,
    '`alg` "none" in the CIC header',
    "CIC: `alg` in the allowed set",
    CICError,
    "CIC: alg must be one of",
)
def cic_alg_none(w: World) -> tuple[Run, Run]:
    upk = w.token.cic_header["upk"] | {"alg": "none"}
    return resigned(
        w, forge_pk(w.token, cic_header=w.token.cic_header | {"alg": "none", "upk": upk})
    )


@attack(CIC, "removes `rz`", "CIC: `rz` present, 128+ bits of hex", CICError, "CIC: rz must be")
def cic_rz_removed(w: World) -> tuple[Run, Run]:
    header = {k: v for k, v in w.token.cic_header.items() if k != "rz"}
    return resigned(w, forge_pk(w.token, cic_header=header))


@attack(
    CIC,
    'changes the CIC `typ` to "JWT" (two OP signatures, no client one)',
    "PK token shape: exactly one OP and one CIC signature",
    FormatError,
    "PK token: 2 OP signatures; at most one is allowed",
)
def cic_typ_changed_to_jwt(w: World) -> tuple[Run, Run]:
    return resigned(w, forge_pk(w.token, cic_header=w.token.cic_header | {"typ": "JWT"}))


@attack(
    CIC,
    "signs the (unchanged) CIC with the attacker's key",
    "CIC signature by `upk` (`verify_pktoken` step 1)",
    SignatureError,
    "CIC: signature does not verify",
)
def cic_signed_by_another_key(w: World) -> tuple[Run, Run]:
    return resigned(w, forge_pk(w.token, cic_signer=w.attacker))


@attack(
    CIC,
    "flips one bit of the CIC signature",
    "CIC signature by `upk` (`verify_pktoken` step 1)",
    SignatureError,
    "CIC: signature does not verify",
)
def cic_signature_bit_flip(w: World) -> tuple[Run, Run]:
    pk = copy.deepcopy(w.pk)
    pk["signatures"][1]["signature"] = b64encode(
        flip(b64decode(pk["signatures"][1]["signature"]), 5)
    )
    return resigned(w, pk)


@attack(
    CIC,
    "drops the CIC signature",
    "PK token shape: exactly one OP and one CIC signature",
    FormatError,
    "'signatures' must be a list of 2 or 3 signatures",
)
def cic_signature_removed(w: World) -> tuple[Run, Run]:
    pk = copy.deepcopy(w.pk)
    del pk["signatures"][1]
    return on_signature(w, signature_bundle(pk, w.signature["osm"]))


@attack(
    CIC,
    "an OP-signed token whose `aud` is a list holding the commitment (another OP's style)",
    "commitment: `aud` is exactly one string",
    CommitmentError,
    "aud must be a single string holding the commitment",
)
def cic_commitment_in_aud_list(w: World) -> tuple[Run, Run]:
    key = UserKey.generate()
    header = new_cic_header(key)
    token = issue(user_key=key, cic_header=header, raw_claims={"aud": [commitment(header)]})
    pk = token.pk
    return on_signature(w, signature_bundle(pk, osm(pk, key)))
