"""The referrers index: fallback tag names and the merge that concurrent writers rely on."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opk_sign.errors import FormatError, UsageError
from opk_sign.oci import mediatypes
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.manifest import canonical_json
from opk_sign.oci.referrers import (
    SettlePolicy,
    fallback_tag,
    filter_by_artifact_type,
    lists_all,
    merge_referrers_index,
    parse_referrers_index,
)

SIG = "application/vnd.example.sig"
ATT = "application/vnd.example.att"


def referrer(n: int, artifact_type: str = SIG) -> Descriptor:
    return Descriptor(
        mediatypes.OCI_MANIFEST,
        f"sha256:{n:064x}",
        100 + n,
        annotations={"n": str(n)},
        artifact_type=artifact_type,
    )


def test_fallback_tag() -> None:
    assert fallback_tag("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32
    assert fallback_tag("sha512:" + "cd" * 64) == "sha512-" + "cd" * 32  # truncated to 64
    with pytest.raises(UsageError):
        fallback_tag("sha256:short")


def test_merge_into_nothing_creates_an_index() -> None:
    merged = merge_referrers_index(None, [referrer(1)])
    assert merged is not None
    document = json.loads(merged)
    assert document == {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mediatypes.OCI_MANIFEST,
                "digest": referrer(1).digest,
                "size": 101,
                "artifactType": SIG,
                "annotations": {"n": "1"},
            }
        ],
    }
    assert parse_referrers_index(merged) == [referrer(1)]


def test_merge_keeps_existing_entries_exactly_and_adds_once() -> None:
    existing = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [{**referrer(1).to_dict(), "x-unknown": {"kept": True}}],
            "annotations": {"index": "annotation"},
        }
    )
    merged = merge_referrers_index(existing, [referrer(2), referrer(1), referrer(2)])
    assert merged is not None
    document = json.loads(merged)
    assert document["annotations"] == {"index": "annotation"}
    assert document["manifests"][0]["x-unknown"] == {"kept": True}
    assert [m["digest"] for m in document["manifests"]] == [referrer(1).digest, referrer(2).digest]
    assert merge_referrers_index(merged, [referrer(1), referrer(2)]) is None  # nothing to do
    assert lists_all(merged, [referrer(1).digest, referrer(2).digest])
    assert not lists_all(merged, [referrer(3).digest])
    assert not lists_all(None, [referrer(1).digest])


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}',
        b'{"schemaVersion": 2, "manifests": {}}',
        b'{"schemaVersion": 2, "manifests": [{"digest": "sha256:x"}]}',
    ],
)
def test_something_else_under_the_tag_is_refused(document: bytes) -> None:
    with pytest.raises(FormatError):
        merge_referrers_index(document, [referrer(1)])


def test_filter_by_artifact_type() -> None:
    items = [referrer(1), referrer(2, ATT), referrer(3)]
    assert filter_by_artifact_type(items, None) == items
    assert filter_by_artifact_type(items, ATT) == [referrer(2, ATT)]
    assert filter_by_artifact_type(items, "other") == []


@given(st.lists(st.lists(st.integers(0, 30), max_size=6), min_size=1, max_size=6))
def test_merges_in_any_order_lose_nothing(batches: list[list[int]]) -> None:
    """Whatever each writer adds, in whatever order: the result lists every entry exactly once,
    and the entries already there keep their order."""
    index: bytes | None = None
    for batch in batches:
        before = [d.digest for d in parse_referrers_index(index)] if index else []
        merged = merge_referrers_index(index, [referrer(n) for n in batch])
        if merged is None:
            assert all(referrer(n).digest in before for n in batch)
            continue
        after = [d.digest for d in parse_referrers_index(merged)]
        assert after[: len(before)] == before
        index = merged
    expected = {referrer(n).digest for batch in batches for n in batch}
    listed = [d.digest for d in parse_referrers_index(index)] if index else []
    assert len(listed) == len(set(listed))
    assert set(listed) == expected


# --- how long a writer waits before reading its write back -------------------------------------


def test_the_quiet_settle_is_the_floor_or_a_multiple_of_the_read_to_write_time() -> None:
    policy = SettlePolicy(quiet=0.15, contended=0.5, factor=4.0, jitter=0.25)
    assert policy.wait(0.01, contended=False, draw=0.9) == 0.15  # no jitter while quiet
    assert policy.wait(0.1, contended=False, draw=0.9) == pytest.approx(0.4)


@given(
    read_to_write=st.floats(0, 10),
    draw=st.floats(0, 1, exclude_max=True),
    quiet=st.floats(0, 5),
    contended=st.floats(0, 5),
)
def test_the_contended_settle_is_never_shorter_than_the_quiet_one(
    read_to_write: float, draw: float, quiet: float, contended: float
) -> None:
    policy = SettlePolicy(quiet=quiet, contended=contended)
    calm = policy.wait(read_to_write, contended=False, draw=draw)
    busy = policy.wait(read_to_write, contended=True, draw=draw)
    assert busy >= calm >= max(quiet, 4 * read_to_write)
    assert busy >= contended + 4 * read_to_write
    assert busy <= max(calm, (contended + 4 * read_to_write) * 1.25)


def test_negative_settle_times_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        SettlePolicy(quiet=-1)
