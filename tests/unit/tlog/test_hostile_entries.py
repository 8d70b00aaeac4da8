"""Hostile certificates in log entries (red team F2): anyone can log a hashedrekord entry whose
self-signed certificate carries anything. Neither `verify` nor `log monitor` may crash on one:
verify refuses it (12), the monitor reports it as junk, goes on and saves its state; and the
monitor reports nothing before the entries it read add up to the signed checkpoint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from opk_sign.bundle import Bundle
from opk_sign.errors import TransparencyError
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS
from opk_sign.sign.signer import Signer as BundleSigner
from opk_sign.tlog import monitor as monitor_module
from opk_sign.tlog import verify as verify_module
from opk_sign.tlog.cert import DESCRIPTION_OID, SignedSubject, build_certificate, parse_certificate
from opk_sign.tlog.checkpoint import TlogTrust
from opk_sign.tlog.hashedrekord import SignedDigest, canonical_body, signed_digest
from opk_sign.tlog.monitor import Identity, MonitorState, run_monitor
from opk_sign.tlog.verify import verify_tlog
from tests.helpers import mint, op_key
from tests.unit.tlog.fakelog import FakeLog

REPO = "ghcr.io/octo-org/app"
DIGEST = "sha256:" + "ab" * 32
WORKFLOW = "octo-org/app/.github/workflows/release.yml"


def _signer(repository: str = "octo-org/app") -> BundleSigner:
    minted = mint(repository=repository)
    return BundleSigner(minted.user_key, minted.pkt, minted.pkt.claims())


def _private(signer: BundleSigner) -> ec.EllipticCurvePrivateKey:
    key = signer.user_key.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _hostile_certificate(signer: BundleSigner, description: str) -> bytes:
    """Self-signed by the signer's key, its PK token in the SKI, ``description`` as given."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "x"),
            x509.NameAttribute(DESCRIPTION_OID, description),
        ]
    )
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_private(signer).public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier(signer.pk_token.to_json()), False)
        .sign(_private(signer), hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def _der(tag: int, content: bytes) -> bytes:
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    length = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def _invalid_utf8_subject(signer: BundleSigner) -> bytes:
    """The description's UTF8String holding invalid UTF-8, and the certificate properly
    self-signed again (cryptography parses the subject only when asked)."""
    good = x509.load_der_x509_certificate(_hostile_certificate(signer, "ZZZZ"))
    tbs = good.tbs_certificate_bytes.replace(b"ZZZZ", b"\xff\xfe\xfd\xfc")
    signature = _private(signer).sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _der(0x30, tbs + _ECDSA_WITH_SHA256 + _der(0x03, b"\x00" + signature))


SIGNER = _signer()
DEEP = "[" * 3000


# --- the certificate parser ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "description",
    [
        DEEP,  # RecursionError from json.loads, before the fix
        "{" * 2000,
        "9" * 9999,  # past the integer digit limit
        '{"subject": "a@b", "kind": "x", "n": NaN}',
        json.dumps({"subject": "a@" + "b" * 5000, "kind": "x"}),  # over the size limit
    ],
    ids=["deep-array", "deep-object", "huge-integer", "nan", "oversize"],
)
def test_a_description_that_is_no_subject_is_ignored(description: str) -> None:
    certified = parse_certificate(_hostile_certificate(SIGNER, description))
    assert certified.subject is None
    assert certified.pk_token.to_json() == SIGNER.pk_token.to_json()
    assert SignedSubject.from_json(description) is None


def test_a_subject_name_that_does_not_parse_is_refused() -> None:
    der = _invalid_utf8_subject(SIGNER)
    x509.load_der_x509_certificate(der).verify_directly_issued_by(
        x509.load_der_x509_certificate(der)
    )  # a valid self-signature: what fails is the subject only
    with pytest.raises(TransparencyError, match="subject or extensions do not parse"):
        parse_certificate(der)


# --- verify: exit 12, never a traceback ----------------------------------------------------------

LOG = FakeLog()
LOG.add(b"someone else's entry")
TRUST = TlogTrust((LOG.signer.key,))


def _logged(bundle: Bundle, certificate: bytes) -> Bundle:
    entry = LOG.add(canonical_body(signed_digest(bundle), certificate))
    return replace(bundle, tlog_entries=(entry,))


def test_verify_refuses_an_entry_whose_certificate_subject_does_not_parse() -> None:
    bundle = _logged(SIGNER.signature(REPO, DIGEST), _invalid_utf8_subject(SIGNER))
    with pytest.raises(TransparencyError, match="subject or extensions do not parse"):
        verify_tlog(bundle, TRUST, required=True, digest=DIGEST)


def test_verify_takes_a_deep_description_as_none() -> None:
    # The bundle's own signer logged it: the description says nothing, the rest holds.
    bundle = _logged(SIGNER.signature(REPO, DIGEST), _hostile_certificate(SIGNER, DEEP))
    (verified,) = verify_tlog(bundle, TRUST, required=True, digest=DIGEST)
    assert verified.origin == LOG.origin


