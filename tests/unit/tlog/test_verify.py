"""A bundle's transparency log entry verified offline (opk_sign.tlog.verify), pure: a log built
in memory (tests/unit/tlog/fakelog.py), and each field of the entry, of its body, of its
certificate and of its checkpoint tampered in turn."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from opk_sign.bundle import Bundle
from opk_sign.errors import FormatError, TransparencyError, UsageError
from opk_sign.sign.signer import Signer as BundleSigner
from opk_sign.tlog.cert import SignedSubject, build_certificate, parse_certificate
from opk_sign.tlog.checkpoint import TlogTrust
from opk_sign.tlog.entry import LogEntry
from opk_sign.tlog.hashedrekord import (
    LoggedEntry,
    canonical_body,
    raw_to_der,
    request_body,
    signed_digest,
)
from opk_sign.tlog.note import SIG_COSIGNATURE_V1
from opk_sign.tlog.verify import verify_tlog
from tests.helpers import mint
from tests.unit.tlog.fakelog import FakeLog, Signer

REPO = "ghcr.io/octo-org/app"
DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def _signer() -> BundleSigner:
    minted = mint(repository="octo-org/app")
    return BundleSigner(minted.user_key, minted.pkt, minted.pkt.claims())


def _certificate(signer: BundleSigner, digest: str = DIGEST, kind: str = "signature") -> bytes:
    key = signer.user_key.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    subject = SignedSubject(f"{REPO}@{digest}", kind)
    return build_certificate(signer.pk_token, key, signer.claims, subject=subject)


def _logged(log: FakeLog, bundle: Bundle, certificate: bytes) -> Bundle:
    entry = log.add(canonical_body(signed_digest(bundle), certificate))
    return replace(bundle, tlog_entries=(entry,))


SIGNER = _signer()
LOG = FakeLog(witnesses=[Signer.new("w.example", SIG_COSIGNATURE_V1)])
for i in range(5):  # other entries before ours, so that proofs have hashes
    LOG.add(f"someone else's entry {i}".encode())
SIGNATURE = _logged(LOG, SIGNER.signature(REPO, DIGEST), _certificate(SIGNER))
ATTESTATION = _logged(
    LOG,
    SIGNER.attestation(REPO, DIGEST, "https://example.com/p", {"a": 1}),
    _certificate(SIGNER, kind="https://example.com/p"),
)
TRUST = TlogTrust((LOG.signer.key,), (LOG.witnesses[0].key,), 1)


def _entry(bundle: Bundle) -> dict[str, Any]:
    return copy.deepcopy(dict(bundle.tlog_entries[0]))


def _with(bundle: Bundle, entry: dict[str, Any]) -> Bundle:
    return replace(bundle, tlog_entries=(entry,))


def _b64_flip(text: str, at: int = 0) -> str:
    data = bytearray(base64.b64decode(text))
    data[at] ^= 1
    return base64.b64encode(bytes(data)).decode()


def test_both_kinds_verify_and_round_trip_through_the_bundle_json() -> None:
    for bundle in (SIGNATURE, ATTESTATION):
        (verified,) = verify_tlog(bundle, TRUST, required=True, digest=DIGEST)
        assert verified.origin == "fake.test" and verified.cosigners == {"w.example": 1_790_000_000}
        again = Bundle.from_json(bundle.to_json())
        assert verify_tlog(again, TRUST, required=True)


def test_the_signed_digest_is_what_each_bundle_signs() -> None:
    assert SIGNATURE.osm is not None
    signing_input = SIGNATURE.osm.rsplit(".", 1)[0].encode()
    logged = signed_digest(SIGNATURE)
    assert logged.digest == hashlib.sha256(signing_input).digest()
    public = SIGNER.user_key.private_key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    public.verify(logged.signature, logged.digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    dsse = signed_digest(ATTESTATION)
    assert ATTESTATION.dsse_envelope is not None
    assert dsse.digest == hashlib.sha256(ATTESTATION.dsse_envelope.pae).digest()
    public.verify(dsse.signature, dsse.digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    with pytest.raises(FormatError, match="64"):
        raw_to_der(b"\x01" * 63)


def test_the_request_and_the_body_say_the_same() -> None:
    certificate = _certificate(SIGNER)
    request = request_body(signed_digest(SIGNATURE), certificate)["hashedRekordRequestV002"]
    body = json.loads(canonical_body(signed_digest(SIGNATURE), certificate))
    spec = body["spec"]["hashedRekordV002"]
    assert request["digest"] == spec["data"]["digest"]
    assert request["signature"] == spec["signature"]


# --- each field tampered ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (("logIndex",), "differs from the proof"),
        (("inclusionProof", "logIndex"), "differs from the proof"),
        (("inclusionProof", "treeSize"), "tree of"),
        (("inclusionProof", "rootHash"), "another root"),
        (("inclusionProof", "hashes", 0), "does not lead to the checkpoint's root"),
        (("inclusionProof", "hashes", -1), "does not lead to the checkpoint's root"),
        (("canonicalizedBody",), "entry|body|certificate|JSON|UTF"),
        (("kindVersion", "kind"), "kindVersion"),
        (("kindVersion", "version"), "kindVersion"),
    ],
)
def test_a_tampered_entry_field_is_refused(path: tuple[Any, ...], error: str) -> None:
    entry = _entry(SIGNATURE)
    *parents, last = path
    holder: Any = entry
    for key in parents:
        holder = holder[key]
    value = holder[last]
    if last in ("logIndex", "treeSize"):
        holder[last] = str(int(value) + 1)
    elif last in ("kind", "version"):
        holder[last] = value + "x"
    else:
        holder[last] = _b64_flip(value, at=len(base64.b64decode(value)) // 2)
    with pytest.raises(TransparencyError, match=error):
        verify_tlog(_with(SIGNATURE, entry), TRUST)


def test_a_tampered_checkpoint_is_refused() -> None:
    entry = _entry(SIGNATURE)
    envelope = entry["inclusionProof"]["checkpoint"]["envelope"]
    origin, size, root, *rest = envelope.split("\n")
    for lines in (["evil.test", size, root], [origin, str(int(size) + 1), root]):
        entry["inclusionProof"]["checkpoint"]["envelope"] = "\n".join([*lines, *rest])
        with pytest.raises(TransparencyError):
            verify_tlog(_with(SIGNATURE, entry), TRUST)
    # Signature lines removed: the log's, then the witness's.
    log_line, witness_line = rest[1], rest[2]
    entry["inclusionProof"]["checkpoint"]["envelope"] = envelope.replace(log_line + "\n", "")
    with pytest.raises(TransparencyError, match="not signed by a trusted key"):
        verify_tlog(_with(SIGNATURE, entry), TRUST)
    entry["inclusionProof"]["checkpoint"]["envelope"] = envelope.replace(witness_line + "\n", "")
    with pytest.raises(TransparencyError, match="quorum is 1"):
        verify_tlog(_with(SIGNATURE, entry), TRUST)


def test_a_valid_entry_of_another_bundle_is_refused() -> None:
    # The attestation's entry on the signature, and the reverse: valid proofs, other bodies.
    with pytest.raises(TransparencyError, match="body differs"):
        verify_tlog(_with(SIGNATURE, _entry(ATTESTATION)), TRUST)
    with pytest.raises(TransparencyError, match="body differs"):
        verify_tlog(_with(ATTESTATION, _entry(SIGNATURE)), TRUST)
    # Another signer's entry, logged honestly in the same log.
    other = _signer()
    theirs = _logged(LOG, other.signature(REPO, DIGEST), _certificate(other))
    with pytest.raises(TransparencyError, match="another PK token"):
        verify_tlog(_with(SIGNATURE, _entry(theirs)), TlogTrust((LOG.signer.key,)))


def test_a_certificate_naming_another_manifest_is_refused() -> None:
    bundle = _logged(LOG, SIGNER.signature(REPO, DIGEST), _certificate(SIGNER, digest=OTHER))
    with pytest.raises(TransparencyError, match="says it signs"):
        verify_tlog(bundle, TRUST, digest=DIGEST)


def test_a_certificate_not_of_the_signing_key_is_refused() -> None:
    other = _signer()
    key = other.user_key.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    with pytest.raises(FormatError, match="does not commit"):
        build_certificate(SIGNER.pk_token, key, SIGNER.claims)
    # Made by hand anyway (this PK token in a certificate of another key): refused on parsing.
    forged = _raw_certificate(SIGNER.pk_token.to_json(), key)
    with pytest.raises(TransparencyError, match="not the one its PK token commits to"):
        parse_certificate(forged)
    with pytest.raises(TransparencyError, match="not the one its PK token commits to"):
        verify_tlog(_logged(LOG, SIGNER.signature(REPO, DIGEST), forged), TRUST)
    # Not self-signed: issued under this key's name but signed by another key.
    mine = SIGNER.user_key.private_key
    assert isinstance(mine, ec.EllipticCurvePrivateKey)
    with pytest.raises(TransparencyError, match="not self-signed"):
        parse_certificate(_raw_certificate(SIGNER.pk_token.to_json(), mine, signed_by=key))
    with pytest.raises(TransparencyError, match="no PK token"):
        parse_certificate(_raw_certificate(None, mine))
    with pytest.raises(TransparencyError, match="PK token"):
        parse_certificate(_raw_certificate(b"{}", mine))
    with pytest.raises(TransparencyError, match="no PK token"):
        parse_certificate(b"not DER")


def _raw_certificate(
    ski: bytes | None, key: ec.EllipticCurvePrivateKey, signed_by: Any = None
) -> bytes:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(hours=1))
    )
    if ski is not None:
        builder = builder.add_extension(x509.SubjectKeyIdentifier(ski), False)
    certificate = builder.sign(signed_by or key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.DER)


def test_required_and_missing() -> None:
    bare = replace(SIGNATURE, tlog_entries=())
    with pytest.raises(TransparencyError, match="one is required"):
        verify_tlog(bare, TRUST, required=True)
    assert verify_tlog(bare, TRUST) == ()
    with pytest.raises(UsageError, match="no log key"):
        verify_tlog(SIGNATURE, None, required=True)
    assert verify_tlog(SIGNATURE, None) == ()


def test_the_certificate_carries_the_claims() -> None:
    body = LoggedEntry.parse(base64.b64decode(SIGNATURE.tlog_entries[0]["canonicalizedBody"]))
    certified = parse_certificate(body.certificate)
    claims = SIGNER.claims
    assert certified.fulcio[8] == claims["iss"]
    assert certified.fulcio[9] == f"https://github.com/{claims['job_workflow_ref']}"
    assert certified.fulcio[12] == "https://github.com/octo-org/app"
    assert certified.fulcio[13] == claims["sha"] and certified.fulcio[14] == claims["ref"]
    assert certified.fulcio[22] == "public"
    assert certified.subject == SignedSubject(f"{REPO}@{DIGEST}", "signature")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("inclusionProof"),
        lambda d: d.pop("logId"),
        lambda d: d["inclusionProof"].pop("checkpoint"),
        lambda d: d["inclusionProof"].update(hashes="x"),
        lambda d: d["inclusionProof"].update(treeSize="-1"),
        lambda d: d["inclusionProof"].update(treeSize="99999999999999999999"),
        lambda d: d.update(logIndex=True),
        lambda d: d.update(canonicalizedBody="!!"),
    ],
)
def test_a_malformed_entry_is_a_format_error(mutate: Any) -> None:
    entry = _entry(SIGNATURE)
    mutate(entry)
    with pytest.raises(FormatError):
        LogEntry.from_dict(entry)
    with pytest.raises(TransparencyError):
        verify_tlog(_with(SIGNATURE, entry), TRUST)


def test_logged_bundles_follow_the_bundle_schema() -> None:
    from pathlib import Path

    import jsonschema

    schema = json.loads(
        (Path(__file__).resolve().parents[3] / "docs" / "bundle.schema.json").read_text()
    )
    for bundle in (SIGNATURE, ATTESTATION):
        jsonschema.validate(json.loads(bundle.to_json()), schema)
        # The entry adds about 18 KiB (docs/bundle.md): well under the 1 MiB bundle limit.
        assert len(bundle.to_json()) - len(replace(bundle, tlog_entries=()).to_json()) < 20_000


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.floats(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
_PATHS = [
    ("logIndex",),
    ("logId",),
    ("logId", "keyId"),
    ("kindVersion",),
    ("inclusionProof",),
    ("inclusionProof", "logIndex"),
    ("inclusionProof", "rootHash"),
    ("inclusionProof", "treeSize"),
    ("inclusionProof", "hashes"),
    ("inclusionProof", "checkpoint"),
    ("inclusionProof", "checkpoint", "envelope"),
    ("canonicalizedBody",),
]


@settings(max_examples=200, deadline=None)
@given(path=st.sampled_from(_PATHS), value=_JSON)
def test_any_value_in_any_field_is_refused_cleanly(path: tuple[str, ...], value: Any) -> None:
    entry = _entry(SIGNATURE)
    holder: Any = entry
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    with contextlib.suppress(TransparencyError, FormatError):
        verify_tlog(_with(SIGNATURE, entry), TRUST)
