"""The attack catalogue's world: the keys, tokens and bundles every case starts from, how a
case runs the pure verifier, and the ``@attack`` registry the cases fill (docs/attacks.md)."""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from opk_sign._dev.github_oidc import OPSigningKey, github_claims
from opk_sign.bundle import BUNDLE_MEDIA_TYPE, Bundle
from opk_sign.errors import (
    EXIT_INVALID_SIGNATURE,
    FormatError,
    IssuerError,
    OpkSignError,
)
from opk_sign.jose import b64decode, b64encode, go_json
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
from opk_sign.pktoken.verify import MAX_AGE_24H, select_key
from opk_sign.policy import IdentityPolicy, policy_from_fields
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
DOCS: Final = Path(__file__).resolve().parents[3] / "docs" / "attacks.md"

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
    #: ``--signed-repository``: where the verifier says a copy was signed.
    signed_repositories: tuple[str, ...] = ()

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
            verify_signature_bundle(
                bundle,
                docker_reference=self.reference,
                signed_repositories=self.signed_repositories,
                **common,
            )
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


# --- helpers shared by several parts of the catalogue ---------------------------------------------


def two_issuers() -> dict[str, Any]:
    keys = IssuerKeys(
        {GITHUB_ISSUER: [op_key().public_jwk()], GHES_ISSUER: [op_key().public_jwk()]}
    )
    return {"keys": keys, "issuers": frozenset({GITHUB_ISSUER, GHES_ISSUER})}


def token_bundle(token: Token) -> dict[str, Any]:
    return signature_bundle(token.pk, osm(token.pk, token.user_key))
