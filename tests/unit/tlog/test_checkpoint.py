"""C2SP checkpoints and the trust to verify them: each line of a checkpoint, the log key, the
origin and the witness quorum, tampered, is refused; the keys file refuses what it cannot mean."""

from __future__ import annotations

import base64

import pytest

from opk_sign.errors import FormatError, TransparencyError, UsageError
from opk_sign.tlog.checkpoint import Checkpoint, TlogTrust, verify_checkpoint
from opk_sign.tlog.note import SIG_COSIGNATURE_V1, sign_note_lines
from tests.unit.tlog.fakelog import FakeLog, Signer

ROOT = base64.b64encode(bytes(range(32))).decode()


def test_a_checkpoint_round_trips() -> None:
    text = f"log.example\n12\n{ROOT}\nextension line\n".encode()
    checkpoint = Checkpoint.parse_text(text)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (
        "log.example",
        12,
        bytes(range(32)),
    )
    assert checkpoint.extensions == ("extension line",)
    assert checkpoint.text() == text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (f"\n1\n{ROOT}\n", "empty origin"),
        (f"log\n01\n{ROOT}\n", "decimal"),
        (f"log\n-1\n{ROOT}\n", "decimal"),
        (f"log\n1 \n{ROOT}\n", "decimal"),
        ("log\n1\n!!!\n", "base64"),
        (f"log\n1\n{base64.b64encode(bytes(31)).decode()}\n", "31 bytes"),
        (f"log\n1\n{ROOT}", "needs origin"),
        ("log\n1\n", "needs origin"),
        (f"log\n1\n{ROOT}\n\nx\n", "extension"),
    ],
)
def test_a_malformed_checkpoint_is_refused(text: str, error: str) -> None:
    with pytest.raises(FormatError, match=error):
        Checkpoint.parse_text(text.encode())


def _log(witnesses: int = 0) -> FakeLog:
    log = FakeLog(
        witnesses=[Signer.new(f"w{i}.example", SIG_COSIGNATURE_V1) for i in range(witnesses)]
    )
    log.add(b"entry")
    return log


def test_the_log_key_and_the_quorum() -> None:
    log = _log(witnesses=2)
    keys = tuple(w.key for w in log.witnesses)
    verified = verify_checkpoint(log.checkpoint(), TlogTrust((log.signer.key,), keys, 2))
    assert verified.checkpoint.size == 1 and set(verified.cosigners) == {"w0.example", "w1.example"}
    third = Signer.new("w2.example", SIG_COSIGNATURE_V1).key
    assert verify_checkpoint(log.checkpoint(), TlogTrust((log.signer.key,), (*keys, third), 2))
    with pytest.raises(TransparencyError, match="cosigned by 2 .* quorum is 3"):
        verify_checkpoint(log.checkpoint(), TlogTrust((log.signer.key,), (*keys, third), 3))


def test_a_checkpoint_by_another_key_or_origin_is_refused() -> None:
    log = _log()
    impostor = Signer.new(log.origin)
    with pytest.raises(TransparencyError, match="not signed by a trusted key"):
        verify_checkpoint(log.checkpoint(), TlogTrust((impostor.key,)))
    elsewhere = Signer.new("other.example")
    with pytest.raises(TransparencyError, match="is not a trusted log"):
        verify_checkpoint(log.checkpoint(), TlogTrust((elsewhere.key,)))
    # The log's own key, but the checkpoint re-signed under another origin by an impostor.
    text = log.checkpoint_text().replace(b"fake.test", b"other.example")
    forged = sign_note_lines(text, [(elsewhere.key, elsewhere.sign(text))])
    with pytest.raises(TransparencyError, match="is not a trusted log"):
        verify_checkpoint(forged, TlogTrust((log.signer.key,)))


def test_a_tampered_checkpoint_line_fails_the_signature() -> None:
    log = _log()
    envelope = log.checkpoint()
    trust = TlogTrust((log.signer.key,))
    origin, size, root, *rest = envelope.split("\n")
    other_root = base64.b64encode(bytes(32)).decode()
    for lines in ([origin, "2", root], [origin, size, other_root], [origin, size, root, "ext"]):
        with pytest.raises(TransparencyError, match="does not verify"):
            verify_checkpoint("\n".join([*lines, *rest]), trust)


def test_the_keys_file() -> None:
    log = _log(witnesses=2)
    trust = TlogTrust((log.signer.key,), tuple(w.key for w in log.witnesses), 1)
    parsed = TlogTrust.parse(f"# comment\n\n{trust.encode()}".encode(), "keys")
    assert parsed == trust
    no_quorum = "\n".join(trust.encode().splitlines()[:-1]).encode()
    assert TlogTrust.parse(no_quorum, "keys").quorum == 2  # every witness listed, by default
    bad = [
        (b"", "names no log key"),
        (b"log\n", "expected"),
        (b"logs " + log.signer.key.encode().encode(), "expected"),
        (b"log nonsense", "expected <name>"),
        (f"log {log.signer.key.encode()}\nquorum x".encode(), "quorum"),
        (f"log {log.signer.key.encode()}\nquorum 1".encode(), "cannot be met"),
        (f"log {log.witnesses[0].key.encode()}".encode(), "cannot be a log key"),
        (f"log {log.signer.key.encode()}\nwitness {log.signer.key.encode()}".encode(), "0x04"),
        (b"\xff", "UTF-8"),
    ]
    for data, error in bad:
        with pytest.raises(UsageError, match=error):
            TlogTrust.parse(data, "keys")
    merged = TlogTrust((log.signer.key,)).merged(trust)
    assert merged.witnesses == trust.witnesses and merged.quorum == 1


def test_digits_that_are_not_ascii_are_refused() -> None:
    with pytest.raises(FormatError, match="decimal"):
        Checkpoint.parse_text(f"log\n\u00b2\n{ROOT}\n".encode())
    with pytest.raises(FormatError, match="UTF-8"):
        Checkpoint.parse_text(b"\xff\n1\n" + ROOT.encode() + b"\n")
    with pytest.raises(UsageError, match="quorum"):
        TlogTrust.parse("quorum \u00b2\n".encode(), "keys")
