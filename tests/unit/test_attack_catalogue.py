"""The attack catalogue (issue 5, "what it must show" 1): every tampering refused by its own check.

A table of named cases, after pyjwt's ``tests/test_advisory.py`` and sigstore-python's regression
bundles. Each case is a pair of runs of the pure verifier (``verify_signature_bundle`` /
``verify_attestation_bundle`` on the bundle's JSON bytes, exactly what an attacker publishes):

- the *control*: a valid bundle with the very verifier settings of the attack, which must pass,
  so the catalogue can fail (a case whose control fails proves nothing);
- the *attack*: one thing changed, with whatever the attacker could re-sign re-signed (the CIC
  after a payload change, the OSM under a changed PK token, ...) so that the check under test,
  not an earlier one, is what refuses it.

Each attack must raise exactly its error class (not a subclass, not a parent), with its message
fragment and its exit code (11 policy, 12 invalid). docs/attacks.md tables every case; a test
keeps the two in step. Registry-level attacks (referrer manifests) are in
tests/integration/test_attack_catalogue_registry.py.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from opk_sign._dev.github_oidc import OPSigningKey, github_claims
from opk_sign.bundle import BUNDLE_MEDIA_TYPE, Bundle
from opk_sign.errors import (
    EXIT_INVALID_SIGNATURE,
    EXIT_POLICY_MISMATCH,
    CICError,
    CommitmentError,
    ExpiredTokenError,
    FormatError,
    GQProofError,
    IssuerError,
    OpkSignError,
    OSMError,
    PayloadMismatchError,
    PolicyError,
    SignatureError,
)
from opk_sign.jose import b64decode, b64encode, go_json, jwk_thumbprint
from opk_sign.payloads import INTOTO_PAYLOAD_TYPE, Statement, Subject, pae
from opk_sign.payloads.simplesigning import SimpleSigningPayload
from opk_sign.pktoken import (
    GITHUB_ISSUER,
    ExpiryPolicy,
    OPKeySource,
    PKToken,
    StaticJWKS,
    UserKey,
    commitment,
    gq,
    new_cic_header,
)
from opk_sign.pktoken.verify import MAX_AGE_24H, OIDC, select_key
from opk_sign.policy import FIELDS, IdentityPolicy, policy_from_fields
from opk_sign.verify import verify_attestation_bundle, verify_signature_bundle
from tests.helpers import ASSETS, op_key

NOW: Final = 1_790_000_000
HOUR: Final = 3600
REPOSITORY: Final = "octo-org/octo-repo"
#: The docker-reference a signature names: registry and repository, no tag.
REFERENCE: Final = f"registry.example/{REPOSITORY}"
DIGEST: Final = "sha256:" + "ab" * 32
OTHER_DIGEST: Final = "sha256:" + "cd" * 32
PROVENANCE: Final = "https://slsa.dev/provenance/v1"
SPDX: Final = "https://spdx.dev/Document"
GHES_ISSUER: Final = "https://ghes.example.com/_services/token"
EVIL_ISSUER: Final = "https://token.actions.evil.example"
POLICY: Final = policy_from_fields({"repository": REPOSITORY})
DOCS: Final = Path(__file__).resolve().parents[2] / "docs" / "attacks.md"

SIGNATURE: Final = "signature"
ATTESTATION: Final = "attestation"


# --- trust material ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuerKeys:
    """Several issuers' JWKS (StaticJWKS holds one issuer's)."""

    jwks: Mapping[str, list[dict[str, Any]]]

    def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Mapping[str, Any]:
        if issuer not in self.jwks:
            raise IssuerError(f"no keys configured for issuer {issuer!r}")
        return select_key(list(self.jwks[issuer]), issuer, kid)


@functools.cache
def other_op_key(kid: str = "test-key-2") -> OPSigningKey:
    """A second RSA-2048 key (committed: key generation is slow): another key of the OP's JWKS,
    or the attacker's own "OP" key."""
    pem = (ASSETS / "attacks" / "rsa2048-e65537-other.pem").read_bytes()
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return OPSigningKey(private, kid, b"opk-sign attack catalogue certificate " + kid.encode())


def jwks_of(*keys: OPSigningKey, issuer: str = GITHUB_ISSUER) -> StaticJWKS:
    return StaticJWKS(issuer, {"keys": [k.public_jwk() for k in keys]})


# --- tokens, exactly as a signer makes them (and as an attacker re-makes them) -------------------


def rs256(op: OPSigningKey, payload: bytes, header: Mapping[str, Any] | None = None) -> str:
    """An ID token signed by ``op`` over exactly ``payload`` (GitHub's header unless given)."""
    protected = header or {"alg": "RS256", "kid": op.kid, "typ": "JWT", "x5t": op.x5t}
    signing_input = f"{b64encode(json.dumps(protected, separators=(',', ':')).encode())}"
    signing_input += f".{b64encode(payload)}"
    signature = op.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64encode(signature)}"


def compact(claims: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(claims), separators=(",", ":")).encode()


@dataclass(frozen=True)
class Token:
    """A PK token and what made it: its user key, its CIC header, the ID token, the GQ token."""

    pkt: PKToken
    user_key: UserKey
    cic_header: dict[str, Any]
    id_token: str
    gq_token: str
    op: OPSigningKey

    @property
    def claims(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.pkt.payload)
        return loaded

    @property
    def pk(self) -> dict[str, Any]:
        """The PK token as the bundle's ``pkToken`` member."""
        loaded: dict[str, Any] = json.loads(self.pkt.to_json())
        return loaded


