"""Whatever a registry sends as a manifest, an index or a referrers list parses to a value or a
FormatError (exit 12 for signature material, 13 where the caller maps it): never another
exception (issue 11, class 4). Generated documents: right shapes with wrong types, huge numbers,
deep nesting, long strings, garbage bytes."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opk_sign.errors import OpkSignError
from opk_sign.oci import mediatypes
from opk_sign.oci.manifest import media_type_of, parse_manifest
from opk_sign.oci.referrers import lists_all, merge_referrers_index, parse_referrers_index

DIGEST = "sha256:" + "ab" * 32

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from([DIGEST, "sha256:", "sha512:" + "a" * 128, "md5:abc", "", "x" * 5000]),
    st.sampled_from(
        sorted(
            v
            for k in dir(mediatypes)
            if k.isupper() and isinstance(v := getattr(mediatypes, k), str)
        )
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def descriptor() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "mediaType": values,
            "digest": values,
            "size": values,
            "annotations": values,
            "artifactType": values,
            "platform": values,
            "urls": values,
        },
    )


documents = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.one_of(st.just(2), values),
        "mediaType": values,
        "config": st.one_of(descriptor(), values),
        "layers": st.one_of(st.lists(descriptor(), max_size=3), values),
        "manifests": st.one_of(st.lists(descriptor(), max_size=3), values),
        "subject": st.one_of(descriptor(), values),
        "artifactType": values,
        "annotations": values,
    },
)

HOSTILE_BYTES = [
    b"",
    b"\xff\xfe",
    b"[" * 100_000,
    b'{"schemaVersion": 2, "size": ' + b"9" * 5000 + b"}",
    b'{"schemaVersion": 2, "schemaVersion": 2}',
    b'{"a": NaN}',
    b"1e999999",
    b'"' + b"a" * 100 + b'"',
    b"null",
]


def _never_raises_otherwise(data: bytes) -> None:
    for parse in (
        lambda: parse_manifest(data, None),
        lambda: parse_manifest(data, mediatypes.OCI_INDEX),
        lambda: media_type_of(data),
        lambda: parse_referrers_index(data),
        lambda: merge_referrers_index(data, []),
        lambda: lists_all(data, [DIGEST]),
    ):
        with contextlib.suppress(OpkSignError):
            parse()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_generated_documents(doc: dict[str, Any]) -> None:
    _never_raises_otherwise(json.dumps(doc).encode())


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_bytes(data: bytes) -> None:
    _never_raises_otherwise(data)


def test_hostile_byte_strings() -> None:
    for data in HOSTILE_BYTES:
        _never_raises_otherwise(data)
