"""The opk-sign bundle: construction checks, dict/JSON round trips, and the published JSON Schema
(docs/bundle.schema.json) agreeing with what the signer produces and what the model refuses."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from opk_sign.bundle import (
    ATTESTATION_ARTIFACT_TYPE,
    BUNDLE_MEDIA_TYPE,
    SIGNATURE_ARTIFACT_TYPE,
    Bundle,
    Timestamp,
)
from opk_sign.errors import FormatError
from opk_sign.pktoken import GITHUB_ISSUER
from opk_sign.sign.signer import Signer
from tests.helpers import Minted, mint

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "bundle.schema.json"
DIGEST = "sha256:" + "ab" * 32
REPO = "ghcr.io/octo-org/app"
#: A syntactically plausible DER SEQUENCE standing in for an RFC 3161 token.
FAKE_TST = b"\x30\x03\x02\x01\x01"


@pytest.fixture(scope="module")
def schema() -> Any:
    document = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    return document


@pytest.fixture(scope="module")
def minted() -> Minted:
    return mint(repository="octo-org/app")


@pytest.fixture(scope="module")
def signer(minted: Minted) -> Signer:
    return Signer(minted.user_key, minted.pkt, minted.pkt.claims())


def produced(signer: Signer) -> list[Bundle]:
    signature = signer.signature(REPO, DIGEST)
    predicate_type, predicate = signer.provenance("https://github.com")
    attestation = signer.attestation(REPO, DIGEST, predicate_type, predicate)
    stamped = Bundle(signature.pk_token, osm=signature.osm, timestamps=(Timestamp(FAKE_TST),))
    return [signature, attestation, stamped]


def test_produced_bundles_validate_against_the_schema(schema: Any, signer: Signer) -> None:
    for bundle in produced(signer):
        doc = json.loads(bundle.to_json())
        jsonschema.validate(doc, schema)
        assert doc["mediaType"] == BUNDLE_MEDIA_TYPE


def test_round_trip_changes_no_byte(signer: Signer) -> None:
    for bundle in produced(signer):
        data = bundle.to_json()
        again = Bundle.from_json(data)
        assert again == bundle
        assert again.to_json() == data
        assert again.pk_token.hash() == bundle.pk_token.hash()


def test_kinds(signer: Signer) -> None:
    signature, attestation, _ = produced(signer)
    assert signature.is_signature and signature.artifact_type == SIGNATURE_ARTIFACT_TYPE
    assert not attestation.is_signature
    assert attestation.artifact_type == ATTESTATION_ARTIFACT_TYPE


def test_unknown_members_are_kept(schema: Any, signer: Signer) -> None:
    doc = json.loads(signer.signature(REPO, DIGEST).to_json())
    doc["x-future"] = {"a": [1, 2]}
    bundle = Bundle.from_dict(doc)
    assert bundle.to_dict()["x-future"] == {"a": [1, 2]}
    jsonschema.validate(doc, schema)


def _mutations(signature: dict[str, Any], attestation: dict[str, Any]) -> list[Any]:
    def changed(base: dict[str, Any], **kw: Any) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for key, value in kw.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        return out

    both = changed(signature, dsseEnvelope=attestation["dsseEnvelope"])
    neither = changed(signature, osm=None)
    wrong_type = changed(signature, mediaType="application/vnd.dev.opk-sign.bundle.v2+json")
    no_token = changed(signature, pkToken=None)
    token_as_string = changed(signature, pkToken=json.dumps(signature["pkToken"]))
    one_signature = copy.deepcopy(signature)
    one_signature["pkToken"]["signatures"] = one_signature["pkToken"]["signatures"][:1]
    padded_payload = copy.deepcopy(signature)
    padded_payload["pkToken"]["payload"] += "="
    osm_two_parts = changed(signature, osm=signature["osm"].rsplit(".", 1)[0])
    bad_timestamp = changed(signature, timestamps=[{"rfc3161": "not base64!"}])
    timestamp_extra = changed(
        signature, timestamps=[{"rfc3161": base64.b64encode(FAKE_TST).decode(), "x": 1}]
    )
    envelope_no_sigs = copy.deepcopy(attestation)
    envelope_no_sigs["dsseEnvelope"]["signatures"] = []
    return [
        both,
        neither,
        wrong_type,
        no_token,
        token_as_string,
        one_signature,
        padded_payload,
        osm_two_parts,
        bad_timestamp,
        timestamp_extra,
        envelope_no_sigs,
    ]


def test_model_and_schema_refuse_the_same_broken_bundles(schema: Any, signer: Signer) -> None:
    signature, attestation, _ = (json.loads(b.to_json()) for b in produced(signer))
    for doc in _mutations(signature, attestation):
        with pytest.raises(FormatError):
            Bundle.from_dict(doc)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)


def test_model_refuses_an_osm_that_is_not_an_osm(signer: Signer) -> None:
    bundle = signer.signature(REPO, DIGEST)
    assert bundle.osm is not None
    _, payload, sig = bundle.osm.split(".")
    jwt_header = base64.urlsafe_b64encode(b'{"alg":"ES256","typ":"JWT"}').decode().rstrip("=")
    with pytest.raises(FormatError, match="typ"):
        Bundle(bundle.pk_token, osm=f"{jwt_header}.{payload}.{sig}")


@pytest.mark.parametrize("der", [b"", b"\x04\x00", b"\x30" + b"\x00" * (64 * 1024 + 1)])
def test_timestamps_must_look_like_der(der: bytes) -> None:
    with pytest.raises(FormatError):
        Timestamp(der)


def test_too_large_is_refused(signer: Signer) -> None:
    with pytest.raises(FormatError):
        Bundle.from_json(b" " * (2 << 20))


def test_issuer_of_minted_signer(signer: Signer) -> None:
    assert signer.issuer == GITHUB_ISSUER
