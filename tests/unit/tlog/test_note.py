"""C2SP signed notes and verifier keys: parsing refuses what the spec forbids, and each field of
a key or a signature, tampered, is refused or ignored as the spec says."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opk_sign.errors import FormatError, TransparencyError
from opk_sign.tlog.note import (
    SIG_COSIGNATURE_V1,
    SIG_ECDSA,
    SIG_ED25519,
    Note,
    VerifierKey,
    key_id,
    sign_note_lines,
)
from tests.unit.tlog.fakelog import Signer

TEXT = b"example.com/log\n3\n" + base64.b64encode(bytes(32)) + b"\n"
# The example vkey of c2sp.org/signed-note (its key ID matches its key).
SPEC_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"


def test_the_spec_example_vkey_parses_and_round_trips() -> None:
    key = VerifierKey.parse(SPEC_VKEY)
    assert (key.name, key.sig_type, key.key_id.hex()) == ("PeterNeumann", SIG_ED25519, "c74f20a3")
    assert key.encode() == SPEC_VKEY


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumanm+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TX", "does not match"),
        ("PeterNeumann+c74f20a3+A3pc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not supported"),
        ("PeterNeumann+c74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "expected"),
        ("PeterNeumann+c74f20a3+!!!!", "base64"),
        ("PeterNeumann+zzzzzzzz+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "hex"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "spaces"),
        ("PeterNeumann+c74f20a3+AQAA", "32 bytes"),
        ("PeterNeumann+c74f20a3+AQ==", "no key material"),
        ("PeterNeumann", "expected"),
    ],
)
def test_a_bad_vkey_is_refused(text: str, error: str) -> None:
    with pytest.raises(FormatError, match=error):
        VerifierKey.parse(text)


def test_an_ed25519_signature_verifies_and_each_tampering_fails() -> None:
    log = Signer.new("example.com/log")
    note = Note.parse(sign_note_lines(TEXT, [(log.key, log.sign(TEXT))]))
    assert note.text == TEXT
    assert note.signed_by(log.key) is None
    tampered = Note(TEXT.replace(b"3", b"4"), note.signatures)
    with pytest.raises(TransparencyError, match="does not verify"):
        tampered.signed_by(log.key)
    signature = note.signatures[0]
    bad = bytes([signature.signature[0] ^ 1]) + signature.signature[1:]
    with pytest.raises(TransparencyError, match="does not verify"):
        Note(TEXT, (type(signature)(signature.name, signature.key_id, bad),)).signed_by(log.key)
    other = Signer.new("example.com/log")
    with pytest.raises(TransparencyError, match="not signed by"):
        note.signed_by(other.key)


def test_an_ecdsa_log_key_as_the_spec_allows() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    spki = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = VerifierKey("example.com/log", SIG_ECDSA, spki)
    assert key.key_id == key_id("anything", SIG_ECDSA, spki)  # the SPKI's hash alone
    assert VerifierKey.parse(key.encode()) == key
    signature = private.sign(TEXT, ec.ECDSA(hashes.SHA256()))
    note = Note.parse(sign_note_lines(TEXT, [(key, signature)]))
    assert note.signed_by(key) is None
    with pytest.raises(TransparencyError):
        Note(TEXT + b"x\n", note.signatures).signed_by(key)
    p192 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    VerifierKey("ok", SIG_ECDSA, p192)
    with pytest.raises(FormatError, match="DER"):
        VerifierKey("bad", SIG_ECDSA, b"\x30\x00")


def test_a_cosignature_carries_its_time_and_covers_it() -> None:
    witness = Signer.new("witness.example/w", SIG_COSIGNATURE_V1)
    cosigned = witness.sign(TEXT, when=1_790_000_123)
    note = Note.parse(sign_note_lines(TEXT, [(witness.key, cosigned)]))
    assert note.signed_by(witness.key) == 1_790_000_123
    assert note.cosigners([witness.key]) == {"witness.example/w": 1_790_000_123}
    later = (1_790_000_124).to_bytes(8, "big") + cosigned[8:]
    moved = Note(TEXT, (type(note.signatures[0])(witness.key.name, witness.key.key_id, later),))
    with pytest.raises(TransparencyError, match="does not verify"):
        moved.signed_by(witness.key)
    with pytest.raises(TransparencyError, match="8 \\+ 64"):
        Note(
            TEXT, (type(note.signatures[0])(witness.key.name, witness.key.key_id, b"x" * 64),)
        ).signed_by(witness.key)
    # The same key as a plain Ed25519 (0x01) key has another key ID: not this signature.
    plain = VerifierKey(witness.key.name, SIG_ED25519, witness.key.key)
    assert note.cosigners([plain]) == {}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (TEXT, "no blank line"),
        (TEXT + b"\n", "no signatures"),
        (TEXT + b"\n- example.com/log AAAAAAA=\n", "em dash"),
        (TEXT + "\n\u2014 example.com/log !!!\n".encode(), "not base64"),
        (TEXT + "\n\u2014 example.com/log AAAA\n".encode(), "too short"),
        (TEXT + "\n\u2014 example.com/log\n".encode(), "malformed"),
        (b"a\x01b\n\n" + "\u2014 x AAAAAAA=\n".encode(), "control"),
        (b"\xff\n\n", "UTF-8"),
        (TEXT + b"\n" + "\u2014 x AAAAAAA=\n".encode() * 101, "more than 100"),
        (b"x" * 70000, "larger than"),
    ],
)
def test_a_malformed_note_is_refused(data: bytes, error: str) -> None:
    with pytest.raises(FormatError, match=error):
        Note.parse(data)
