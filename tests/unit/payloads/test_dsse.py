"""DSSE (PAE, envelopes, P-256 signatures), in-toto Statement v1, SLSA provenance from claims."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opk_sign._dev.github_oidc import github_claims
from opk_sign.errors import FormatError, SignatureError
from opk_sign.payloads import (
    GITHUB_WORKFLOW_BUILD_TYPE,
    INTOTO_PAYLOAD_TYPE,
    STATEMENT_TYPE,
    Envelope,
    EnvelopeSignature,
    Statement,
    Subject,
    github_provenance,
    pae,
    sign_envelope,
    verify_envelope,
)
from opk_sign.payloads.provenance import workflow_path
from opk_sign.pktoken import GITHUB_ISSUER

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# --- PAE ---------------------------------------------------------------------------------------


def test_pae_matches_the_dsse_spec_example() -> None:
    # protocol.md: PAE("http://example.com/HelloWorld", "hello world")
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t\u00e9", b"\xff\x00") == b"DSSEv1 3 t\xc3\xa9 2 \xff\x00"
    assert pae("", b"") == b"DSSEv1 0  0 "


# --- envelopes ---------------------------------------------------------------------------------


def test_sign_verify_round_trip(key: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, b'{"a":1}', key, "kid-hint")
    assert verify_envelope(envelope, key.public_key()) == b'{"a":1}'
    doc = envelope.to_dict()
    assert doc["payloadType"] == INTOTO_PAYLOAD_TYPE
    assert base64.b64decode(doc["payload"]) == b'{"a":1}'
    assert doc["signatures"][0]["keyid"] == "kid-hint"
    # DER, not raw r||s.
    assert base64.b64decode(doc["signatures"][0]["sig"])[0] == 0x30
    again = Envelope.from_dict(json.loads(json.dumps(doc)))
    assert again == envelope
    assert verify_envelope(again, key.public_key()) == b'{"a":1}'


def test_payload_text_is_kept_exactly_as_received(key: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, b"\xfb\xff payload", key)
    doc = envelope.to_dict()
    url_safe = base64.urlsafe_b64encode(envelope.payload).decode().rstrip("=")
    assert url_safe != doc["payload"]
    received = {**doc, "payload": url_safe}
    parsed = Envelope.from_dict(received)
    assert parsed.payload == envelope.payload
    assert parsed.to_dict()["payload"] == url_safe
    verify_envelope(parsed, key.public_key())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(payloadType="application/json"),
        lambda d: d.update(payload=base64.b64encode(b'{"a":2}').decode()),
        lambda d: d["signatures"][0].update(
            sig=base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()
        ),
    ],
    ids=["payload-type", "payload", "signature"],
)
def test_tampering_is_refused(key: ec.EllipticCurvePrivateKey, mutate: Any) -> None:
    doc = sign_envelope(INTOTO_PAYLOAD_TYPE, b'{"a":1}', key).to_dict()
    mutate(doc)
    with pytest.raises(SignatureError):
        verify_envelope(Envelope.from_dict(doc), key.public_key())


def test_another_key_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, b"x", key)
    with pytest.raises(SignatureError):
        verify_envelope(envelope, ec.generate_private_key(ec.SECP256R1()).public_key())


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"payload": "eA==", "payloadType": "t"},
        {"payload": "eA==", "payloadType": "t", "signatures": []},
        {"payload": "eA==", "payloadType": "", "signatures": [{"sig": "eA=="}]},
        {"payload": "e A=", "payloadType": "t", "signatures": [{"sig": "eA=="}]},
        {"payload": "eB==", "payloadType": "t", "signatures": [{"sig": "eA=="}]},  # trailing bits
        {"payload": "eA=", "payloadType": "t", "signatures": [{"sig": "eA=="}]},  # half padding
        {"payload": "eA==", "payloadType": "t", "signatures": [{"sig": ""}]},
        {"payload": "eA==", "payloadType": "t", "signatures": [{"sig": "eA==", "extra": 1}]},
        {"payload": "eA==", "payloadType": "t", "signatures": [{"sig": "eA=="}], "more": 1},
        {"payload": 1, "payloadType": "t", "signatures": [{"sig": "eA=="}]},
    ],
)
def test_malformed_envelopes_are_refused(doc: Any) -> None:
    with pytest.raises(FormatError):
        Envelope.from_dict(doc)


def test_only_p256_signs() -> None:
    with pytest.raises(FormatError):
        sign_envelope("t", b"x", ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(FormatError):
        Envelope("t", b"x", (EnvelopeSignature(b"s"),) * 17)


# --- in-toto ------------------------------------------------------------------------------------


def test_statement_layout_and_round_trip() -> None:
    statement = Statement.build(
        [Subject.for_oci_digest("ghcr.io/o/app", DIGEST)], "https://example.com/p", {"k": "v"}
    )
    doc = json.loads(statement.raw)
    assert doc == {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "ghcr.io/o/app", "digest": {"sha256": "ab" * 32}}],
        "predicateType": "https://example.com/p",
        "predicate": {"k": "v"},
    }
    parsed = Statement.parse(statement.raw)
    assert parsed == statement and parsed.raw == statement.raw
    assert parsed.names_digest(DIGEST)
    assert not parsed.names_digest("sha256:" + "cd" * 32)


@pytest.mark.parametrize(
    "doc",
    [
        {"_type": "https://in-toto.io/Statement/v0.1", "subject": [], "predicateType": "p"},
        {"_type": STATEMENT_TYPE, "subject": [], "predicateType": "p"},
        {"_type": STATEMENT_TYPE, "subject": [{"name": "n"}], "predicateType": "p"},
        {"_type": STATEMENT_TYPE, "subject": [{"name": "n", "digest": {"sha256": "AB"}}]},
        {"_type": STATEMENT_TYPE, "subject": [{"name": "n", "digest": {"sha256": "ab"}}]},
        {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": "n", "digest": {"sha256": "ab" * 32}}],
            "predicateType": "p",
            "predicate": [],
        },
    ],
)
def test_malformed_statements_are_refused(doc: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        Statement.parse(json.dumps(doc).encode())


# --- SLSA provenance ----------------------------------------------------------------------------


def test_provenance_from_reusable_workflow_claims() -> None:
    claims = github_claims(
        "aud",
        issuer=GITHUB_ISSUER,
        repository="octo-org/app",
        ref="refs/tags/v1",
        sha="a" * 40,
        workflow_file=".github/workflows/release.yml",
        job_workflow_ref="opk/opk-sign/.github/workflows/sign.yml@refs/tags/v1",
    )
    predicate = github_provenance(claims)
    assert predicate["runDetails"]["builder"]["id"] == (
        "https://github.com/opk/opk-sign/.github/workflows/sign.yml@refs/tags/v1"
    )
    definition = predicate["buildDefinition"]
    assert definition["buildType"] == GITHUB_WORKFLOW_BUILD_TYPE
    assert definition["externalParameters"]["workflow"] == {
        "ref": "refs/tags/v1",
        "repository": "https://github.com/octo-org/app",
        "path": ".github/workflows/release.yml",
    }
    assert definition["resolvedDependencies"] == [
        {
            "uri": "git+https://github.com/octo-org/app@refs/tags/v1",
            "digest": {"gitCommit": "a" * 40},
        }
    ]
    github = definition["internalParameters"]["github"]
    assert github["repository_id"] == claims["repository_id"]
    assert github["runner_environment"] == "github-hosted"
    invocation = predicate["runDetails"]["metadata"]["invocationId"]
    assert invocation == (
        f"https://github.com/octo-org/app/actions/runs/{claims['run_id']}/attempts/1"
    )


def test_provenance_for_an_enterprise_server() -> None:
    claims = github_claims("aud", issuer=GITHUB_ISSUER, repository="o/r")
    predicate = github_provenance(claims, server_url="https://ghe.example.com/")
    assert predicate["runDetails"]["builder"]["id"].startswith("https://ghe.example.com/o/r/")


@pytest.mark.parametrize("missing", ["job_workflow_ref", "sha", "run_id", "repository"])
def test_provenance_needs_the_github_claims(missing: str) -> None:
    claims = dict(github_claims("aud", issuer=GITHUB_ISSUER))
    del claims[missing]
    with pytest.raises(FormatError, match=missing):
        github_provenance(claims)


@pytest.mark.parametrize(
    "ref", ["o/r/.github/workflows/x.yml", "other/r/.github/workflows/x.yml@refs/heads/m", "o/r@"]
)
def test_workflow_ref_must_belong_to_the_repository(ref: str) -> None:
    with pytest.raises(FormatError):
        workflow_path(ref, "o/r")
