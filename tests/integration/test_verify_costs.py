"""What verifying an image costs in requests (issue 5, must-show item 5; bench/RESULTS.md).

Counted: every HTTP request the registry receives while an image is verified, through a
request-counting proxy in front of it; and separately every request the OIDC issuer (the GitHub
OIDC emulator) answers. The loopback registries here are anonymous, so no token requests exist to
count: on a registry with token auth a fresh client adds its one-time challenge and token request
per repository, which is not part of the image's cost and not counted here.

Bounds (the verifier's aim: at most 4 registry requests for a single-platform image signed once):

- registry with the referrers API (olareg): 4, fresh client or warm: the manifest, its referrers,
  the signature's artifact manifest, the bundle blob;
- registry without it (distribution 2.8): 4 with a warm client (the fallback tag replaces the
  referrers call), 5 with a fresh one: the first referrers call of a run is the API probe (404);
- the issuer: discovery + JWKS once per run (2 requests), however many images are verified;
- a batch (20 images, 8 at once): 4 per image, plus on distribution the referrers API probes of
  the images that start before the first probe has answered (at most one per thread);
- the same batch on worker processes (issue 13): the same counts; the issuer is asked by the
  parent, once per run, for all workers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from socketserver import StreamRequestHandler
from typing import Any, cast

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_OK
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider, JWKSCache
from opk_sign.policy import policy_from_fields
from opk_sign.sign.image import sign_image
from opk_sign.verify.image import verify_image, verify_images
from opk_sign.verify.options import VerifyOptions
from tests.services.faultproxy import FaultProxy, fault_proxy
from tests.services.images import push_sample_image
from tests.services.oidc import CountingEmulator, generated_op_key
from tests.services.registries import Registry, distribution, olareg
from tests.unit.test_startup_imports import NOT_FOR_A_PLAIN_VERIFY, imported, loaded

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("verify-costs")]

REPO = "octo-org/octo-repo"
BATCH = 20
#: Images verified at once in the batch tests: enough threads to race for the JWKS (the default,
#: 16, only makes this module slower: the counting proxy runs in the same interpreter).
BATCH_JOBS = 8
#: Registry requests to verify a single-platform image signed once, the run's one-time costs paid.
MAX_REQUESTS_PER_IMAGE = 4
#: Only for an index with BuildKit's attestations, or a policy with source requirements.
BUILDKIT = ("opk_sign.payloads.buildkit", "opk_sign.verify.attestations", "opk_sign.oci.buildkit")
#: The one-time cost on a registry without the referrers API: the probe that finds it missing.
REFERRERS_PROBE = 1
ISSUER_REQUESTS = ["GET /.well-known/openid-configuration", "GET /.well-known/jwks"]


@dataclass(frozen=True)
class Signed:
    registry: Registry
    proxy: FaultProxy
    images: list[str]  # NAME@sha256:..., named (and signed) through the proxy


@pytest.fixture(scope="module")
def emulator() -> Iterator[CountingEmulator]:
    running = CountingEmulator(key=generated_op_key(0))
    with running:
        running.set_claims(repository=REPO)
        yield running


@pytest.fixture(scope="module", params=["olareg", "distribution"])
def signed(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    emulator: CountingEmulator,
) -> Iterator[Signed]:
    """BATCH single-platform images, each signed once (signature + SLSA provenance)."""
    start = olareg if request.param == "olareg" else distribution
    provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
    jwks = JWKSCache()
    with (
        start(tmp_path_factory.mktemp(request.param)) as registry,
        fault_proxy(registry.host) as proxy,
        RegistryClient(Keychain.anonymous(), fallback_settle=0.0) as client,
    ):
        _no_nagle(proxy)

        def push_and_sign(i: int) -> str:
            # Pushed past the proxy, signed through it: a signature names the repository as the
            # signer saw it, and the images are verified through the proxy.
            ref = f"{registry.host}/octo-org/app-{i}:v1"
            pushed = push_sample_image(client, ref, ("linux/amd64",), index=False, layers=1)
            image = f"{proxy.host}/octo-org/app-{i}@{pushed.digest}"
            sign_image(image, provider=provider, client=client, jwks=jwks)
            return image

        with ThreadPoolExecutor(max_workers=8) as pool:
            images = list(pool.map(push_and_sign, range(BATCH)))
        yield Signed(registry, proxy, images)


def _no_nagle(proxy: FaultProxy) -> None:
    """TCP_NODELAY on this proxy's connections (its handler class is its own).

    The proxy answers in two writes, headers then body; with Nagle's algorithm on, every request
    after the first on a kept-alive connection waits for the client's delayed ACK (~40 ms), which
    made this module 2x slower without changing a single count.
    """
    handler = cast("type[StreamRequestHandler]", proxy._server.RequestHandlerClass)
    handler.disable_nagle_algorithm = True


def options(emulator: GitHubOIDCEmulator) -> VerifyOptions:
    policy = policy_from_fields({"issuer": emulator.issuer, "repository": REPO})
    return VerifyOptions(policy=policy, keys=JWKSCache(), issuers=frozenset({emulator.issuer}))


def requests_of(proxy: FaultProxy) -> list[str]:
    """``METHOD kind`` per request: the digests and names abstracted away."""
    out = []
    for seen in proxy.requests:
        path = seen.path.split("?", 1)[0]
        if re.search(r"/manifests/sha256:[0-9a-f]{64}$", path):
            kind = "manifest by digest"
        elif re.search(r"/manifests/sha256-[0-9a-f]{64}$", path):
            kind = "fallback referrers tag"
        elif "/referrers/" in path:
            kind = f"referrers API ({seen.status})"
        elif "/blobs/" in path:
            kind = "blob"
        else:
            kind = path
        out.append(f"{seen.method} {kind}")
    return out


def verify_counted(
    signed: Signed, emulator: CountingEmulator, client: RegistryClient, image: str, opts: Any
) -> tuple[list[str], list[str]]:
    signed.proxy.reset_counts()
    emulator.reset_counts()
    result = verify_image(client, image, opts)
    assert result.verified, result.message
    return requests_of(signed.proxy), emulator.requests


# --- one image ----------------------------------------------------------------------------------


def test_one_image_fresh_client(signed: Signed, emulator: CountingEmulator) -> None:
    """A fresh client and JWKS cache: what one `opk-sign verify IMAGE` run sends."""
    with RegistryClient(Keychain.anonymous()) as client:
        registry, issuer = verify_counted(
            signed, emulator, client, signed.images[0], options(emulator)
        )
    print(f"\n{signed.registry.kind}, fresh client: {len(registry)} requests: {registry}")
    if signed.registry.referrers_api:
        assert registry == [
            "GET manifest by digest",
            "GET referrers API (200)",
            "GET manifest by digest",  # the signature's artifact manifest
            "GET blob",  # the bundle
        ]
        assert len(registry) <= MAX_REQUESTS_PER_IMAGE
    else:
        assert registry == [
            "GET manifest by digest",
            "GET referrers API (404)",  # the once-per-run probe
            "GET fallback referrers tag",
            "GET manifest by digest",
            "GET blob",
        ]
        assert len(registry) <= MAX_REQUESTS_PER_IMAGE + REFERRERS_PROBE
    assert issuer == ISSUER_REQUESTS


def test_one_image_warm_client(signed: Signed, emulator: CountingEmulator) -> None:
    """A client that has verified another image: the per-image cost in a batch."""
    with RegistryClient(Keychain.anonymous()) as client:
        opts = options(emulator)
        assert verify_image(client, signed.images[1], opts).verified
        registry, issuer = verify_counted(signed, emulator, client, signed.images[0], opts)
    print(f"\n{signed.registry.kind}, warm client: {len(registry)} requests: {registry}")
    lookup = (
        "GET referrers API (200)"
        if signed.registry.referrers_api
        else ("GET fallback referrers tag")
    )
    assert registry == ["GET manifest by digest", lookup, "GET manifest by digest", "GET blob"]
    assert len(registry) <= MAX_REQUESTS_PER_IMAGE
    assert issuer == []  # the JWKS is fetched once per run


def test_one_image_through_the_cli(
    signed: Signed,
    emulator: CountingEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no stray credentials
    signed.proxy.reset_counts()
    emulator.reset_counts()
    code = main(["verify", signed.images[0], "--issuer", emulator.issuer, "--repository", REPO])
    assert code == EXIT_OK, capsys.readouterr().out
    registry = requests_of(signed.proxy)
    probe = 0 if signed.registry.referrers_api else REFERRERS_PROBE
    assert len(registry) <= MAX_REQUESTS_PER_IMAGE + probe, registry
    assert emulator.requests == ISSUER_REQUESTS


def test_one_image_in_a_fresh_process_loads_only_the_verifier(
    signed: Signed, emulator: CountingEmulator, tmp_path: Path
) -> None:
    """The one-shot command (issue 13, start-up): a plain image's verification in a new process
    loads neither the BuildKit attestation checks, nor TUF, the timestamp code, the
    transparency log or YAML."""
    argv = ["verify", signed.images[0], "--issuer", emulator.issuer, "--repository", REPO]
    code, modules, out = imported(argv, tmp_path, DOCKER_CONFIG=str(tmp_path))
    assert code == EXIT_OK, out
    assert loaded(modules, (*NOT_FOR_A_PLAIN_VERIFY, *BUILDKIT)) == []
    assert {"opk_sign.pktoken.gq", "opk_sign.oci.client"} <= modules  # it did verify


# --- a batch ------------------------------------------------------------------------------------


def test_batch_fetches_the_jwks_once(
    signed: Signed,
    emulator: CountingEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{image}\n" for image in signed.images))
    signed.proxy.reset_counts()
    emulator.reset_counts()
    policy = ["--issuer", emulator.issuer, "--repository", REPO]
    jobs = ["--jobs", str(BATCH_JOBS)]
    code = main(["verify", "--images-from", str(listing), *policy, "--output", "json", *jobs])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert out.count('"verified": true') == BATCH
    assert emulator.requests == ISSUER_REQUESTS
    registry = requests_of(signed.proxy)
    probes = registry.count("GET referrers API (404)")
    print(
        f"\n{signed.registry.kind}: {BATCH} images, {len(registry)} registry requests "
        f"({len(registry) / BATCH:.2f} per image, {probes} referrers API probes)"
    )
    # Without the referrers API, the images verified at once before the first probe answers
    # each probe (at most --jobs of them); from then on every image costs 4.
    assert probes <= (0 if signed.registry.referrers_api else BATCH_JOBS)
    assert len(registry) - probes <= MAX_REQUESTS_PER_IMAGE * BATCH


def test_library_batch_fetches_the_jwks_once(signed: Signed, emulator: CountingEmulator) -> None:
    keys = JWKSCache()
    opts = replace(options(emulator), keys=keys)
    emulator.reset_counts()
    with RegistryClient(Keychain.anonymous()) as client:
        results = list(verify_images(signed.images, opts, client=client, jobs=BATCH_JOBS))
    assert all(r.verified for r in results), [r.message for r in results if not r.verified]
    assert keys.fetches == 1
    assert emulator.requests == ISSUER_REQUESTS


# --- a batch on worker processes (issue 13) ------------------------------------------------------

#: Worker processes forced on the batch (20 images: too few for the default to start any).
BATCH_WORKERS = 2


def test_batch_on_worker_processes_costs_the_same(
    signed: Signed,
    emulator: CountingEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The JWKS is fetched by the parent, once per run, for every worker; each worker's client
    costs what one process's does: 4 requests per image, the probe on distribution at most
    once per image verified at once (each worker learns the API is missing for itself)."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{image}\n" for image in signed.images))
    signed.proxy.reset_counts()
    emulator.reset_counts()
    policy = ["--issuer", emulator.issuer, "--repository", REPO]
    jobs = ["--jobs", str(BATCH_JOBS), "--workers", str(BATCH_WORKERS)]
    code = main(["verify", "--images-from", str(listing), *policy, "--output", "json", *jobs])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert [json.loads(line)["image"] for line in out.splitlines()] == signed.images
    assert emulator.requests == ISSUER_REQUESTS
    registry = requests_of(signed.proxy)
    probes = registry.count("GET referrers API (404)")
    print(
        f"\n{signed.registry.kind}, {BATCH_WORKERS} worker processes: {BATCH} images, "
        f"{len(registry)} registry requests ({probes} referrers API probes)"
    )
    assert probes <= (0 if signed.registry.referrers_api else BATCH_JOBS)
    assert len(registry) - probes <= MAX_REQUESTS_PER_IMAGE * BATCH


def test_library_batch_on_worker_processes_fetches_the_jwks_once(
    signed: Signed, emulator: CountingEmulator
) -> None:
    keys = JWKSCache()
    opts = replace(options(emulator), keys=keys)
    emulator.reset_counts()
    signed.proxy.reset_counts()
    with RegistryClient(Keychain.anonymous()) as client:
        results = list(
            verify_images(
                signed.images, opts, client=client, jobs=BATCH_JOBS, workers=BATCH_WORKERS
            )
        )
    assert [r.image for r in results] == signed.images
    assert all(r.verified for r in results), [r.message for r in results if not r.verified]
    assert keys.fetches == 1
    assert emulator.requests == ISSUER_REQUESTS
    registry = requests_of(signed.proxy)
    probes = registry.count("GET referrers API (404)")
    assert len(registry) - probes <= MAX_REQUESTS_PER_IMAGE * BATCH