def issue(
    *,
    op: OPSigningKey | None = None,
    issuer: str = GITHUB_ISSUER,
    now: int = NOW,
    user_key: UserKey | None = None,
    cic_header: dict[str, Any] | None = None,
    payload: Callable[[dict[str, Any]], bytes] = compact,
    raw_claims: Mapping[str, Any] | None = None,
    **claims: Any,
) -> Token:
    """A PK token minted like the signer does: CIC, commitment as aud, RS256 by the OP, GQ256.

    ``raw_claims`` replace claims after GitHub's (to forge what GitHub never sends); ``payload``
    turns the claims into the signed bytes (to forge a payload JSON cannot express as a dict).
    """
    op = op or op_key()
    user_key = user_key or UserKey.generate()
    cic_header = cic_header or new_cic_header(user_key)
    defaults: dict[str, Any] = {"ref": "refs/tags/v1", "sha": "5" * 40}
    claim_set = dict(
        github_claims(
            commitment(cic_header),
            issuer=issuer,
            now=now,
            repository=REPOSITORY,
            **(defaults | claims),
        )
    )
    claim_set.update(raw_claims or {})
    id_token = rs256(op, payload(claim_set))
    gq_token = gq.sign_jwt(id_token, op.public_jwk())
    return Token(
        PKToken.build(gq_token, cic_header, user_key), user_key, cic_header, id_token, gq_token, op
    )


def pk_hash(pk: Mapping[str, Any]) -> str:
    """The PK token hash an OSM ``kid`` names; for a token that does not parse, a placeholder
    (its bundle is refused before any OSM is looked at)."""
    try:
        return PKToken.from_json(json.dumps(pk)).hash()
    except FormatError:
        return b64encode(hashlib.sha3_256(json.dumps(pk).encode()).digest())


def forge_pk(
    token: Token,
    *,
    payload: str | None = None,
    op_protected: str | None = None,
    op_signature: str | None = None,
    cic_header: Mapping[str, Any] | None = None,
    cic_signer: UserKey | None = None,
) -> dict[str, Any]:
    """A PK token with parts replaced; the CIC signature is always made afresh (by the token's
    user key unless ``cic_signer``), so a changed payload or CIC header leaves it valid."""
    payload = payload or token.pkt.payload_b64
    cic_protected = (
        b64encode(go_json(cic_header)) if cic_header is not None else token.pkt.cic.protected_b64
    )
    signer = cic_signer or token.user_key
    cic_signature = signer.sign(f"{cic_protected}.{payload}".encode())
    return {
        "payload": payload,
        "signatures": [
            {
                "protected": op_protected or token.pkt.op.protected_b64,
                "signature": token.pkt.op.signature_b64 if op_signature is None else op_signature,
            },
            {"protected": cic_protected, "signature": b64encode(cic_signature)},
        ],
    }


def with_claims(token: Token, **changes: Any) -> str:
    """The token's payload segment with claims changed (None removes), after the OP signed it."""
    claims = token.claims
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return b64encode(compact(claims))


def gq_header(token: Token) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(b64decode(token.pkt.op.protected_b64))
    return loaded


def original_header(token: Token) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(b64decode(token.id_token.split(".")[0]))
    return loaded


def header_b64(header: Mapping[str, Any]) -> str:
    return b64encode(json.dumps(dict(header), separators=(",", ":")).encode())


def proof(token: Token) -> bytearray:
    return bytearray(b64decode(token.pkt.op.signature_b64))


# --- contents: OSM and DSSE ----------------------------------------------------------------------


def jws(key: UserKey, header: Mapping[str, Any], message: bytes) -> str:
    protected = b64encode(go_json(header))
    payload = b64encode(message)
    return f"{protected}.{payload}.{b64encode(key.sign(f'{protected}.{payload}'.encode()))}"


def ss_payload(digest: str = DIGEST, reference: str = REFERENCE) -> bytes:
    return SimpleSigningPayload.build(reference, digest, {"creator": "opk-sign/test"}).raw


def osm(
    pk: Mapping[str, Any],
    key: UserKey,
    message: bytes | None = None,
    **header: Any,
) -> str:
    """An OSM under PK token ``pk`` signed by ``key``; ``header`` overrides (None removes)."""
    protected: dict[str, Any] = {"alg": key.alg, "kid": pk_hash(pk), "typ": "osm"}
    for name, value in header.items():
        if value is None:
            protected.pop(name, None)
        else:
            protected[name] = value
    return jws(key, protected, message if message is not None else ss_payload())


def signature_bundle(pk: Mapping[str, Any], content: str) -> dict[str, Any]:
    return {"mediaType": BUNDLE_MEDIA_TYPE, "pkToken": copy.deepcopy(dict(pk)), "osm": content}


def statement(digest: str = DIGEST, predicate_type: str = PROVENANCE) -> bytes:
    subject = Subject.for_oci_digest(REFERENCE, digest)
    return Statement.build([subject], predicate_type, {"buildDefinition": {}}).raw


def der_sign(key: UserKey, data: bytes) -> bytes:
    private = key.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return private.sign(data, ec.ECDSA(hashes.SHA256()))


def std64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def envelope(
    key: UserKey,
    payload: bytes | None = None,
    payload_type: str = INTOTO_PAYLOAD_TYPE,
    keyid: str = "",
) -> dict[str, Any]:
    """A DSSE envelope signed (P-256, DER) over the PAE by ``key``."""
    payload = payload if payload is not None else statement()
    sig = der_sign(key, pae(payload_type, payload))
    return {
        "payload": std64(payload),
        "payloadType": payload_type,
        "signatures": [{"keyid": keyid, "sig": std64(sig)}],
    }


def attestation_bundle(pk: Mapping[str, Any], content: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "pkToken": copy.deepcopy(dict(pk)),
        "dsseEnvelope": copy.deepcopy(dict(content)),
    }