def test_verify_maps_any_certificate_parser_failure_to_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = _logged(SIGNER.signature(REPO, DIGEST), _hostile_certificate(SIGNER, "{}"))

    def broken(der: bytes) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(verify_module, "parse_certificate", broken)
    with pytest.raises(TransparencyError, match=r"does not parse \(RecursionError\)"):
        verify_tlog(bundle, TRUST, required=True)


# --- the monitor ---------------------------------------------------------------------------------


@dataclass
class Reader:
    """The monitor's view of a log (what TilesReader gives), from a FakeLog; ``bodies`` may
    differ from what the log signed (another view)."""

    log: FakeLog
    bodies: list[bytes]

    def checkpoint(self) -> str:
        return self.log.checkpoint()

    def entries(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        for index in range(start, end):
            yield index, self.bodies[index]

    def tree_edge(self, size: int) -> Any:
        raise NotImplementedError


def _genuine_body(signer: BundleSigner) -> bytes:
    bundle = signer.signature(REPO, DIGEST)
    subject = SignedSubject(f"{REPO}@{DIGEST}", "signature")
    certificate = build_certificate(
        signer.pk_token, _private(signer), signer.claims, subject=subject
    )
    return canonical_body(signed_digest(bundle), certificate)


def _hostile_body(signer: BundleSigner, certificate: bytes) -> bytes:
    # Rekor checks only that the signature verifies under the certificate's key: it does.
    digest = hashlib.sha256(b"anything").digest()
    signature = _private(signer).sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    return canonical_body(SignedDigest(digest, signature), certificate)


def _monitor(reader: Reader, state: Path, lines: list[dict[str, Any]]) -> Any:
    return run_monitor(
        reader,  # type: ignore[arg-type]
        TlogTrust((reader.log.signer.key,)),
        state,
        identity=Identity(repository="octo-org/app"),
        keys=StaticJWKS(GITHUB_ISSUER, {"keys": [op_key().public_jwk()]}),
        issuers={GITHUB_ISSUER},
        allowed={WORKFLOW},
        emit=lines.append,
    )


@pytest.mark.parametrize(("repository", "found"), [("someone/else", [2]), ("octo-org/app", [1, 2])])
def test_a_hostile_certificate_does_not_stop_the_monitor(
    tmp_path: Path, repository: str, found: list[int]
) -> None:
    # A deep description, by anyone (not reported) or by the repository watched (a signature
    # naming no image): the monitor reads on, reports the signature after it, saves its state.
    hostile_signer = _signer(repository)
    log = FakeLog()
    log.add(b"someone else's entry")
    log.add(_hostile_body(hostile_signer, _hostile_certificate(hostile_signer, DEEP)))
    log.add(_genuine_body(SIGNER))
    state, lines = tmp_path / "state.json", list[dict[str, Any]]()
    report = _monitor(Reader(log, list(log.bodies)), state, lines)
    assert [line["logIndex"] for line in report.signatures] == found
    assert report.signatures[-1]["image"] == f"{REPO}@{DIGEST}"
    assert report.junk == [] and lines == report.signatures
    loaded = MonitorState.load(state)
    assert loaded is not None and loaded.tree.size == 3


def test_an_entry_that_breaks_a_parser_is_junk_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate = _hostile_certificate(SIGNER, "{}")
    log = FakeLog()
    log.add(_hostile_body(SIGNER, certificate))
    log.add(_genuine_body(SIGNER))
    real = parse_certificate

    def fragile(der: bytes) -> Any:
        if der == certificate:
            raise ValueError("error parsing asn1 value")
        return real(der)

    # Whatever a parser may still raise on someone's entry: the entry is junk, the run goes on.
    monkeypatch.setattr(monitor_module, "parse_certificate", fragile)
    state, lines = tmp_path / "state.json", list[dict[str, Any]]()
    report = _monitor(Reader(log, list(log.bodies)), state, lines)
    assert report.junk == [
        {
            "logIndex": 0,
            "repository": None,
            "junk": True,
            "reason": "malformed: the entry does not parse (ValueError)",
        }
    ]
    assert [line["logIndex"] for line in report.signatures] == [1]
    assert [line["logIndex"] for line in lines] == [0, 1]
    loaded = MonitorState.load(state)
    assert loaded is not None and loaded.tree.size == 2


def test_nothing_is_reported_before_the_entries_add_up_to_the_checkpoint(tmp_path: Path) -> None:
    # The log signed a checkpoint over one tree and serves other entries (a genuine signature
    # among them): the run fails on the checkpoint, and has reported nothing it read.
    log = FakeLog()
    log.add(_genuine_body(SIGNER))
    log.add(b"what the log signed")
    shown = [log.bodies[0], b"what the log shows"]
    state, lines = tmp_path / "state.json", list[dict[str, Any]]()
    with pytest.raises(TransparencyError, match="do not add up"):
        _monitor(Reader(log, shown), state, lines)
    assert lines == []
    assert not state.exists()
