"""Registry faults through the fault proxy (issue 3, item 4).

Transient faults (reset, 500, 503, 429 with Retry-After, slow answers) are retried and the
operation succeeds; persistent ones fail with a RegistryUnavailableError (exit 13), never with an
empty answer; an attach interrupted at any request never leaves a referrer that points at a
missing manifest or blob.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from opk_sign.cli.main import main
from opk_sign.errors import EXIT_REGISTRY, RegistryError, RegistryUnavailableError
from opk_sign.http import HTTPConfig
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.manifest import ImageManifest, parse_manifest
from opk_sign.oci.reference import Reference
from tests.integration.registry.conftest import new_client, unique
from tests.integration.registry.consistency import dangling_referrers
from tests.services.faultproxy import Fault, FaultKind, FaultProxy
from tests.services.images import push_sample_image
from tests.services.registries import Registry, free_port

pytestmark = pytest.mark.integration

SIGNATURE = "application/vnd.dev.opk-sign.test.signature.v1+json"
BUNDLE = "application/vnd.dev.opk-sign.test.bundle.v1+json"
#: One retry, so that a persistent fault fails fast.
ONE_RETRY = HTTPConfig(
    connect_timeout=2.0, read_timeout=5.0, retries=1, backoff_factor=0.02, backoff_max=0.1
)


@pytest.fixture
def image(registry: Registry, proxy: FaultProxy) -> Iterator[tuple[str, Descriptor]]:
    """A multi-arch image behind the proxy (pushed before any fault is set)."""
    ref = f"{proxy.host}/{unique()}:v1"
    with new_client() as client:
        subject = push_sample_image(client, ref)
    proxy.reset_counts()
    yield ref, subject


TRANSIENT: list[tuple[str, Fault]] = [
    ("reset", Fault("reset")),
    ("500", Fault("status", status=500)),
    ("503", Fault("status", status=503)),
    ("429-retry-after", Fault("status", status=429, retry_after="1")),
    ("slow-response", Fault("delay_response", delay=1.5)),
]


@pytest.mark.parametrize(("name", "template"), TRANSIENT, ids=[t[0] for t in TRANSIENT])
def test_transient_faults_on_every_kind_of_request_are_retried(
    registry: Registry,
    proxy: FaultProxy,
    image: tuple[str, Descriptor],
    name: str,
    template: Fault,
) -> None:
    ref, subject = image
    targets = [
        ("HEAD", "/manifests/v1$"),  # resolve
        ("GET", "/referrers/|/manifests/sha256-"),  # list referrers (API or fallback tag)
        ("HEAD", "/blobs/"),  # does the empty config exist?
        ("POST", "/blobs/uploads/"),  # upload the bundle
        ("PUT", "/manifests/sha256:"),  # store the artifact manifest
        ("GET", "/manifests/sha256:"),  # read the artifact back
    ]
    faults = [
        proxy.add(
            Fault(
                template.kind,
                method=method,
                path=path,
                status=template.status,
                retry_after=template.retry_after,
                delay=template.delay,
            )
        )
        for method, path in targets
    ]
    http = HTTPConfig(
        connect_timeout=2.0, read_timeout=0.75, retries=4, backoff_factor=0.05, backoff_max=0.5
    )
    started = time.monotonic()
    with new_client(http=http) as client:
        assert client.resolve(ref) == subject
        assert client.list_referrers(ref, subject.digest) == []
        stored = client.attach_artifact(ref, subject, SIGNATURE, b"bundle", BUNDLE, {"k": name})
        data, _ = client.get_manifest(ref, stored.digest)
        assert client.list_referrers(ref, subject.digest) == [stored]
    elapsed = time.monotonic() - started
    assert parse_manifest(data).subject == Descriptor(
        subject.media_type, subject.digest, subject.size
    )
    missed = [(f.method, f.path) for f in faults if f.applied != 1]
    assert not missed, f"faults not hit:\n{proxy.describe()}"
    faulted = [s for s in proxy.requests if s.fault is not None]
    assert len(faulted) == len(targets)
    if name == "429-retry-after":
        assert elapsed >= len(targets) * 1.0  # each 429 was waited out for its Retry-After
    assert dangling_referrers(new_client(), ref, subject) == []


@pytest.mark.parametrize("kind", ["status", "reset"])
def test_a_registry_that_keeps_failing_is_an_error_never_no_referrers(
    registry: Registry,
    proxy: FaultProxy,
    image: tuple[str, Descriptor],
    kind: FaultKind,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref, subject = image
    with new_client() as client:
        client.attach_artifact(ref, subject, SIGNATURE, b"there is one", BUNDLE, {})
    proxy.add(Fault(kind, method="GET", path="/referrers/|/manifests/sha256-", times=-1))
    with new_client(http=ONE_RETRY) as client, pytest.raises(RegistryUnavailableError) as failure:
        client.list_referrers(ref, subject.digest)
    assert failure.value.exit_code == EXIT_REGISTRY
    # The CLI says so with exit code 13 (a registry asking for an hour is given up on at once).
    proxy.clear_faults()
    referrers = "/referrers/|/manifests/sha256-"
    proxy.add(Fault("status", status=429, retry_after="3600", path=referrers, times=-1))
    assert main(["inspect", ref]) == EXIT_REGISTRY
    assert "error: referrers of" in capsys.readouterr().err


def test_retry_after_beyond_the_bound_fails_fast(
    registry: Registry, proxy: FaultProxy, image: tuple[str, Descriptor]
) -> None:
    ref, _ = image
    proxy.add(Fault("status", status=429, retry_after="3600", times=-1))
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match="429"):
        new_client().resolve(ref)
    assert time.monotonic() - started < 5


def test_an_unreachable_registry_is_unavailable() -> None:
    ref = f"127.0.0.1:{free_port()}/{unique()}:v1"
    with new_client(http=ONE_RETRY) as client:
        with pytest.raises(RegistryUnavailableError, match="could not reach"):
            client.resolve(ref)
        with pytest.raises(RegistryUnavailableError):
            client.list_referrers(ref, "sha256:" + "0" * 64)


@pytest.mark.parametrize("kind", ["status", "reset"])
def test_an_attach_cut_at_any_request_leaves_no_dangling_referrer(
    registry: Registry, proxy: FaultProxy, image: tuple[str, Descriptor], kind: FaultKind
) -> None:
    """Cut the attach at request k (everything from k on fails) for every k: the attach fails
    with a registry error, and whatever is listed afterwards is complete."""
    ref, subject = image
    with new_client() as first:  # stores the empty config blob, as every later attach finds it
        first.attach_artifact(ref, subject, SIGNATURE, b"first", BUNDLE, {})
    proxy.reset_counts()
    with new_client() as probe:  # how many requests an attach by a fresh client takes here
        probe.attach_artifact(ref, subject, SIGNATURE, b"uncut", BUNDLE, {})
    steps = proxy.count()
    assert steps >= 4
    for k in range(steps):
        proxy.clear_faults()
        proxy.add(Fault(kind, status=503, skip=k, times=-1))
        with new_client(http=ONE_RETRY) as client, pytest.raises(RegistryError):
            client.attach_artifact(ref, subject, SIGNATURE, f"cut {k}".encode(), BUNDLE, {})
        proxy.clear_faults()
        assert dangling_referrers(new_client(), ref, subject) == [], f"cut at request {k}"
    with new_client() as client:
        final = client.attach_artifact(ref, subject, SIGNATURE, b"final", BUNDLE, {})
        assert final in client.list_referrers(ref, subject.digest)


def test_a_faulty_registry_at_every_third_request_still_gets_every_referrer(
    registry: Registry, proxy: FaultProxy, image: tuple[str, Descriptor]
) -> None:
    ref, subject = image
    proxy.add(Fault("status", status=503, every=3, times=-1))
    proxy.add(Fault("reset", every=5, times=-1))
    with new_client() as client:
        stored = [
            client.attach_artifact(ref, subject, SIGNATURE, f"soak {n}".encode(), BUNDLE, {})
            for n in range(6)
        ]
    proxy.clear_faults()
    with new_client() as client:
        listed = client.list_referrers(ref, subject.digest)
    assert sorted(d.digest for d in listed) == sorted(d.digest for d in stored)
    assert sum(1 for s in proxy.requests if s.fault) >= 10
    assert dangling_referrers(new_client(), ref, subject) == []


def test_each_listed_referrer_is_complete(registry: Registry, client: RegistryClient) -> None:
    """The consistency check itself can fail: a referrer whose blob is gone is reported."""
    ref = registry.ref(unique(), "v1")
    subject = push_sample_image(client, ref, ("linux/amd64",), index=False)
    stored = client.attach_artifact(ref, subject, SIGNATURE, b"to be lost", BUNDLE, {})
    assert dangling_referrers(client, ref, subject) == []
    manifest = parse_manifest(client.get_manifest(ref, stored.digest)[0])
    assert isinstance(manifest, ImageManifest)
    blob = manifest.layers[0].digest
    repository = Reference.parse(ref).repository
    deleted = requests.delete(f"http://{registry.host}/v2/{repository}/blobs/{blob}", timeout=10)
    assert deleted.status_code == 202
    assert dangling_referrers(client, ref, subject) == [f"{stored.digest}: blob {blob} missing"]
