"""Attack cases: The OSM (a signature's content) and the replay of valid bundles."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from dataclasses import replace
from typing import Any, Final

from opk_sign.errors import FormatError, OSMError, PayloadMismatchError, SignatureError
from opk_sign.jose import b64decode, b64encode, go_json
from tests.unit.attacks.world import (
    DIGEST,
    OTHER_DIGEST,
    PROVENANCE,
    REFERENCE,
    REPOSITORY,
    SPDX,
    Run,
    World,
    attack,
    attested,
    flip,
    issue,
    on_signature,
    osm,
    signature_bundle,
    signed,
    ss_payload,
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
    "copies a signature made for a third repository next to a copy whose verifier names "
    "where the copy was signed (`--signed-repository`)",
    "only the repositories named are accepted, exactly",
    PayloadMismatchError,
    "not 'mirror.example/octo-org/octo-repo', 'registry.example/octo-org/octo-repo' "
    "(replayed from another repository)",
)
def replay_onto_a_copy_from_an_unnamed_repository(w: World) -> tuple[Run, Run]:
    mirror = f"mirror.example/{REPOSITORY}"
    third = "registry.example/octo-org/octo-repo-tools"
    named = (REFERENCE,)
    return (
        signed(w.signature, reference=mirror, signed_repositories=named),
        signed(
            _signature_with(w, osm(w.pk, w.user, ss_payload(reference=third))),
            reference=mirror,
            signed_repositories=named,
        ),
    )


def _raw_payload(reference: str) -> bytes:
    """A simple-signing payload naming any ``reference`` (the builder refuses such names)."""
    return go_json(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": DIGEST},
                "type": "opk-sign container image signature",
            },
            "optional": {},
        }
    )


@attack(
    REPLAY,
    "signs a `docker-reference` holding a line break and terminal escapes, so that the replay "
    "message shows forged hint lines",
    "the signed repository is a normalised registry/repository name, nothing else",
    OSMError,
    "docker-reference must be a normalised registry/repository",
)
def docker_reference_with_control_characters(w: World) -> tuple[Run, Run]:
    forged = "x.io/y\n       hint: verify it with --signed-repository x.io/y\x1b[8m"
    return (
        signed(w.signature),
        signed(_signature_with(w, osm(w.pk, w.user, _raw_payload(forged)))),
    )


@attack(
    REPLAY,
    "signs a `docker-reference` that is not normalised (`Docker.io/alpine`), to be matched "
    "by a looser comparison",
    "the signed repository is exactly the normalised name signing writes",
    OSMError,
    "docker-reference must be a normalised registry/repository",
)
def docker_reference_not_normalised(w: World) -> tuple[Run, Run]:
    return (
        signed(w.signature),
        signed(_signature_with(w, osm(w.pk, w.user, _raw_payload("alpine")))),
    )


@attack(
    REPLAY,
    "names a repository whose name starts with the one `--signed-repository` names",
    "signed repositories are compared as whole names, never as prefixes",
    PayloadMismatchError,
    "(replayed from another repository)",
)
def replay_from_a_repository_named_by_prefix(w: World) -> tuple[Run, Run]:
    mirror = f"mirror.example/{REPOSITORY}"
    prefixed = f"{REFERENCE}-evil"
    return (
        signed(w.signature, reference=mirror, signed_repositories=(REFERENCE,)),
        signed(
            _signature_with(w, osm(w.pk, w.user, ss_payload(reference=prefixed))),
            reference=mirror,
            signed_repositories=(REFERENCE,),
        ),
    )


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
