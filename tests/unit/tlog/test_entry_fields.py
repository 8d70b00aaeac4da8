"""The entry fields that were accepted unchecked (red team F13): ``logId`` must name the trusted
log key that signed the checkpoint, and an ``integratedTime`` or ``inclusionPromise`` (which
Rekor v2 never writes; rekor-tiles v2.3.0 sends ``"0"`` and ``null``) makes it a Rekor v1
entry, refused."""

from __future__ import annotations

import base64
import copy
import hashlib
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opk_sign.bundle import Bundle
from opk_sign.errors import FormatError, TransparencyError
from opk_sign.tlog.checkpoint import TlogTrust
from opk_sign.tlog.entry import LogEntry
from opk_sign.tlog.hashedrekord import canonical_body, signed_digest
from opk_sign.tlog.note import SIG_ECDSA, VerifierKey
from opk_sign.tlog.verify import verify_tlog
from tests.unit.tlog.fakelog import FakeLog, Signer
from tests.unit.tlog.test_verify import DIGEST, REPO, SIGNER, _certificate

LOG = FakeLog()
LOG.add(b"someone else's entry")
TRUST = TlogTrust((LOG.signer.key,))


def _bundle() -> Bundle:
    bundle = SIGNER.signature(REPO, DIGEST)
    entry = LOG.add(canonical_body(signed_digest(bundle), _certificate(SIGNER)))
    return replace(bundle, tlog_entries=(entry,))


BUNDLE = _bundle()


def _with(change: dict[str, Any]) -> Bundle:
    entry = copy.deepcopy(dict(BUNDLE.tlog_entries[0]))
    entry.update(change)
    return replace(BUNDLE, tlog_entries=(entry,))


def test_the_log_id_is_the_whole_hash_behind_the_note_key_id() -> None:
    key = LOG.signer.key
    assert key.log_id == hashlib.sha256(b"fake.test\n\x01" + key.key).digest()
    assert key.log_id[:4] == key.key_id
    spki = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    ecdsa = VerifierKey("ecdsa.test", SIG_ECDSA, spki)
    assert ecdsa.log_id == hashlib.sha256(spki).digest() and ecdsa.log_id[:4] == ecdsa.key_id


def test_the_entry_as_rekor_v2_writes_it_verifies() -> None:
    for change in ({}, {"integratedTime": 0}, {"inclusionPromise": None}):
        assert verify_tlog(_with(change), TRUST, required=True)
    entry = copy.deepcopy(dict(BUNDLE.tlog_entries[0]))
    del entry["integratedTime"], entry["inclusionPromise"]  # protobuf JSON may leave zeros out
    assert verify_tlog(replace(BUNDLE, tlog_entries=(entry,)), TRUST, required=True)


@pytest.mark.parametrize(
    "log_id",
    [
        base64.b64encode(bytes(32)).decode(),  # what the fake log wrote before
        "",
        base64.b64encode(LOG.log_id[:4]).decode(),  # the note key ID alone
        base64.b64encode(LOG.log_id[:-1] + bytes([LOG.log_id[-1] ^ 1])).decode(),
        base64.b64encode(FakeLog().log_id).decode(),  # another key, the same name
    ],
    ids=["zeros", "empty", "note-key-id", "one-bit", "other-key"],
)
def test_a_log_id_that_is_not_the_log_keys_is_refused(log_id: str) -> None:
    with pytest.raises(TransparencyError, match="logId .* is not the ID of a trusted key"):
        verify_tlog(_with({"logId": {"keyId": log_id}}), TRUST, required=True)


def test_a_log_id_of_another_trusted_log_is_refused() -> None:
    other = FakeLog(origin="other.test", signer=Signer.new("other.test"))
    trust = TlogTrust((LOG.signer.key, other.signer.key))
    assert verify_tlog(BUNDLE, trust)
    with pytest.raises(TransparencyError, match="logId"):
        verify_tlog(_with({"logId": {"keyId": base64.b64encode(other.log_id).decode()}}), trust)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"integratedTime": "1790000000"}, "integratedTime"),
        ({"integratedTime": 1}, "integratedTime"),
        ({"integratedTime": "-1"}, "integratedTime"),
        ({"inclusionPromise": {"signedEntryTimestamp": "AAAA"}}, "inclusionPromise"),
        ({"inclusionPromise": {}}, "inclusionPromise"),
        ({"inclusionPromise": ""}, "inclusionPromise"),
    ],
)
def test_a_rekor_v1_time_or_promise_is_refused(change: dict[str, Any], error: str) -> None:
    with pytest.raises(FormatError, match=error):
        LogEntry.from_dict({**BUNDLE.tlog_entries[0], **change})
    with pytest.raises(TransparencyError, match=error):
        verify_tlog(_with(change), TRUST, required=True)
