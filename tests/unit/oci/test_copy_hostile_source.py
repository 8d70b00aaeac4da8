"""``opk-sign copy`` from a hostile source registry: its referrers listing is a claim. A manifest
is copied as a referrer of a subject only when its own ``subject`` names it, and each referrer's
referrers are followed once (red team)."""

from __future__ import annotations

import json
from typing import Any

from opk_sign.bundle import SIGNATURE_ARTIFACT_TYPE
from opk_sign.oci import mediatypes
from opk_sign.oci.copy import copy_image
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.digest import sha256_digest
from opk_sign.oci.manifest import parse_manifest

MT = mediatypes.OCI_MANIFEST
EMPTY = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": sha256_digest(b"{}"),
    "size": 2,
}


def _manifest(subject: str | None = None, salt: str = "") -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT, "config": EMPTY, "layers": []}
    if subject is not None:
        doc["artifactType"] = SIGNATURE_ARTIFACT_TYPE
        doc["subject"] = {"mediaType": MT, "digest": subject, "size": 1}
    if salt:
        doc["annotations"] = {"salt": salt}
    return json.dumps(doc).encode()


class _Source:
    """The source and the destination in one: what copy reads and what it writes."""

    def __init__(self) -> None:
        self.manifests: dict[str, bytes] = {}
        self.listing: dict[str, list[Descriptor]] = {}
        self.any_subject: list[Descriptor] | None = None  # the same listing for every subject
        self.pulls = 0
        self.pushed: list[tuple[str, str | None]] = []
        self.tagged = ""

    def add(self, data: bytes) -> str:
        digest = sha256_digest(data)
        self.manifests[digest] = data
        return digest

    def pull_manifest(self, ref: Any, digest: str | None = None) -> tuple[Descriptor, bytes]:
        self.pulls += 1
        wanted = digest or self.tagged
        data = self.manifests[wanted]
        return Descriptor(MT, wanted, len(data)), data

    @staticmethod
    def parse(descriptor: Descriptor, data: bytes) -> Any:
        return parse_manifest(data, descriptor.media_type)

    def list_referrers(self, ref: Any, digest: str, artifact_type: Any = None) -> Any:
        if self.any_subject is not None:
            return list(self.any_subject)
        return list(self.listing.get(digest, []))

    def put_manifest(self, ref: Any, data: bytes, media_type: str, **_: Any) -> str:
        manifest = parse_manifest(data, media_type)
        subject = getattr(manifest, "subject", None)
        self.pushed.append((sha256_digest(data), subject.digest if subject else None))
        return sha256_digest(data)

    def register_referrers(self, ref: Any, subject: str, stored: Any) -> None:
        pass

    def blob_exists(self, ref: Any, digest: str) -> bool:
        return True


def _listed(source: _Source, digest: str) -> Descriptor:
    data = source.manifests[digest]
    return Descriptor(MT, digest, len(data), artifact_type=SIGNATURE_ARTIFACT_TYPE)


def test_a_referrer_of_another_subject_is_not_copied() -> None:
    source = _Source()
    image = source.tagged = source.add(_manifest())
    victim = "sha256:" + "b" * 64  # a manifest of the destination the source wants to attach to
    honest = source.add(_manifest(subject=image))
    hostile = source.add(_manifest(subject=victim))
    source.listing[image] = [_listed(source, honest), _listed(source, hostile)]
    report = copy_image(source, "src.example/a/b:v1", "dst.example/c/d:v1")  # type: ignore[arg-type]
    assert (hostile, victim) not in source.pushed and (honest, image) in source.pushed
    assert report.referrers == 1 and report.skipped == [hostile]
    assert "1 listed referrers left out" in report.summary()


def test_a_listing_repeated_under_every_subject_is_followed_once() -> None:
    source = _Source()
    image = source.tagged = source.add(_manifest())
    referrers = [source.add(_manifest(subject=image, salt=str(i))) for i in range(4)]
    source.any_subject = [_listed(source, digest) for digest in referrers]
    report = copy_image(source, "src.example/a/b:v1", "dst.example/c/d:v1")  # type: ignore[arg-type]
    assert report.referrers == 4
    assert source.pulls < 30  # was 4 x 3^(depth-1) subjects deep: exponential
