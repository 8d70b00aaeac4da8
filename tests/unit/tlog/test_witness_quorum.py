"""The witness quorum counts witnesses, not names (red team F5): one witness key under two names
does not count twice, and merging two sources of keys never lets one source's witnesses meet
the other's quorum."""

from __future__ import annotations

from pathlib import Path

import pytest

from opk_sign.errors import TransparencyError, UsageError
from opk_sign.tlog.checkpoint import TlogTrust, verify_checkpoint
from opk_sign.tlog.note import SIG_COSIGNATURE_V1, Note, VerifierKey, sign_note_lines
from opk_sign.trust.client import TLOG_KEYS_TARGET
from opk_sign.verify.options import load_tlog_trust
from tests.unit.tlog.fakelog import FakeLog, Signer

LOG = FakeLog()
LOG.add(b"entry")
TEXT = LOG.checkpoint_text()
LOG_SIGNATURE = (LOG.signer.key, LOG.signer.sign(TEXT))
W1, W2, W3, W4 = (Signer.new(f"w{i}.example", SIG_COSIGNATURE_V1) for i in range(1, 5))
#: W1's key under another name (as another keys file might name it).
ALIAS = VerifierKey("witness-one", SIG_COSIGNATURE_V1, W1.key.key)


def _cosigned(*pairs: tuple[VerifierKey, bytes]) -> bytes:
    return sign_note_lines(TEXT, [LOG_SIGNATURE, *pairs])


def _trust(*witnesses: Signer | VerifierKey, quorum: int) -> TlogTrust:
    keys = tuple(w.key if isinstance(w, Signer) else w for w in witnesses)
    return TlogTrust((LOG.signer.key,), keys, quorum)


def test_one_cosignature_relabelled_under_an_alias_counts_once() -> None:
    # The cosignature/v1 message does not contain the name: W1's cosignature, copied under the
    # alias's key ID, verifies under the alias too. It is one witness.
    cosignature = W1.sign(TEXT)
    note = Note.parse(_cosigned((W1.key, cosignature), (ALIAS, cosignature)))
    assert note.cosigners([W1.key, ALIAS]) == {"w1.example": 1_790_000_000}
    assert note.cosigners([ALIAS, W1.key]) == {"witness-one": 1_790_000_000}
    # The same name with another key (a rotated or a second key of one witness): once too.
    other_key = Signer.new("w1.example", SIG_COSIGNATURE_V1)
    note = Note.parse(_cosigned((W1.key, cosignature), (other_key.key, other_key.sign(TEXT))))
    assert len(note.cosigners([W1.key, other_key.key])) == 1


@pytest.mark.parametrize(
    ("witnesses", "error"),
    [
        ((W1.key, ALIAS), "one witness key is listed under two names"),
        ((W1.key, Signer.new("w1.example", SIG_COSIGNATURE_V1).key), "listed twice"),
        ((W1.key, W1.key), "listed twice"),
    ],
)
def test_a_witness_listed_twice_is_refused(witnesses: tuple[VerifierKey, ...], error: str) -> None:
    with pytest.raises(UsageError, match=error):
        TlogTrust((LOG.signer.key,), witnesses, 1)
    lines = [f"log {LOG.signer.key.encode()}", *(f"witness {w.encode()}" for w in witnesses)]
    with pytest.raises(UsageError, match=error):
        TlogTrust.parse("\n".join([*lines, "quorum 1"]).encode(), "keys")


def test_an_alias_across_two_sources_is_refused_on_merging() -> None:
    local = _trust(W1, W2, quorum=2)
    for repo in (_trust(ALIAS, quorum=1), _trust(ALIAS, quorum=0)):
        for a, b in ((local, repo), (repo, local)):
            with pytest.raises(UsageError, match="under two names"):
                a.merged(b)


def test_merging_never_lets_one_sources_witnesses_meet_the_others_quorum() -> None:
    local = _trust(W1, W2, quorum=2)  # both of mine must cosign
    repo = _trust(W3, W4, quorum=2)
    for a, b in ((local, repo), (repo, local)):
        with pytest.raises(UsageError, match="different witnesses"):
            a.merged(b)
    # A partial overlap is different witnesses too: W2 and W3 would meet the local quorum.
    with pytest.raises(UsageError, match="different witnesses"):
        local.merged(_trust(W1, W2, W3, quorum=2))


def test_a_source_requiring_no_witness_takes_the_others_policy_whole() -> None:
    local = _trust(W1, W2, quorum=2)
    lenient = _trust(W3, quorum=0)  # names a witness, requires none
    bare = TlogTrust((LOG.signer.key,))
    for other in (lenient, bare):
        for merged in (local.merged(other), other.merged(local)):
            assert (set(merged.witnesses), merged.quorum) == ({W1.key, W2.key}, 2)
    # W3's cosignature (the lenient source's witness) does not count toward the local quorum.
    note = _cosigned((W3.key, W3.sign(TEXT)), (W1.key, W1.sign(TEXT)))
    with pytest.raises(TransparencyError, match="cosigned by 1 .* quorum is 2"):
        verify_checkpoint(note, local.merged(lenient))
    # Neither requires any: the witnesses listed are kept, still none required.
    assert lenient.merged(_trust(W4, quorum=0)).quorum == 0


def test_the_same_witnesses_in_both_sources_keep_the_larger_quorum() -> None:
    merged = _trust(W1, W2, quorum=1).merged(_trust(W2, W1, quorum=2))
    assert merged.quorum == 2 and set(merged.witnesses) == {W1.key, W2.key}
    with pytest.raises(TransparencyError, match="quorum is 2"):
        verify_checkpoint(_cosigned((W1.key, W1.sign(TEXT))), merged)
    both = _cosigned((W1.key, W1.sign(TEXT)), (W2.key, W2.sign(TEXT)))
    assert len(verify_checkpoint(both, merged).cosigners) == 2


class _Repository:
    """The trust client's one method load_tlog_trust uses."""

    def __init__(self, keys: TlogTrust) -> None:
        self.keys = keys

    def target(self, name: str) -> bytes | None:
        return self.keys.encode().encode() if name == TLOG_KEYS_TARGET else None


def test_the_cli_refuses_a_local_file_and_a_trust_repository_with_other_witnesses(
    tmp_path: Path,
) -> None:
    local = tmp_path / "tlog-keys.txt"
    local.write_text(_trust(W1, W2, quorum=2).encode())
    for repo, error in (
        (_trust(W3, W4, quorum=2), "different witnesses"),
        (_trust(ALIAS, quorum=1), "two names"),
    ):
        with pytest.raises(UsageError, match=error):
            load_tlog_trust(local, _Repository(repo))  # type: ignore[arg-type]
    same = load_tlog_trust(local, _Repository(_trust(W1, W2, quorum=1)))  # type: ignore[arg-type]
    assert same is not None and same.quorum == 2
