"""Request costs, counted by the proxy (issue 3, item 6; docs/registry.md, "Request costs").

On a registry with the referrers API: attaching a referrer when the empty config blob exists
costs at most 5 requests (4 with a fresh client: the API probe, a HEAD for the config, one POST
for the bundle, one PUT for the manifest); resolving a tag and listing its referrers costs 2.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor
from tests.integration.registry.conftest import new_client, unique
from tests.services.faultproxy import FaultProxy, Seen, fault_proxy
from tests.services.images import push_sample_image
from tests.services.registries import Registry

pytestmark = pytest.mark.integration

SIGNATURE = "application/vnd.dev.opk-sign.test.signature.v1+json"
BUNDLE = "application/vnd.dev.opk-sign.test.bundle.v1+json"


def kinds(requests: list[Seen]) -> list[str]:
    """``METHOD what`` for each request: referrers, blob, upload, manifest, index, tag."""
    names = []
    for seen in requests:
        path = seen.path.split("?")[0]
        if "/referrers/" in path:
            what = "referrers"
        elif "/blobs/uploads/" in path:
            what = "upload"
        elif "/blobs/" in path:
            what = "blob"
        elif re.search(r"/manifests/sha256-", path):
            what = "fallback-index"
        elif "/manifests/sha256:" in path:
            what = "manifest"
        else:
            what = "tag"
        names.append(f"{seen.method} {what}")
    return names


@pytest.fixture
def counted(registry: Registry) -> Iterator[tuple[FaultProxy, str, Descriptor]]:
    """An image with one referrer already (so the empty config blob exists), behind a proxy."""
    with fault_proxy(registry.host) as proxy, new_client() as setup:
        ref = f"{proxy.host}/{unique()}:v1"
        subject = push_sample_image(setup, ref)
        setup.attach_artifact(ref, subject, SIGNATURE, b"first", BUNDLE, {})
        proxy.reset_counts()
        yield proxy, ref, subject


def attach(client: RegistryClient, ref: str, subject: Descriptor, name: str) -> None:
    client.attach_artifact(ref, subject, SIGNATURE, name.encode(), BUNDLE, {"name": name})


def test_attach_cost(registry: Registry, counted: tuple[FaultProxy, str, Descriptor]) -> None:
    proxy, ref, subject = counted
    with new_client() as client:
        attach(client, ref, subject, "cold")
        cold = kinds(proxy.requests)
        proxy.reset_counts()
        attach(client, ref, subject, "warm")
        warm = kinds(proxy.requests)
    print(f"\n{registry.kind} attach: fresh client {len(cold)} {cold}; then {len(warm)} {warm}")
    if registry.referrers_api:
        assert len(cold) <= 5
        assert cold == ["GET referrers", "HEAD blob", "POST upload", "PUT manifest"]
        # The client remembers the empty config blob is there: no second HEAD.
        assert warm == ["POST upload", "PUT manifest"]
    else:
        # Fallback: the single-POST attempt teaches the client this registry wants POST+PUT;
        # the index is read, written, and read again after the settle wait.
        assert cold == [
            "GET referrers",
            "HEAD blob",
            "POST upload",
            "PUT upload",
            "PUT manifest",
            "GET fallback-index",
            "PUT fallback-index",
            "GET fallback-index",
        ]
        assert warm == cold[2:]


def test_resolve_and_list_cost(
    registry: Registry, counted: tuple[FaultProxy, str, Descriptor]
) -> None:
    proxy, ref, subject = counted
    with new_client() as client:
        assert client.resolve(ref) == subject
        assert len(client.list_referrers(ref, subject.digest)) == 1
        cold = kinds(proxy.requests)
        proxy.reset_counts()
        client.resolve(ref)
        client.list_referrers(ref, subject.digest)
        warm = kinds(proxy.requests)
    print(f"\n{registry.kind} resolve+list: fresh client {len(cold)} {cold}; then {len(warm)}")
    if registry.referrers_api:
        assert cold == warm == ["HEAD tag", "GET referrers"]
    else:
        assert cold == ["HEAD tag", "GET referrers", "GET fallback-index"]
        assert warm == ["HEAD tag", "GET fallback-index"]


def test_the_artifact_type_filter_is_sent_to_the_referrers_api(
    olareg_registry: Registry,
) -> None:
    with fault_proxy(olareg_registry.host) as proxy, new_client() as client:
        ref = f"{proxy.host}/{unique()}:v1"
        subject = push_sample_image(client, ref, ("linux/amd64",), index=False)
        stored = client.attach_artifact(ref, subject, SIGNATURE, b"x", BUNDLE, {})
        client.attach_artifact(ref, subject, "application/vnd.other", b"y", BUNDLE, {})
        proxy.reset_counts()
        assert client.list_referrers(ref, subject.digest, SIGNATURE) == [stored]
        (request,) = proxy.requests
    assert request.path.endswith(
        f"/referrers/{subject.digest}?artifactType="
        + "application%2Fvnd.dev.opk-sign.test.signature.v1%2Bjson"
    )
    assert request.response_headers["oci-filters-applied"] == "artifactType"
