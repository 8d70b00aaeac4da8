"""BuildKit attestation manifests and provenance, as pure logic: statements of both in-toto
versions, the source of SLSA v0.2 and v1 provenance (configSource, vcs), the source policy."""

from __future__ import annotations

import json

import pytest

from opk_sign.errors import FormatError, PayloadMismatchError, PolicyError, UsageError
from opk_sign.oci import mediatypes
from opk_sign.oci.descriptor import Descriptor, Platform
from opk_sign.oci.manifest import ImageIndex, ImageManifest
from opk_sign.payloads.buildkit import (
    INTOTO_MEDIA_TYPE,
    PREDICATE_TYPE_ANNOTATION,
    SLSA_PROVENANCE_V02,
    SLSA_PROVENANCE_V1,
    STATEMENT_V01,
    BuildSource,
    PlatformSources,
    SourceRequirement,
    attestation_layers,
    attestations_in_index,
    check_statement,
    normalize_repository,
    parse_statement,
    provenance_source,
)
from tests.services.buildkit import index_entry, provenance_predicate

P = "sha256:" + "a" * 64
Q = "sha256:" + "b" * 64
COMMIT = "c" * 40
REPO = "https://github.com/docker-library/busybox.git"


def statement(about: str = P, predicate_type: str = SLSA_PROVENANCE_V1, **extra: object) -> bytes:
    doc = {
        "_type": "https://in-toto.io/Statement/v1",
        "predicateType": predicate_type,
        "subject": [{"name": "x", "digest": {"sha256": about.split(":")[1]}}],
        "predicate": {},
        **extra,
    }
    return json.dumps(doc).encode()


def test_index_entries_and_layers() -> None:
    attestation = Descriptor(mediatypes.OCI_MANIFEST, Q, 10)
    index = ImageIndex(
        mediatypes.OCI_INDEX,
        (
            Descriptor(mediatypes.OCI_MANIFEST, P, 5, platform=Platform("linux", "amd64")),
            Descriptor.from_dict(index_entry(attestation, P)),
        ),
    )
    assert [d.digest for d in attestations_in_index(index)[P]] == [Q]
    layer = Descriptor(INTOTO_MEDIA_TYPE, Q, 3, annotations={PREDICATE_TYPE_ANNOTATION: "t"})
    other = Descriptor("application/octet-stream", P, 3)
    manifest = ImageManifest(mediatypes.OCI_MANIFEST, other, (layer, other))
    assert [(a.descriptor.digest, a.predicate_type) for a in attestation_layers(manifest)] == [
        (Q, "t")
    ]


def test_statements_of_both_versions_and_their_checks() -> None:
    parsed = parse_statement(statement(_type=STATEMENT_V01))
    assert parsed.statement_type == STATEMENT_V01 and parsed.names(P)
    check_statement(parsed, subject=P, predicate_type=SLSA_PROVENANCE_V1)
    with pytest.raises(PayloadMismatchError, match="not the platform manifest"):
        check_statement(parsed, subject=Q, predicate_type=SLSA_PROVENANCE_V1)
    with pytest.raises(PayloadMismatchError, match="predicateType"):
        check_statement(parsed, subject=P, predicate_type=SLSA_PROVENANCE_V02)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        statement(_type="https://example.com/Statement"),
        statement(predicateType=""),
        statement(subject=[]),
        statement(predicate=[]),
        statement(subject=[{"name": "x"}]),
    ],
)
def test_malformed_statements(data: bytes) -> None:
    with pytest.raises(FormatError):
        parse_statement(data)


@pytest.mark.parametrize("version", ["v1", "v0.2"])
def test_provenance_source_from_config_source_and_vcs(version: str) -> None:
    kind, predicate = provenance_predicate(version, repository=REPO, commit=COMMIT, directory="x")
    assert provenance_source(kind, predicate) == BuildSource(REPO, COMMIT, "configSource")
    kind, predicate = provenance_predicate(version, repository=REPO, commit=COMMIT, vcs=True)
    assert provenance_source(kind, predicate) == BuildSource(REPO, COMMIT, "vcs")
    kind, predicate = provenance_predicate(version, repository=None, commit=None)
    assert provenance_source(kind, predicate) is None
    with pytest.raises(FormatError):
        provenance_source("https://spdx.dev/Document", predicate)


def test_repositories_compare_the_way_people_write_them() -> None:
    same = [
        "https://github.com/Docker-Library/busybox",
        "https://github.com/Docker-Library/busybox.git",
        "git@github.com:Docker-Library/busybox.git",
        "ssh://git@github.com/Docker-Library/busybox/",
    ]
    assert {normalize_repository(u) for u in same} == {"github.com/Docker-Library/busybox"}
    assert normalize_repository(REPO) != normalize_repository("https://github.com/evil/busybox")


def test_source_requirements() -> None:
    requirement = SourceRequirement("https://github.com/docker-library/busybox", COMMIT)
    requirement.check(BuildSource(REPO, COMMIT, "configSource"), "here")
    with pytest.raises(PolicyError, match="source commit"):
        requirement.check(BuildSource(REPO, "d" * 40, "configSource"), "here")
    with pytest.raises(PolicyError, match="source repository"):
        requirement.check(BuildSource("https://github.com/evil/x", COMMIT, "vcs"), "here")
    with pytest.raises(PolicyError, match="names no source"):
        requirement.check(None, "here")
    with pytest.raises(UsageError, match="full lowercase Git commit"):
        SourceRequirement(None, "abc")
    with pytest.raises(UsageError):
        SourceRequirement(None, None)


def test_platform_sources_pick_by_platform_with_arm64_variant() -> None:
    other = SourceRequirement(REPO, "d" * 40)
    sources = PlatformSources(
        {"linux/amd64": (SourceRequirement(REPO, COMMIT),), "linux/arm64/v8": (other,)}
    )
    sources.check(BuildSource(REPO, COMMIT, "vcs"), "here", "linux/amd64")
    sources.check(BuildSource(REPO, "d" * 40, "vcs"), "here", "linux/arm64")
    with pytest.raises(PolicyError, match="source commit"):
        sources.check(BuildSource(REPO, COMMIT, "vcs"), "here", "linux/arm64/v8")
    with pytest.raises(PolicyError, match="not an architecture"):
        sources.check(BuildSource(REPO, COMMIT, "vcs"), "here", "linux/s390x")