def dump(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


URL_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
STD_ALPHABET: Final = URL_ALPHABET[:-2] + "+/"


def padded_json(doc: bytes) -> bytes:
    """``doc`` (a JSON object) with trailing spaces so that its length is 1 mod 3: its base64
    then ends in a character carrying 4 unused bits."""
    return doc + b" " * ((1 - len(doc)) % 3)


def noncanonical(text: str, alphabet: str) -> str:
    """The same bytes in base64 with non-zero unused trailing bits (for 1 mod 3 byte lengths)."""
    padding = "=" * (len(text) - len(text.rstrip("=")))
    head = text.rstrip("=")
    assert len(head) % 4 == 2 and alphabet.index(head[-1]) % 16 == 0
    return head[:-1] + alphabet[alphabet.index(head[-1]) + 1] + padding


def flip(data: bytes | bytearray, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


# --- the world every case starts from ------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """The victim's valid token and bundles, the attacker's key, the trust material."""

    token: Token
    attacker: UserKey
    signature: dict[str, Any]
    attestation: dict[str, Any]
    keys: StaticJWKS

    @property
    def pk(self) -> dict[str, Any]:
        return self.token.pk

    @property
    def user(self) -> UserKey:
        return self.token.user_key


@functools.cache
def world() -> World:
    token = issue()
    return World(
        token=token,
        attacker=UserKey.generate(),
        signature=signature_bundle(token.pk, osm(token.pk, token.user_key)),
        attestation=attestation_bundle(token.pk, envelope(token.user_key, keyid=token.pkt.hash())),
        keys=jwks_of(op_key()),
    )


# --- one verification run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One call of the pure verifier on bundle bytes, with all its settings."""

    bundle: bytes
    kind: str = SIGNATURE
    digest: str = DIGEST
    reference: str = REFERENCE
    keys: OPKeySource = field(default_factory=lambda: world().keys)
    issuers: frozenset[str] = frozenset({GITHUB_ISSUER})
    policy: IdentityPolicy = POLICY
    predicate_type: str | None = PROVENANCE
    expiry: ExpiryPolicy = MAX_AGE_24H
    now: float = NOW

    def __call__(self) -> None:
        bundle = Bundle.from_json(self.bundle)
        common: dict[str, Any] = {
            "digest": self.digest,
            "keys": self.keys,
            "policy": self.policy,
            "issuers": self.issuers,
            "expiry": self.expiry,
            "now": self.now,
        }
        if self.kind == SIGNATURE:
            verify_signature_bundle(bundle, docker_reference=self.reference, **common)
        else:
            verify_attestation_bundle(bundle, predicate_type=self.predicate_type, **common)


def signed(doc: Mapping[str, Any], **settings: Any) -> Run:
    return Run(dump(doc), SIGNATURE, **settings)


def attested(doc: Mapping[str, Any], **settings: Any) -> Run:
    return Run(dump(doc), ATTESTATION, **settings)


def on_signature(w: World, tampered: Mapping[str, Any], **settings: Any) -> tuple[Run, Run]:
    """Control: the valid signature bundle; attack: ``tampered``; same settings."""
    return signed(w.signature, **settings), signed(tampered, **settings)


def on_attestation(w: World, tampered: Mapping[str, Any], **settings: Any) -> tuple[Run, Run]:
    return attested(w.attestation, **settings), attested(tampered, **settings)


def resigned(w: World, pk: Mapping[str, Any], **settings: Any) -> tuple[Run, Run]:
    """A tampered PK token carried by a signature bundle whose OSM was re-made under it by the
    user key, so only the PK token is wrong."""
    return on_signature(w, signature_bundle(pk, osm(pk, w.user)), **settings)


# --- the catalogue -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    name: str
    group: str
    what: str  # what the attacker does
    check: str  # which check refuses it
    error: type[OpkSignError]
    fragment: str
    exit_code: int
    build: Callable[[World], tuple[Run, Run]]


CATALOGUE: list[Attack] = []


def attack(
    group: str,
    what: str,
    check: str,
    error: type[OpkSignError],
    fragment: str,
    exit_code: int = EXIT_INVALID_SIGNATURE,
    *,
    name: str | None = None,
) -> Callable[[Callable[[World], tuple[Run, Run]]], Callable[[World], tuple[Run, Run]]]:
    def register(build: Callable[[World], tuple[Run, Run]]) -> Callable[[World], tuple[Run, Run]]:
        case = Attack(name or build.__name__, group, what, check, error, fragment, exit_code, build)
        assert case.name not in {c.name for c in CATALOGUE}, case.name
        CATALOGUE.append(case)
        return build

    return register


GQ_FAILS: Final = "the GQ256 proof does not verify with the OP key"
#: GQ256 proof layout for RSA-2048, e = 65537: R (16 rounds x 2 bytes), then S_1..S_16 (256 each).
_R_BYTES: Final = 32
_N_BYTES: Final = 256
GQ_CHECK: Final = "GQ256 proof over the GQ header and payload (`gq.verify_jwt`)"

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


def _two_issuers() -> dict[str, Any]:
    keys = IssuerKeys(
        {GITHUB_ISSUER: [op_key().public_jwk()], GHES_ISSUER: [op_key().public_jwk()]}
    )
    return {"keys": keys, "issuers": frozenset({GITHUB_ISSUER, GHES_ISSUER})}


@attack(
    PAYLOAD,
    "changes `iss` to another trusted issuer that has the same key id (CIC re-signed)",
    GQ_CHECK,
    GQProofError,
    GQ_FAILS,
)
def payload_iss_changed_to_another_trusted_issuer(w: World) -> tuple[Run, Run]:
    pk = forge_pk(w.token, payload=with_claims(w.token, iss=GHES_ISSUER))
    return resigned(w, pk, **_two_issuers())


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

    return on_signature(w, _token_bundle(issue(payload=duplicate)))


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
    return signed(_token_bundle(token)), signed(signature_bundle(pk, _token_bundle(token)["osm"]))


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


# --- issuers, OP keys and time -------------------------------------------------------------------

TRUST = "issuer, OP key and expiry"


@attack(
    TRUST,
    "a genuine PK token from another OIDC provider, valid under that provider's keys",
    "issuer allow-list (`verify_pktoken` step 2)",
    IssuerError,
    f"issuer {EVIL_ISSUER!r} is not trusted",
)
def issuer_not_trusted(w: World) -> tuple[Run, Run]:
    token = issue(op=other_op_key(), issuer=EVIL_ISSUER)
    doc = signature_bundle(token.pk, osm(token.pk, token.user_key))
    keys = IssuerKeys(
        {GITHUB_ISSUER: [op_key().public_jwk()], EVIL_ISSUER: [other_op_key().public_jwk()]}
    )
    trusting = policy_from_fields({"issuer": EVIL_ISSUER, "repository": REPOSITORY})
    control = signed(doc, keys=keys, issuers=frozenset({EVIL_ISSUER}), policy=trusting)
    return control, signed(doc, keys=keys)


@attack(
    TRUST,
    "GitHub's issuer URL with a trailing slash (a look-alike issuer)",
    "issuer allow-list: exact string",
    IssuerError,
    "is not trusted",
)
def issuer_lookalike_trailing_slash(w: World) -> tuple[Run, Run]:
    token = issue(issuer=GITHUB_ISSUER + "/")
    return on_signature(w, signature_bundle(token.pk, osm(token.pk, token.user_key)))


def _forged_github_token(kid: str) -> tuple[Token, StaticJWKS]:
    attacker_op = dataclasses.replace(other_op_key(), kid=kid)
    return issue(op=attacker_op), jwks_of(attacker_op)


@attack(
    TRUST,
    "mints a token as GitHub's issuer with their own RSA key, reusing GitHub's `kid`",
    "GQ header `jkt` = thumbprint of the trusted OP key",
    GQProofError,
    "header jkt does not match the OP key's thumbprint",
)
def op_key_untrusted_with_trusted_kid(w: World) -> tuple[Run, Run]:
    token, own_keys = _forged_github_token(op_key().kid)
    doc = signature_bundle(token.pk, osm(token.pk, token.user_key))
    return signed(doc, keys=own_keys), signed(doc)


@attack(
    TRUST,
    "mints a token as GitHub's issuer with their own RSA key under a new `kid`",
    "key selection by `kid` in the trusted JWKS",
    IssuerError,
    "key 'attacker-key' is not in the JWKS",
)
def op_key_untrusted_with_own_kid(w: World) -> tuple[Run, Run]:
    token, own_keys = _forged_github_token("attacker-key")
    doc = signature_bundle(token.pk, osm(token.pk, token.user_key))
    return signed(doc, keys=own_keys), signed(doc)


@attack(
    TRUST,
    "a genuine token issued 25 hours ago (default 24h policy)",
    "expiry policy `24h` (`verify_pktoken` step 5)",
    ExpiredTokenError,
    "PK token expired under the '24h' policy",
)
def token_expired_25h(w: World) -> tuple[Run, Run]:
    issued = NOW - 25 * HOUR
    token = issue(now=issued)
    doc = signature_bundle(token.pk, osm(token.pk, token.user_key))
    return signed(doc, now=issued + 60), signed(doc, now=NOW)


@attack(
    TRUST,
    "a genuine token whose `iat` lies an hour ahead of the verifier's clock",
    "`iat` at most 5 minutes in the future (`ExpiryPolicy.check`)",
    ExpiredTokenError,
    "PK token issued in the future",
)
def token_from_the_future(w: World) -> tuple[Run, Run]:
    issued = NOW + HOUR
    token = issue(now=issued)
    doc = signature_bundle(token.pk, osm(token.pk, token.user_key))
    return signed(doc, now=issued + 60), signed(doc, now=NOW)


@attack(
    TRUST,
    "a genuine token past its OIDC `exp` under `--expiry-policy oidc`",
    "expiry policy `oidc`",
    ExpiredTokenError,
    "PK token expired under the 'oidc' policy",
)
def token_expired_oidc_exp(w: World) -> tuple[Run, Run]:
    return signed(w.signature, expiry=OIDC, now=NOW + 60), signed(
        w.signature, expiry=OIDC, now=NOW + HOUR
    )


# --- the OSM (the signature's content) -----------------------------------------------------------

OSM = "OSM (signature)"
OSM_SIG_FAILS: Final = "OSM: signature does not verify with the PK token's user key (upk)"
OSM_SIG_CHECK: Final = "OSM signature by `upk` (`verify_osm`)"


def _osm_parts(w: World) -> list[str]:
    parts: list[str] = w.signature["osm"].split(".")
    return parts


def _signature_with(w: World, content: str) -> dict[str, Any]:
    return signature_bundle(w.pk, content)


@attack(
    OSM,
    "rewrites the signed payload's `docker-manifest-digest` to another image (signature kept)",
    OSM_SIG_CHECK,
    OSMError,
    OSM_SIG_FAILS,
)
def osm_payload_digest_changed(w: World) -> tuple[Run, Run]:
    header, _, signature = _osm_parts(w)
    tampered = f"{header}.{b64encode(ss_payload(digest=OTHER_DIGEST))}.{signature}"
    control, attack_run = on_signature(w, _signature_with(w, tampered))
    return control, replace(attack_run, digest=OTHER_DIGEST)


@attack(
    OSM,
    "rewrites the signed payload's `docker-reference` to another repository (signature kept)",
    OSM_SIG_CHECK,
    OSMError,
    OSM_SIG_FAILS,
)
def osm_payload_reference_changed(w: World) -> tuple[Run, Run]:
    header, _, signature = _osm_parts(w)
    evil = "registry.example/evil-org/app"
    tampered = f"{header}.{b64encode(ss_payload(reference=evil))}.{signature}"
    control, attack_run = on_signature(w, _signature_with(w, tampered))
    return control, replace(attack_run, reference=evil)


@attack(
    OSM,
    "pairs an OSM made under another PK token of the same user key (another ID token for the "
    "same CIC) with this PK token",
    "OSM `kid` = hash of this PK token",
    OSMError,
    "OSM: kid is not the hash of this PK token",
)
def osm_made_under_another_pktoken(w: World) -> tuple[Run, Run]:
    sibling = issue(user_key=w.user, cic_header=w.token.cic_header)
    content = osm(sibling.pk, w.user)
    return signed(signature_bundle(sibling.pk, content)), signed(_signature_with(w, content))


@attack(
    OSM,
    "signs a payload with their own key under this PK token's `kid`",
    OSM_SIG_CHECK,
    OSMError,
    OSM_SIG_FAILS,
)
def osm_signed_by_attacker(w: World) -> tuple[Run, Run]:
    return on_signature(w, _signature_with(w, osm(w.pk, w.attacker)))


@attack(
    OSM,
    "flips one bit of the OSM signature",
    OSM_SIG_CHECK,
    OSMError,
    OSM_SIG_FAILS,
)
def osm_signature_bit_flip(w: World) -> tuple[Run, Run]:
    header, payload, signature = _osm_parts(w)
    tampered = f"{header}.{payload}.{b64encode(flip(b64decode(signature), 7))}"
    return on_signature(w, _signature_with(w, tampered))


@attack(
    OSM,
    'changes the OSM `typ` to "JWT" (re-signed by the user key)',
    "bundle: the OSM's `typ` is `osm`",
    FormatError,
    "bundle osm: typ must be 'osm', got 'JWT'",
)
def osm_typ_changed(w: World) -> tuple[Run, Run]:
    return on_signature(w, _signature_with(w, osm(w.pk, w.user, typ="JWT")))


@attack(
    OSM,
    '`alg` "none" with an empty signature',
    "OSM `alg` = the CIC's alg",
    OSMError,
    "OSM: alg 'none' differs from the CIC alg 'ES256'",
)
def osm_alg_none(w: World) -> tuple[Run, Run]:
    header = b64encode(go_json({"alg": "none", "kid": w.token.pkt.hash(), "typ": "osm"}))
    return on_signature(w, _signature_with(w, f"{header}.{b64encode(ss_payload())}."))


@attack(
    OSM,
    '`alg` "HS256", an HMAC keyed with the public `upk` JWK',
    "OSM `alg` = the CIC's alg",
    OSMError,
    "OSM: alg 'HS256' differs from the CIC alg 'ES256'",
)
def osm_alg_hs256_keyed_with_upk(w: World) -> tuple[Run, Run]:
    header = b64encode(go_json({"alg": "HS256", "kid": w.token.pkt.hash(), "typ": "osm"}))
    payload = b64encode(ss_payload())
    key = go_json(w.user.public_jwk)
    mac = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return on_signature(w, _signature_with(w, f"{header}.{payload}.{b64encode(mac)}"))


@attack(
    OSM,
    "embeds their own public key in the OSM header (`jwk`) and signs with it",
    "OSM: no `jwk`/`jku`/`x5c`/`crit`/`b64` header",
    OSMError,
    "OSM: header 'jwk' is not allowed",
)
def osm_embedded_jwk(w: World) -> tuple[Run, Run]:
    return on_signature(w, _signature_with(w, osm(w.pk, w.attacker, jwk=w.attacker.public_jwk)))


@attack(
    OSM,
    "adds a `crit` header (semantics the verifier does not implement), re-signed by the user key",
    "OSM: no `jwk`/`jku`/`x5c`/`crit`/`b64` header",
    OSMError,
    "OSM: header 'crit' is not allowed",
)
def osm_crit_header(w: World) -> tuple[Run, Run]:
    return on_signature(w, _signature_with(w, osm(w.pk, w.user, crit=["exp"], exp=1)))


@attack(
    OSM,
    "an OSM validly signed by the user key over a document that is not an image signature",
    "the signed payload is a simple-signing document",
    OSMError,
    "signed payload: simple-signing: critical.type must be",
)
def osm_over_another_document_type(w: World) -> tuple[Run, Run]:
    doc = json.loads(ss_payload())
    doc["critical"]["type"] = "cosign container image signature"
    content = osm(w.pk, w.user, go_json(doc))
    return on_signature(w, _signature_with(w, content))


@attack(
    OSM,
    "adds a cosigner (COS) signature of their own to the PK token",
    "nothing unverified rides along (`verify_pktoken` step 6)",
    SignatureError,
    "cosigner (COS) signatures are not supported",
)
def pktoken_cosigner_added(w: World) -> tuple[Run, Run]:
    pk = copy.deepcopy(w.pk)
    cos = b64encode(go_json({"alg": "ES256", "typ": "COS"}))
    sig = w.attacker.sign(f"{cos}.{pk['payload']}".encode())
    pk["signatures"].append({"protected": cos, "signature": b64encode(sig)})
    return on_signature(w, signature_bundle(pk, w.signature["osm"]))


@attack(
    OSM,
    "adds an unprotected `header` to the OP signature",
    "nothing unverified rides along (`verify_pktoken` step 6)",
    SignatureError,
    "unprotected JWS headers are not accepted",
)
def pktoken_unprotected_header_added(w: World) -> tuple[Run, Run]:
    pk = copy.deepcopy(w.pk)
    op = pk["signatures"][0]
    pk["signatures"][0] = {
        "protected": op["protected"],
        "header": {"alg": "none"},
        "signature": op["signature"],
    }
    return on_signature(w, signature_bundle(pk, w.signature["osm"]))


# --- replay of valid bundles ---------------------------------------------------------------------

REPLAY = "replay"


@attack(
    REPLAY,
    "attaches a valid signature to another image (digest)",
    "the signed payload names this digest",
    PayloadMismatchError,
    f"signature is for manifest {DIGEST}, not {OTHER_DIGEST} (replayed from another image)",
)
def replay_signature_onto_another_digest(w: World) -> tuple[Run, Run]:
    return signed(w.signature), signed(w.signature, digest=OTHER_DIGEST)


@attack(
    REPLAY,
    "attaches a valid signature to the same digest in another repository",
    "the signed payload names this repository",
    PayloadMismatchError,
    "not 'registry.example/evil-org/octo-repo' (replayed from another repository)",
)
def replay_signature_onto_another_repository(w: World) -> tuple[Run, Run]:
    evil = "registry.example/evil-org/octo-repo"
    return signed(w.signature), signed(w.signature, reference=evil)


@attack(
    REPLAY,
    "copies a valid signature to the same repository path on another registry",
    "the signed payload names this registry and repository",
    PayloadMismatchError,
    "(replayed from another repository)",
)
def replay_signature_onto_another_registry(w: World) -> tuple[Run, Run]:
    return signed(w.signature), signed(w.signature, reference=f"mirror.example/{REPOSITORY}")


@attack(
    REPLAY,
    "attaches a valid attestation to another image",
    "the in-toto subject names this digest",
    PayloadMismatchError,
    f"attestation subject does not name {OTHER_DIGEST} (replayed from another image)",
)
def replay_attestation_onto_another_image(w: World) -> tuple[Run, Run]:
    return attested(w.attestation), attested(w.attestation, digest=OTHER_DIGEST)


@attack(
    REPLAY,
    "offers a valid attestation of another predicate type than the one required",
    "the statement's `predicateType` is the one asked for",
    PayloadMismatchError,
    f"attestation predicate type is {PROVENANCE!r}, not {SPDX!r}",
)
def attestation_of_another_predicate_type(w: World) -> tuple[Run, Run]:
    return attested(w.attestation), attested(w.attestation, predicate_type=SPDX)


@attack(
    REPLAY,
    "offers a valid attestation bundle where a signature is required",
    "bundle kind: a signature holds an OSM",
    FormatError,
    "bundle: not a signature (it holds a DSSE envelope, not an OSM)",
)
def attestation_offered_as_signature(w: World) -> tuple[Run, Run]:
    return signed(w.signature), signed(w.attestation)


@attack(
    REPLAY,
    "offers a valid signature bundle where an attestation is required",
    "bundle kind: an attestation holds a DSSE envelope",
    FormatError,
    "bundle: not an attestation (it holds an OSM, not a DSSE envelope)",
)
def signature_offered_as_attestation(w: World) -> tuple[Run, Run]:
    return attested(w.attestation), attested(w.signature)


# --- the DSSE envelope (the attestation's content) -----------------------------------------------

DSSE = "DSSE envelope (attestation)"
DSSE_SIG_CHECK: Final = "DSSE signature by `upk` over the PAE (`verify_envelope`)"
DSSE_FAILS: Final = "attestation DSSE envelope: no signature verifies with the signer's key (upk)"


def _attestation_with(w: World, content: Mapping[str, Any]) -> dict[str, Any]:
    return attestation_bundle(w.pk, content)


@attack(
    DSSE,
    'changes `payloadType` to "application/json", re-signed by the user key',
    "`payloadType` is in-toto",
    PayloadMismatchError,
    "DSSE payloadType is 'application/json', not 'application/vnd.in-toto+json'",
)
def dsse_payload_type_changed(w: World) -> tuple[Run, Run]:
    return on_attestation(
        w, _attestation_with(w, envelope(w.user, payload_type="application/json"))
    )


@attack(
    DSSE,
    "rewrites the statement's subject to another image (signature kept)",
    DSSE_SIG_CHECK,
    SignatureError,
    DSSE_FAILS,
)
def dsse_payload_changed(w: World) -> tuple[Run, Run]:
    content = copy.deepcopy(w.attestation["dsseEnvelope"])
    content["payload"] = std64(statement(digest=OTHER_DIGEST))
    control, attack_run = on_attestation(w, _attestation_with(w, content))
    return control, replace(attack_run, digest=OTHER_DIGEST)


@attack(DSSE, "flips one bit of the DSSE signature", DSSE_SIG_CHECK, SignatureError, DSSE_FAILS)
def dsse_signature_bit_flip(w: World) -> tuple[Run, Run]:
    content = copy.deepcopy(w.attestation["dsseEnvelope"])
    sig = base64.b64decode(content["signatures"][0]["sig"])
    content["signatures"][0]["sig"] = std64(flip(sig, len(sig) - 1))
    return on_attestation(w, _attestation_with(w, content))


@attack(
    DSSE,
    "a signature by the user key over the bare payload instead of the PAE",
    DSSE_SIG_CHECK,
    SignatureError,
    DSSE_FAILS,
)
def dsse_signature_over_payload_not_pae(w: World) -> tuple[Run, Run]:
    content = copy.deepcopy(w.attestation["dsseEnvelope"])
    content["signatures"][0]["sig"] = std64(der_sign(w.user, statement()))
    return on_attestation(w, _attestation_with(w, content))


@attack(
    DSSE,
    "changes the subject and adds a valid signature of their own beside the now-invalid one",
    "DSSE: only a signature by `upk` counts",
    SignatureError,
    DSSE_FAILS,
)
def dsse_attacker_signature_added(w: World) -> tuple[Run, Run]:
    payload = statement(digest=OTHER_DIGEST)
    content = copy.deepcopy(w.attestation["dsseEnvelope"])
    content["payload"] = std64(payload)
    mine = der_sign(w.attacker, pae(INTOTO_PAYLOAD_TYPE, payload))
    content["signatures"].append({"keyid": w.token.pkt.hash(), "sig": std64(mine)})
    control, attack_run = on_attestation(w, _attestation_with(w, content))
    return control, replace(attack_run, digest=OTHER_DIGEST)


@attack(
    DSSE,
    "replaces the envelope's signature with their own over the same statement",
    DSSE_SIG_CHECK,
    SignatureError,
    DSSE_FAILS,
)
def dsse_signed_by_attacker_only(w: World) -> tuple[Run, Run]:
    return on_attestation(w, _attestation_with(w, envelope(w.attacker, keyid=w.token.pkt.hash())))


@attack(
    DSSE,
    "removes every signature",
    "DSSE shape: 1 to 16 signatures",
    FormatError,
    "DSSE envelope: needs 1 to 16 signatures, has 0",
)
def dsse_no_signatures(w: World) -> tuple[Run, Run]:
    content = copy.deepcopy(w.attestation["dsseEnvelope"])
    content["signatures"] = []
    return on_attestation(w, _attestation_with(w, content))


@attack(
    DSSE,
    "floods the envelope with 17 signatures (verification work)",
    "DSSE shape: 1 to 16 signatures",
    FormatError,
    "DSSE envelope: needs 1 to 16 signatures, has 17",
)
def dsse_signature_flood(w: World) -> tuple[Run, Run]:
    content = copy.deepcopy(w.attestation["dsseEnvelope"])
    content["signatures"] = content["signatures"] * 17
    return on_attestation(w, _attestation_with(w, content))


@attack(
    DSSE,
    "re-encodes the payload's base64 with non-zero padding bits (same bytes, other text)",
    "strict base64",
    FormatError,
    "DSSE envelope: payload is non-canonical base64",
)
def dsse_payload_noncanonical_base64(w: World) -> tuple[Run, Run]:
    content = envelope(w.user, padded_json(statement()))
    valid = _attestation_with(w, content)
    content["payload"] = noncanonical(content["payload"], STD_ALPHABET)
    return attested(valid), attested(_attestation_with(w, content))


@attack(
    DSSE,
    "a statement of another `_type` (in-toto v0.1), validly signed by the user key",
    "in-toto Statement v1 `_type`",
    FormatError,
    "in-toto statement: _type must be 'https://in-toto.io/Statement/v1'",
)
def dsse_statement_type_changed(w: World) -> tuple[Run, Run]:
    doc = json.loads(statement())
    doc["_type"] = "https://in-toto.io/Statement/v0.1"
    content = envelope(w.user, json.dumps(doc).encode())
    return on_attestation(w, _attestation_with(w, content))


@attack(
    DSSE,
    "adds a garbage cosigner (COS) signature to an attestation bundle's PK token",
    "nothing unverified rides along (`verify_pktoken` step 6); DSSE binds no token hash",
    SignatureError,
    "cosigner (COS) signatures are not supported",
)
def attestation_pktoken_cosigner_added(w: World) -> tuple[Run, Run]:
    """A COS signature that nobody verifies, added to an attestation bundle's PK token."""
    pk = copy.deepcopy(w.pk)
    cos = b64encode(go_json({"alg": "ES256", "typ": "COS"}))
    pk["signatures"].append({"protected": cos, "signature": b64encode(bytes(64))})
    return on_attestation(w, attestation_bundle(pk, w.attestation["dsseEnvelope"]))


@attack(
    DSSE,
    "adds an unprotected `header` (`alg: none`) to the OP signature of an attestation's PK token",
    "nothing unverified rides along (`verify_pktoken` step 6)",
    SignatureError,
    "unprotected JWS headers are not accepted",
)
def attestation_pktoken_unprotected_header_added(w: World) -> tuple[Run, Run]:
    """An unprotected ``header`` (``alg: none``) added to the OP signature of an attestation
    bundle's PK token."""
    pk = copy.deepcopy(w.pk)
    op = pk["signatures"][0]
    pk["signatures"][0] = {
        "protected": op["protected"],
        "header": {"alg": "none", "kid": "attacker"},
        "signature": op["signature"],
    }
    return on_attestation(w, attestation_bundle(pk, w.attestation["dsseEnvelope"]))


# --- the bundle document -------------------------------------------------------------------------

BUNDLE = "bundle"


def _bundle_case(name: str, what: str, fragment: str, check: str, change: Any) -> None:
    def build(w: World) -> tuple[Run, Run]:
        tampered = change(copy.deepcopy(w.signature), w)
        return signed(w.signature), Run(tampered if isinstance(tampered, bytes) else dump(tampered))

    attack(BUNDLE, what, check, FormatError, fragment, name=name)(build)


def _set(key: str, value: Any) -> Callable[[dict[str, Any], World], dict[str, Any]]:
    def change(doc: dict[str, Any], w: World) -> dict[str, Any]:
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
        return doc

    return change


_bundle_case(
    "bundle_wrong_media_type",
    "declares another bundle media type (e.g. a sigstore bundle)",
    "bundle: mediaType must be 'application/vnd.dev.opk-sign.bundle.v1+json'",
    "bundle `mediaType`",
    _set("mediaType", "application/vnd.dev.sigstore.bundle.v0.3+json"),
)
_bundle_case(
    "bundle_pktoken_missing",
    "drops the PK token (hoping the OSM alone is trusted)",
    "bundle: pkToken must be a JSON object",
    "bundle `pkToken` present",
    _set("pkToken", None),
)
_bundle_case(
    "bundle_osm_and_dsse_both",
    "carries both an OSM and a DSSE envelope",
    "bundle: needs exactly one content, osm or dsseEnvelope",
    "bundle: exactly one content",
    lambda doc, w: doc | {"dsseEnvelope": w.attestation["dsseEnvelope"]},
)
_bundle_case(
    "bundle_no_content",
    "carries neither an OSM nor a DSSE envelope",
    "bundle: needs exactly one content, osm or dsseEnvelope",
    "bundle: exactly one content",
    _set("osm", None),
)
_bundle_case(
    "bundle_timestamp_noncanonical_base64",
    "a timestamp whose base64 has non-zero padding bits",
    "bundle timestamp: rfc3161 is non-canonical base64",
    "strict base64 of timestamps",
    _set("timestamps", [{"rfc3161": "MB=="}]),
)
_bundle_case(
    "bundle_timestamp_flood",
    "17 timestamps",
    "bundle: more than 16 timestamps",
    "bundle limits",
    _set("timestamps", [{"rfc3161": "MAA="}] * 17),
)
_bundle_case(
    "bundle_oversize",
    "pads the bundle past 1 MiB with an unknown member",
    "bundle: larger than 1048576 bytes",
    "bundle size limit (1 MiB)",
    _set("padding", "x" * (1 << 20)),
)
_bundle_case(
    "bundle_duplicate_member",
    "two `osm` members: verifiers that keep the first and ones that keep the last disagree",
    "bundle: duplicate JSON member 'osm'",
    "strict JSON (no duplicate members)",
    lambda doc, w: dump(doc)[:-1] + b',"osm":' + json.dumps(osm(w.pk, w.attacker)).encode() + b"}",
)
_bundle_case(
    "bundle_pktoken_unknown_member",
    "smuggles an extra member into the PK token JSON",
    "PK token: unexpected members ['kid']",
    "PK token shape (no unknown members)",
    lambda doc, w: doc | {"pkToken": doc["pkToken"] | {"kid": "x"}},
)
_bundle_case(
    "bundle_pktoken_as_compact_string",
    "gives the PK token as a compact string instead of JWS JSON",
    "bundle: pkToken must be a JSON object",
    "bundle `pkToken` is JWS JSON",
    lambda doc, w: doc | {"pkToken": w.token.pkt.to_compact()},
)


# --- identity policy: one claim differs ----------------------------------------------------------

POLICY_GROUP = "identity policy"

#: The signer every policy case starts from, and the value each claim takes in the attack.
BASE_CLAIMS: Final[dict[str, Any]] = {"environment": "production", "event_name": "push"}
TAMPERED_VALUES: Final[dict[str, str]] = {
    "iss": GHES_ISSUER,
    "repository": "octo-org/octo-repo-fork",
    "repository_id": "100000001",
    "repository_owner": "evil-org",
    "repository_owner_id": "10000001",
    "job_workflow_ref": "octo-org/octo-repo/.github/workflows/evil.yml@refs/tags/v1",
    "workflow_ref": "octo-org/octo-repo/.github/workflows/evil.yml@refs/tags/v1",
    "ref": "refs/heads/evil",
    "ref_type": "branch",
    "sha": "e" * 40,
    "event_name": "pull_request_target",
    "runner_environment": "self-hosted",
    "environment": "staging",
}
assert set(TAMPERED_VALUES) == set(FIELDS.values())


@functools.cache
def policy_signer() -> Token:
    return issue(**BASE_CLAIMS)


def full_policy() -> IdentityPolicy:
    """A policy pinning every field of policy.FIELDS to the policy signer's claims."""
    claims = policy_signer().claims
    return policy_from_fields({name: claims[claim] for name, claim in FIELDS.items()})


def _token_bundle(token: Token) -> dict[str, Any]:
    return signature_bundle(token.pk, osm(token.pk, token.user_key))


def _policy_case(name: str, claim: str) -> None:
    value = TAMPERED_VALUES[claim]

    def build(w: World) -> tuple[Run, Run]:
        base = policy_signer()
        if claim == "iss":
            token = issue(issuer=value, **BASE_CLAIMS)
        else:
            token = issue(raw_claims={claim: value}, **BASE_CLAIMS)
        assert {k for k in token.claims if token.claims[k] != base.claims[k]} <= {
            claim,
            "jti",
            "aud",
            "run_id",
            "run_number",
            "check_run_id",
        }
        settings = _two_issuers() | {"policy": full_policy()}
        return signed(_token_bundle(base), **settings), signed(_token_bundle(token), **settings)

    attack(
        POLICY_GROUP,
        f"a valid signature whose `{claim}` claim is {value!r}",
        f"policy field `{name}` (`ClaimPolicy`, runs last)",
        PolicyError,
        f"claim {claim!r} is {value!r}; the policy requires",
        EXIT_POLICY_MISMATCH,
        name=f"policy_{name.replace('-', '_')}_mismatch",
    )(build)


for _name, _claim in FIELDS.items():
    _policy_case(_name, _claim)


@attack(
    POLICY_GROUP,
    "a valid signature from a job without the `environment` the policy requires",
    "policy field `environment` (missing claim)",
    PolicyError,
    "claim 'environment' is missing; the policy requires 'production'",
    EXIT_POLICY_MISMATCH,
)
def policy_environment_missing(w: World) -> tuple[Run, Run]:
    token = issue(**{**BASE_CLAIMS, "environment": None})
    settings = {
        "policy": policy_from_fields({"repository": REPOSITORY, "environment": "production"})
    }
    return signed(_token_bundle(policy_signer()), **settings), signed(
        _token_bundle(token), **settings
    )


def _regex_case(name: str, pattern: str, good: str, evil: str, what: str) -> None:
    def build(w: World) -> tuple[Run, Run]:
        settings = {"policy": policy_from_fields({"repository-regex": pattern})}
        control = issue(raw_claims={"repository": good})
        tampered = issue(raw_claims={"repository": evil})
        return signed(_token_bundle(control), **settings), signed(
            _token_bundle(tampered), **settings
        )

    attack(
        POLICY_GROUP,
        what,
        "`-regex` fields match the whole claim (`re.fullmatch`)",
        PolicyError,
        f"claim 'repository' is {evil!r}; the policy requires a match of /{pattern}/",
        EXIT_POLICY_MISMATCH,
        name=name,
    )(build)


_regex_case(
    "regex_not_anchored_at_end",
    "octo-org/app",
    "octo-org/app",
    "octo-org/app-evil",
    "`--repository-regex octo-org/app` against the repository `octo-org/app-evil`",
)
_regex_case(
    "regex_not_anchored_at_start",
    "octo-org/app",
    "octo-org/app",
    "evil/octo-org/app",
    "`--repository-regex octo-org/app` against the repository `evil/octo-org/app`",
)
_regex_case(
    "regex_trailing_newline",
    "octo-org/app",
    "octo-org/app",
    "octo-org/app\n",
    "`--repository-regex octo-org/app` against `octo-org/app` + newline (`$` would match it)",
)
_regex_case(
    "regex_alternation_anchored_as_a_whole",
    "octo-org/app|octo-org/lib",
    "octo-org/lib",
    "octo-org/app-evil",
    "`octo-org/app|octo-org/lib` against `octo-org/app-evil` (`^a|b$` anchors one branch each)",
)


# --- the tests -----------------------------------------------------------------------------------

IDS: Final = [c.name for c in CATALOGUE]


@functools.cache
def runs(name: str) -> tuple[Run, Run]:
    """A case's control and attack, built once per process (minting costs ~10 ms a token)."""
    (case,) = (c for c in CATALOGUE if c.name == name)
    return case.build(world())


@pytest.mark.parametrize("case", CATALOGUE, ids=IDS)
def test_attack_is_refused(case: Attack) -> None:
    control, tampered = runs(case.name)
    assert control != tampered, "the attack must change something"
    with pytest.raises(OpkSignError) as info:
        tampered()
    err = info.value
    assert type(err) is case.error, f"{type(err).__name__}: {err}"
    assert case.fragment in err.message, err.message
    assert err.exit_code == case.exit_code


@pytest.mark.parametrize("case", CATALOGUE, ids=IDS)
def test_control_passes(case: Attack) -> None:
    """The same verifier settings accept the untampered original: the catalogue can fail."""
    control, _ = runs(case.name)
    control()


def test_catalogue_size_and_distinct_names() -> None:
    assert len(CATALOGUE) >= 30
    assert len(set(IDS)) == len(IDS)
    assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in IDS)


def test_every_policy_field_has_a_case() -> None:
    for name in FIELDS:
        assert f"policy_{name.replace('-', '_')}_mismatch" in IDS


def test_docs_table_every_case() -> None:
    """docs/attacks.md names every case, with its error class and exit code."""
    text = DOCS.read_text(encoding="utf-8")
    assert f"{len(CATALOGUE)} cases on the pure verifier" in text
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|.*$", text, re.M)}
    for case in CATALOGUE:
        assert case.name in rows, f"docs/attacks.md lacks {case.name}"
        assert f"`{case.error.__name__}`" in rows[case.name], case.name
        assert f"| {case.exit_code} |" in rows[case.name], case.name
