"""Signing a multi-platform image on a registry without the referrers API (issue 13).

Each manifest's referrers are listed by one write of its fallback index, confirmed after a settle
time. The index's signature is listed only after every platform manifest's listing was written,
and the platform manifests' confirmations wait while the index is signed: the run waits about one
settle time, not two (docs/registry.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.errors import SigningError
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import ImageIndex, parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.oci.referrers import fallback_tag
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import SigningOptions, sign_image
from tests.services.faultproxy import Fault, FaultProxy, Seen, fault_proxy
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, distribution

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("sign")]

#: Long enough that the order of requests says what overlapped, whatever the machine's load.
SETTLE = 0.6
OPTIONS = SigningOptions(provenance=False)


@pytest.fixture(scope="module")
def emulator() -> Iterator[GitHubOIDCEmulator]:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as running:
        yield running


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with distribution(tmp_path_factory.mktemp("distribution")) as running:
        yield running


def provider(emulator: GitHubOIDCEmulator) -> GitHubActionsProvider:
    return GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)


def client() -> RegistryClient:
    return RegistryClient(Keychain.anonymous(), fallback_settle=SETTLE)


def image(registry: Registry, name: str) -> tuple[str, str, list[str]]:
    """A fresh 2-platform image: (reference, index digest, platform manifest digests)."""
    ref = registry.ref(f"octo-org/{name}", "v1")
    with client() as c:
        pushed = push_sample_image(c, ref)
        data, _ = c.get_manifest(Reference.parse(ref), pushed.digest)
    index = parse_manifest(data)
    assert isinstance(index, ImageIndex)
    return ref, pushed.digest, [d.digest for d in index.manifests]


def index_requests(proxy: FaultProxy, digest: str) -> list[Seen]:
    return [s for s in proxy.requests if s.path.endswith(f"/manifests/{fallback_tag(digest)}")]


def test_the_index_is_listed_after_its_platforms_and_the_settles_overlap(
    registry: Registry, emulator: GitHubOIDCEmulator
) -> None:
    ref, top, platforms = image(registry, "overlap")
    with fault_proxy(registry.host) as proxy, client() as c:
        target = f"{proxy.host}/octo-org/overlap@{top}"
        result = sign_image(target, provider=provider(emulator), client=c, options=OPTIONS)
        index_get, index_put, index_confirm = index_requests(proxy, top)
        assert [index_get.method, index_put.method, index_confirm.method] == ["GET", "PUT", "GET"]
        assert index_confirm.at - index_put.at >= SETTLE
        for platform in platforms:
            get, put, confirm = index_requests(proxy, platform)
            assert [get.method, put.method, confirm.method] == ["GET", "PUT", "GET"]
            assert put.at < index_put.at  # the index is listed only after its platforms
            assert confirm.at - put.at >= SETTLE
            assert confirm.at > index_put.at  # confirmed while the index was being signed
    assert len(result.signatures) == 3
    with client() as c:
        for digest in [*platforms, top]:
            (listed,) = c.list_referrers(Reference.parse(ref), digest)
            assert listed.digest in result.signatures


def test_a_platform_listing_that_cannot_be_written_leaves_the_index_unsigned(
    registry: Registry, emulator: GitHubOIDCEmulator
) -> None:
    ref, top, platforms = image(registry, "unlisted")
    tag = fallback_tag(platforms[0])
    with fault_proxy(registry.host) as proxy, client() as c:
        proxy.add(Fault("status", method="PUT", path=f"/manifests/{tag}$", status=400, times=-1))
        target = f"{proxy.host}/octo-org/unlisted@{top}"
        with pytest.raises(SigningError) as caught:
            sign_image(target, provider=provider(emulator), client=c, options=OPTIONS)
        assert index_requests(proxy, top) == []  # the index's listing was never touched
    message = caught.value.message
    assert f"not signed: {platforms[0]}" in message
    assert f"not signed: {top} (index)" in message
    with client() as c:
        assert c.list_referrers(Reference.parse(ref), top) == []


def test_a_platform_confirmation_that_fails_after_the_index_was_listed_is_reported(
    registry: Registry, emulator: GitHubOIDCEmulator
) -> None:
    """The one state the overlap adds: the index's signature is listed, and a platform
    manifest's listing was written but could not be confirmed. The run fails naming it; its
    referrers are stored and were listed by the write."""
    ref, top, platforms = image(registry, "unconfirmed")
    tag = fallback_tag(platforms[0])
    with fault_proxy(registry.host) as proxy, client() as c:
        proxy.add(Fault("status", method="GET", path=f"/manifests/{tag}$", status=400, skip=1))
        target = f"{proxy.host}/octo-org/unconfirmed@{top}"
        with pytest.raises(SigningError) as caught:
            sign_image(target, provider=provider(emulator), client=c, options=OPTIONS)
    message = caught.value.message
    assert f"not signed: {platforms[0]}" in message
    assert caught.value.exit_code != 0
    with client() as c:
        for digest in [*platforms, top]:
            assert len(c.list_referrers(Reference.parse(ref), digest)) == 1
