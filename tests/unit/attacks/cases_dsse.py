"""Attack cases: The DSSE envelope (an attestation's content) and the bundle document."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Final

from opk_sign.errors import FormatError, PayloadMismatchError, SignatureError
from opk_sign.jose import b64encode, go_json
from opk_sign.payloads import INTOTO_PAYLOAD_TYPE, pae
from tests.unit.attacks.world import (
    OTHER_DIGEST,
    STD_ALPHABET,
    Run,
    World,
    attack,
    attestation_bundle,
    attested,
    der_sign,
    dump,
    envelope,
    flip,
    noncanonical,
    on_attestation,
    osm,
    padded_json,
    signed,
    statement,
    std64,
)

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
