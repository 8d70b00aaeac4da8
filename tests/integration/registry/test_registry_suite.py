"""The registry suite (issue 3, item 1): the same tests against distribution and olareg."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from opk_sign.errors import EXIT_REGISTRY, NotFoundError, RegistryError, UsageError
from opk_sign.oci import limits, mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor, Platform
from opk_sign.oci.digest import sha256_digest
from opk_sign.oci.manifest import ImageIndex, ImageManifest, canonical_json, parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.oci.referrers import fallback_tag
from tests.integration.registry.conftest import new_client, unique
from tests.services.faultproxy import Fault, FaultProxy
from tests.services.images import push_sample_image
from tests.services.registries import Registry

pytestmark = pytest.mark.integration

SIGNATURE = "application/vnd.dev.opk-sign.test.signature.v1+json"
ATTESTATION = "application/vnd.dev.opk-sign.test.attestation.v1+json"
BUNDLE = "application/vnd.dev.opk-sign.test.bundle.v1+json"


def test_push_resolve_pull_and_walk_multiarch(registry: Registry, client: RegistryClient) -> None:
    ref = registry.ref(unique(), "v1")
    pushed = push_sample_image(client, ref)

    resolved = client.resolve(ref)
    assert resolved == Descriptor(mediatypes.OCI_INDEX, pushed.digest, pushed.size)
    data, media_type = client.get_manifest(ref, pushed.digest)
    assert media_type == mediatypes.OCI_INDEX
    assert sha256_digest(data) == pushed.digest

    walked = list(client.walk(ref))
    assert [type(m) for _, m in walked] == [ImageIndex, ImageManifest, ImageManifest]
    assert [str(d.platform) for d, _ in walked[1:]] == ["linux/amd64", "linux/arm64"]
    for descriptor, manifest in walked[1:]:
        assert isinstance(manifest, ImageManifest)
        config = json.loads(client.get_blob(ref, manifest.config.digest))
        assert Platform(config["os"], config["architecture"]) == descriptor.platform
        for layer in manifest.layers:
            assert client.blob_exists(ref, layer.digest)


def test_resolve_by_digest_and_single_platform_image(
    registry: Registry, client: RegistryClient
) -> None:
    ref = registry.ref(unique(), "single")
    pushed = push_sample_image(client, ref, ("linux/amd64",), index=False)
    assert pushed.media_type == mediatypes.OCI_MANIFEST
    by_digest = Reference.parse(ref).with_digest(pushed.digest)
    assert client.resolve(by_digest) == pushed
    assert client.resolve(str(by_digest)).digest == pushed.digest
    assert [type(m) for _, m in client.walk(by_digest)] == [ImageManifest]


def test_blob_upload_skips_existing_blobs(registry: Registry, proxy: FaultProxy) -> None:
    ref = f"{proxy.host}/{unique()}"
    data = os.urandom(4096)
    with new_client() as client:
        first = client.put_blob(ref, data)
        uploads = [s for s in proxy.requests if "/blobs/uploads/" in s.path]
        proxy.reset_counts()
        second = client.put_blob(ref, data)
    assert first == second == Descriptor(mediatypes.OCTET_STREAM, sha256_digest(data), 4096)
    # A blob the registry has costs one HEAD and is not uploaded again.
    assert [(s.method, s.status) for s in proxy.requests] == [("HEAD", 200)]
    if registry.kind == "olareg":  # takes single-request (POST ?digest=) uploads
        assert [(s.method, s.status) for s in uploads] == [("POST", 201)]
    else:  # distribution answers 202 to that POST; the upload completes with one PUT
        assert [(s.method, s.status) for s in uploads] == [("POST", 202), ("PUT", 201)]


def test_large_blob_goes_through_post_and_put(registry: Registry, proxy: FaultProxy) -> None:
    ref = f"{proxy.host}/{unique()}"
    data = os.urandom(limits.SINGLE_POST_MAX_BYTES + 1)
    with new_client() as client:
        descriptor = client.put_blob(ref, data)
        assert client.get_blob(ref, descriptor.digest, max_size=len(data)) == data
    uploads = [(s.method, s.path.split("?")[0].endswith("/uploads/")) for s in proxy.requests]
    assert uploads[:3] == [("HEAD", False), ("POST", True), ("PUT", False)]


def test_missing_manifest_and_blob_are_not_found(
    registry: Registry, client: RegistryClient
) -> None:
    ref = registry.ref(unique(), "v1")
    push_sample_image(client, ref)
    with pytest.raises(NotFoundError) as missing_tag:
        client.resolve(registry.ref(unique(), "nope"))
    assert missing_tag.value.exit_code == EXIT_REGISTRY
    with pytest.raises(NotFoundError):
        client.get_manifest(ref, sha256_digest(b"no such manifest"))
    with pytest.raises(NotFoundError):
        client.get_blob(ref, sha256_digest(b"no such blob"))
    assert not client.blob_exists(ref, sha256_digest(b"no such blob"))


def test_size_limits_are_enforced(registry: Registry, client: RegistryClient) -> None:
    ref = registry.ref(unique())
    blob = client.put_blob(ref, os.urandom(2048))
    with pytest.raises(RegistryError, match="over the 1000-byte limit"):
        client.get_blob(ref, blob.digest, max_size=1000)
    padding = "x" * limits.MAX_MANIFEST_BYTES
    huge = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": blob.to_dict(),
            "layers": [],
            "annotations": {"padding": padding},
        }
    )
    with pytest.raises(UsageError, match="limit"):
        client.put_manifest(ref, huge, mediatypes.OCI_MANIFEST)
    with pytest.raises(UsageError, match="limit"):
        client.attach_artifact(
            ref, blob, SIGNATURE, b"x" * (limits.MAX_BUNDLE_BYTES + 1), BUNDLE, {}
        )


def test_corrupted_content_is_refused(registry: Registry, proxy: FaultProxy) -> None:
    ref = f"{proxy.host}/{unique()}:v1"
    with new_client() as client:
        pushed = push_sample_image(client, ref)
        blob = client.put_blob(ref, b"some content " * 10)
        proxy.add(Fault("corrupt", method="GET", path="/blobs/", times=-1))
        proxy.add(Fault("corrupt", method="GET", path="/manifests/", times=-1))
        with pytest.raises(RegistryError, match="digest"):
            client.get_blob(ref, blob.digest)
        with pytest.raises(RegistryError, match="digest"):
            client.get_manifest(ref, pushed.digest)


def test_referrers_probe_tells_api_from_fallback(
    registry: Registry, client: RegistryClient
) -> None:
    ref = registry.ref(unique(), "v1")
    pushed = push_sample_image(client, ref)
    assert client.has_referrers_api(ref, pushed.digest) is registry.referrers_api
    assert client.list_referrers(ref, pushed.digest) == []


def test_attach_writes_the_artifact_manifest_design_describes(
    registry: Registry, client: RegistryClient
) -> None:
    ref = registry.ref(unique(), "v1")
    subject = push_sample_image(client, ref)
    bundle = b'{"mediaType": "test bundle"}'
    annotations = {"dev.opk-sign.identity": "octo-org/octo-repo", "org.example.n": "1"}
    stored = client.attach_artifact(ref, subject, SIGNATURE, bundle, BUNDLE, annotations)

    data, media_type = client.get_manifest(ref, stored.digest)
    assert media_type == mediatypes.OCI_MANIFEST
    manifest = parse_manifest(data)
    assert isinstance(manifest, ImageManifest)
    document = json.loads(data)
    assert document["artifactType"] == SIGNATURE
    assert document["config"] == {
        "mediaType": mediatypes.OCI_EMPTY,
        "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
        "size": 2,
    }
    assert client.get_blob(ref, manifest.config.digest) == b"{}"
    assert [layer.media_type for layer in manifest.layers] == [BUNDLE]
    assert client.get_blob(ref, manifest.layers[0].digest) == bundle
    assert document["subject"] == {
        "mediaType": subject.media_type,
        "digest": subject.digest,
        "size": subject.size,
    }
    assert document["annotations"] == annotations
    assert stored == Descriptor(
        mediatypes.OCI_MANIFEST, stored.digest, len(data), annotations, SIGNATURE
    )


def test_referrers_listed_with_type_filter_and_annotations(
    registry: Registry, client: RegistryClient
) -> None:
    ref = registry.ref(unique(), "v1")
    subject = push_sample_image(client, ref)
    signature = client.attach_artifact(ref, subject, SIGNATURE, b"sig", BUNDLE, {"kind": "sig"})
    attestation = client.attach_artifact(
        ref, subject, ATTESTATION, b"att", BUNDLE, {"kind": "att", "predicate": "slsa"}
    )
    # Attaching the same artifact again lists it once.
    again = client.attach_artifact(ref, subject, SIGNATURE, b"sig", BUNDLE, {"kind": "sig"})
    assert again == signature

    with new_client() as fresh:  # nothing cached: the probe runs again
        listed = fresh.list_referrers(ref, subject.digest)
        assert sorted(listed, key=lambda d: d.digest) == sorted(
            [signature, attestation], key=lambda d: d.digest
        )
        assert fresh.list_referrers(ref, subject.digest, SIGNATURE) == [signature]
        assert fresh.list_referrers(ref, subject.digest, ATTESTATION) == [attestation]
        assert fresh.list_referrers(ref, subject.digest, "application/vnd.none") == []

    # Where they live: the referrers API, or the sha256-<hex> fallback index.
    tag_ref = Reference.parse(ref).with_tag(fallback_tag(subject.digest))
    if registry.referrers_api:
        with pytest.raises(NotFoundError):
            client.resolve(tag_ref)
    else:
        index = parse_manifest(client.get_manifest(tag_ref)[0])
        assert isinstance(index, ImageIndex)
        assert {d.digest for d in index.manifests} == {signature.digest, attestation.digest}


def test_referrers_of_a_referrer(registry: Registry, client: RegistryClient) -> None:
    ref = registry.ref(unique(), "v1")
    subject = push_sample_image(client, ref)
    attestation = client.attach_artifact(ref, subject, ATTESTATION, b"att", BUNDLE, {})
    countersign = client.attach_artifact(ref, attestation, SIGNATURE, b"sig", BUNDLE, {})
    assert client.list_referrers(ref, subject.digest) == [attestation]
    assert client.list_referrers(ref, attestation.digest) == [countersign]


def test_shared_client_from_a_thread_pool(registry: Registry, client: RegistryClient) -> None:
    """Batch verification shares one client between threads: sessions, tokens, probes."""
    refs = [registry.ref(unique("batch"), "v1") for _ in range(12)]
    pushed = {ref: push_sample_image(client, ref, ("linux/amd64",), index=False) for ref in refs}
    with ThreadPoolExecutor(max_workers=12) as pool:
        attached = [
            pool.submit(client.attach_artifact, ref, subject, SIGNATURE, ref.encode(), BUNDLE, {})
            for ref, subject in pushed.items()
        ]
    assert all(future.result().artifact_type == SIGNATURE for future in attached)

    with new_client() as shared:

        def check(ref: str) -> tuple[str, int]:
            descriptor = shared.resolve(ref)
            return descriptor.digest, len(shared.list_referrers(ref, descriptor.digest))

        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(check, refs * 4))
    assert results == [(pushed[ref].digest, 1) for ref in refs * 4]


def test_registry_answers_by_http_on_loopback(registry: Registry) -> None:
    assert Reference.parse(registry.ref("a/b")).api_base == f"http://{registry.host}"
    assert requests.get(f"http://{registry.host}/v2/", timeout=5).status_code == 200
