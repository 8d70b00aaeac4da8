"""A batch on worker processes (issue 13): the same outcomes, in input order, as one process gives;
results streamed as they are decided; trust data from the parent (the JWKS fetched once, options
chosen per image by a function that cannot travel, key sources and policies that do not pickle);
a worker killed mid-batch costs only its images (13), never a hang; an image's deadline holds in a
worker; SIGINT and SIGTERM stop the workers at once and report what was decided."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from opk_sign import deadline
from opk_sign.bundle import BUNDLE_MEDIA_TYPE, SIGNATURE_ARTIFACT_TYPE, Bundle
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_NOT_FOUND
from opk_sign.http import HTTPConfig, new_session
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import ImageManifest, parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider, JWKSCache
from opk_sign.policy import IdentityPolicy, policy_from_fields
from opk_sign.sign.image import sign_image
from opk_sign.verify import workers
from opk_sign.verify.image import verify_images
from opk_sign.verify.options import VerifyOptions
from opk_sign.verify.outcome import ImageResult, Outcome
from tests.integration.test_verify_batch_stream import GatedProxy
from tests.integration.test_verify_costs import ISSUER_REQUESTS, _no_nagle
from tests.services.faultproxy import Fault
from tests.services.images import push_sample_image
from tests.services.oidc import CountingEmulator, generated_op_key
from tests.services.registries import Registry, olareg

pytestmark = [
    pytest.mark.integration,
    pytest.mark.xdist_group("verify-workers"),
    pytest.mark.skipif(sys.platform != "linux", reason="finds worker processes in /proc"),
]

REPO = "octo-org/octo-repo"
EVIL = "evil-org/evil-repo"
#: Names of one signed manifest: distinct images with one PK token.
TAGS = 24
JOBS = 6
WORKERS = 2


@dataclass(frozen=True)
class Fleet:
    registry: Registry
    proxy: GatedProxy
    emulator: CountingEmulator
    #: Every kind of outcome, interleaved with the signed tags (in this order).
    images: list[str]
    #: The image whose requests the proxy holds while its gate is closed.
    slow: str
    #: Signed images (tags of one manifest), fast.
    fast: list[str]
    other: str  # signed by EVIL

    @property
    def issuer(self) -> str:
        return self.emulator.issuer


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    emulator = CountingEmulator(key=generated_op_key(0))
    with (
        emulator,
        olareg(tmp_path_factory.mktemp("olareg")) as registry,
        RegistryClient(Keychain.anonymous(), fallback_settle=0.0) as client,
    ):
        emulator.set_claims(ref="refs/tags/v1", repository=REPO)
        proxy = GatedProxy(registry.host, r"/v2/octo-org/slow/")
        proxy.start()
        _no_nagle(proxy)
        proxy.add(Fault("status", status=503, path=r"/v2/octo-org/broken/", times=-1))
        provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
        try:
            # Named (and signed) through the proxy: a signature names its repository.
            via = f"{proxy.host}/octo-org"

            def push(name: str, index: bool = False) -> None:
                platforms = ("linux/amd64", "linux/arm64") if index else ("linux/amd64",)
                push_sample_image(
                    client, f"{registry.host}/octo-org/{name}", platforms, index=index
                )

            for name in (
                "app:t0",
                "slow:v1",
                "unsigned:v1",
                "other:v1",
                "broken:v1",
                "replayed:v1",
            ):
                push(name)
            push("multi:v1", index=True)
            for name in ("app:t0", "slow:v1", "multi:v1"):
                sign_image(f"{via}/{name}", provider=provider, client=client)
            emulator.set_claims(repository=EVIL)
            try:
                sign_image(f"{via}/other:v1", provider=provider, client=client)
            finally:
                emulator.set_claims(repository=REPO)
            _replay_signature(client, f"{via}/app:t0", f"{via}/replayed:v1")
            descriptor, data = client.pull_manifest(f"{registry.host}/octo-org/app:t0")
            for n in range(1, TAGS):
                client.put_manifest(
                    f"{registry.host}/octo-org/app", data, descriptor.media_type, tag=f"t{n}"
                )
            fast = [f"{via}/app:t{n}" for n in range(TAGS)]
            kinds = [
                f"{via}/multi:v1",  # verified: index and 2 platforms
                f"{via}/unsigned:v1",  # no-signatures
                f"{via}/other:v1",  # policy-mismatch
                f"{via}/replayed:v1",  # invalid
                f"{via}/broken:v1",  # registry-error (503)
                f"{via}/app:missing",  # not-found
                "Not A Reference!",  # usage-error
            ]
            images = list(fast)
            for n, image in enumerate(kinds):
                images.insert(2 + 3 * n, image)
            yield Fleet(registry, proxy, emulator, images, f"{via}/slow:v1", fast, kinds[2])
        finally:
            proxy.open.set()
            proxy.stop()


def _replay_signature(client: RegistryClient, source: str, victim: str) -> None:
    """The signature of ``source`` attached to ``victim``: valid, but for another image."""
    ref = Reference.parse(source)
    digest = client.resolve(ref).digest
    (referrer,) = client.list_referrers(ref, digest, SIGNATURE_ARTIFACT_TYPE)
    data, _ = client.get_manifest(ref, referrer.digest)
    manifest = parse_manifest(data)
    assert isinstance(manifest, ImageManifest)
    bundle = Bundle.from_json(client.get_blob(ref, manifest.layers[0].digest))
    target = Reference.parse(victim)
    client.attach_artifact(
        target,
        client.resolve(target),
        SIGNATURE_ARTIFACT_TYPE,
        bundle.to_json(),
        BUNDLE_MEDIA_TYPE,
        {},
    )


def options(fleet: Fleet, **changes: Any) -> VerifyOptions:
    policy = policy_from_fields({"issuer": fleet.issuer, "repository": REPO})
    made = VerifyOptions(policy=policy, keys=JWKSCache(), issuers=frozenset({fleet.issuer}))
    return replace(made, **changes)


#: Few retries: a 503 or a refused connection is the outcome sought, sooner.
HTTP = HTTPConfig(retries=1, backoff_factor=0.01)


def run(
    fleet: Fleet, images: list[str], opts: Any, *, workers: int, **kwargs: Any
) -> list[ImageResult]:
    with RegistryClient(Keychain.anonymous(), HTTP) as client:
        return list(
            verify_images(images, opts, client=client, jobs=JOBS, workers=workers, **kwargs)
        )


def documents(results: list[ImageResult]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in results]


def worker_pids(parent: int) -> list[int]:
    """The worker processes of ``parent`` (its children running the worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"opk_sign.verify.workers" in cmdline:
            found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # exited (a zombie until reaped)


# --- the same outcomes, in order ----------------------------------------------------------------


@pytest.fixture
def workers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every image on a worker process: this process only hands them out."""
    monkeypatch.setattr(workers, "SHARE_HERE", False)


@pytest.mark.parametrize("share_here", [True, False], ids=["sharing", "workers-only"])
def test_workers_give_every_outcome_as_one_process_does_in_input_order(
    fleet: Fleet, share_here: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "SHARE_HERE", share_here)
    keys = JWKSCache()
    fleet.emulator.reset_counts()
    in_workers = run(fleet, fleet.images, options(fleet, keys=keys), workers=WORKERS)
    assert fleet.emulator.requests == ISSUER_REQUESTS  # the parent's JWKS cache, once
    assert keys.fetches == 1
    in_threads = run(fleet, fleet.images, options(fleet), workers=0)
    assert [r.image for r in in_workers] == fleet.images
    assert documents(in_workers) == documents(in_threads)
    assert {r.outcome for r in in_workers} == {
        Outcome.VERIFIED,
        Outcome.NO_SIGNATURES,
        Outcome.POLICY_MISMATCH,
        Outcome.INVALID,
        Outcome.REGISTRY_ERROR,
        Outcome.NOT_FOUND,
        Outcome.USAGE_ERROR,
    }
    multi = next(r for r in in_workers if "multi" in r.image)
    assert multi.verified and len(multi.manifests) == 3


def test_the_cli_prints_the_same_lines_with_workers_and_without(
    fleet: Fleet,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no stray credentials
    listing = tmp_path / "images.txt"
    images = [image for image in fleet.images if "broken" not in image]  # retried: slow
    listing.write_text("".join(f"{image}\n" for image in images))
    outputs = []
    for count in ("2", "0"):
        argv = ["verify", "--images-from", str(listing), "--issuer", fleet.issuer]
        argv += ["--repository", REPO, "--no-trust-repo", "-o", "json"]
        code = main([*argv, "--jobs", str(JOBS), "--workers", count])
        assert code == EXIT_NOT_FOUND  # the worst of them
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert [json.loads(line)["image"] for line in outputs[0].splitlines()] == images


def test_results_stream_in_order_while_a_slow_image_is_held(fleet: Fleet) -> None:
    images = [*fleet.fast[:10], fleet.slow, *fleet.fast[10:20]]
    got: list[ImageResult] = []
    fleet.proxy.waiting.clear()
    fleet.proxy.open.clear()
    try:

        def consume() -> None:
            with RegistryClient(Keychain.anonymous()) as client:
                got.extend(
                    verify_images(images, options(fleet), client=client, jobs=JOBS, workers=2)
                )

        consumer = threading.Thread(target=consume)
        consumer.start()
        assert fleet.proxy.waiting.wait(60)
        deadline = time.monotonic() + 60
        while len(got) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        before = len(got)  # everything up to the held image, nothing past it
    finally:
        fleet.proxy.open.set()
    consumer.join(60)
    assert before == 10
    assert [r.image for r in got] == images and all(r.verified for r in got)


def test_an_index_and_its_platforms_check_their_one_token_once(fleet: Fleet) -> None:
    opts = options(fleet)
    (result,) = run(fleet, [fleet.images[2]], opts, workers=0)
    assert "multi" in result.image and result.verified and len(result.manifests) == 3
    cache = opts.pktoken_cache
    assert (cache.misses, cache.hits) == (1, 2)  # one CIC + GQ256 check for three signatures


# --- trust from the parent ----------------------------------------------------------------------


class LockedKeys:
    """A key source that cannot travel (it holds a lock): asked through the parent."""

    def __init__(self, keys: JWKSCache) -> None:
        self.keys = keys
        self.lock = threading.Lock()
        self.asked = 0

    def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Mapping[str, Any]:
        with self.lock:
            self.asked += 1
        return self.keys.op_key(issuer, kid, issued_at)


@pytest.mark.usefixtures("workers_only")
def test_options_chosen_per_image_by_a_function_and_keys_asked_of_the_parent(
    fleet: Fleet,
) -> None:
    keys = LockedKeys(JWKSCache())
    ours = options(fleet, keys=keys)
    theirs = replace(ours, policy=policy_from_fields({"issuer": fleet.issuer, "repository": EVIL}))
    chosen: list[str] = []

    def choose(image: str) -> VerifyOptions:  # a closure: it never leaves this process
        chosen.append(image)
        return theirs if image == fleet.other else ours

    images = [*fleet.fast[:8], fleet.other]
    results = run(fleet, images, choose, workers=2)
    assert all(r.verified for r in results), [r.message for r in results if not r.verified]
    assert sorted(chosen) == sorted(images)  # each image's options chosen here, once
    assert keys.asked >= 2  # two tokens (ours, evil's), looked up here for the workers
    assert keys.keys.fetches == 1


class LockedPolicy:
    """An identity policy that cannot travel: the images it decides are verified here."""

    def __init__(self, policy: IdentityPolicy) -> None:
        self.policy = policy
        self.lock = threading.Lock()
        self.calls = 0

    def verify(self, claims: Mapping[str, Any]) -> None:
        with self.lock:
            self.calls += 1
        self.policy.verify(claims)

    def describe(self) -> str:
        return self.policy.describe()


@pytest.mark.usefixtures("workers_only")
def test_options_that_cannot_travel_are_verified_here(fleet: Fleet) -> None:
    base = options(fleet)
    policy = LockedPolicy(base.policy)
    results = run(fleet, fleet.fast[:6], replace(base, policy=policy), workers=2)
    assert all(r.verified for r in results), [r.message for r in results]
    assert policy.calls >= 6  # in this process


# --- failures -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("workers_only")
def test_a_killed_worker_costs_only_its_images(fleet: Fleet) -> None:
    images = [fleet.slow, *fleet.fast]
    got: list[ImageResult] = []
    fleet.proxy.waiting.clear()
    fleet.proxy.open.clear()
    try:

        def consume() -> None:
            with RegistryClient(Keychain.anonymous()) as client:
                got.extend(verify_images(images, options(fleet), client=client, jobs=4, workers=2))

        consumer = threading.Thread(target=consume)
        consumer.start()
        assert fleet.proxy.waiting.wait(60)
        pids = worker_pids(os.getpid())
        assert len(pids) == 2, pids
        for pid in pids:  # which one holds the slow image does not matter: both go
            os.kill(pid, signal.SIGKILL)
        consumer.join(90)
        assert not consumer.is_alive(), "the batch hung on its dead workers"
    finally:
        fleet.proxy.open.set()
    assert [r.image for r in got] == images
    slow = got[0]
    assert slow.outcome is Outcome.REGISTRY_ERROR and slow.exit_code == 13
    assert "worker process verifying it was killed by SIGKILL" in slow.message
    assert "the outcome is unknown" in slow.message
    lost = [r for r in got if not r.verified]
    # At most the images the two workers held (twice their threads each); the rest verified
    # on their replacements.
    assert len(lost) <= 2 * 4, [r.message for r in lost]
    assert all(r.outcome is Outcome.REGISTRY_ERROR for r in lost)
    assert sum(r.verified for r in got) >= len(images) - 8


@pytest.mark.usefixtures("workers_only")
def test_the_run_deadline_holds_in_a_worker(fleet: Fleet) -> None:
    images = [*fleet.fast[:4], fleet.slow, *fleet.fast[4:8]]
    fleet.proxy.open.clear()
    try:
        started = time.monotonic()
        with deadline.within(3.0, "the run"):
            results = run(fleet, images, options(fleet), workers=2)
        took = time.monotonic() - started
    finally:
        fleet.proxy.open.set()
    slow = results[4]
    assert slow.outcome is Outcome.REGISTRY_ERROR, slow.message
    assert "the run did not finish within 3" in slow.message
    assert took < 30


@pytest.mark.usefixtures("workers_only")
def test_an_image_deadline_holds_in_a_worker(fleet: Fleet) -> None:
    images = [*fleet.fast[:4], fleet.slow, *fleet.fast[4:8]]
    fleet.proxy.open.clear()
    try:
        started = time.monotonic()
        results = run(fleet, images, options(fleet), workers=2, image_timeout=2.0)
        took = time.monotonic() - started
    finally:
        fleet.proxy.open.set()
    slow = results[4]
    assert slow.outcome is Outcome.REGISTRY_ERROR, slow.message
    assert "did not finish within 2" in slow.message
    assert all(r.verified for i, r in enumerate(results) if i != 4)
    assert took < 30


def test_an_unreachable_issuer_is_a_trust_error_for_each_image(fleet: Fleet) -> None:
    """Images signed through an issuer that has since gone away: the parent's JWKS cache
    remembers the failure, and every image, whichever worker has it, reports it (14)."""
    via = f"{fleet.proxy.host}/octo-org"
    with (
        CountingEmulator(key=generated_op_key(1)) as gone_issuer,
        RegistryClient(Keychain.anonymous(), fallback_settle=0.0) as client,
    ):
        gone_issuer.set_claims(ref="refs/tags/v1", repository=REPO)
        issuer = gone_issuer.issuer
        pushed = push_sample_image(
            client, f"{fleet.registry.host}/octo-org/gone:t0", ("linux/amd64",), index=False
        )
        provider = GitHubActionsProvider(env=gone_issuer.env(), issuer=issuer)
        sign_image(f"{via}/gone:t0", provider=provider, client=client)
        _, data = client.pull_manifest(f"{fleet.registry.host}/octo-org/gone:t0")
        for n in range(1, 8):
            client.put_manifest(
                f"{fleet.registry.host}/octo-org/gone", data, pushed.media_type, tag=f"t{n}"
            )
    images = [f"{via}/gone:t{n}" for n in range(8)]
    policy = policy_from_fields({"issuer": issuer, "repository": REPO})
    opts = VerifyOptions(
        policy=policy, keys=JWKSCache(new_session(HTTP)), issuers=frozenset({issuer})
    )
    results = run(fleet, images, opts, workers=2)
    in_threads = run(fleet, images, replace(opts, keys=JWKSCache(new_session(HTTP))), workers=0)
    assert documents(results) == documents(in_threads)
    assert {r.outcome for r in results} == {Outcome.TRUST_ERROR}
    assert "could not fetch" in results[0].message


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_stops_the_workers_and_reports_what_was_decided(
    fleet: Fleet, tmp_path: Path, signum: int, code: int
) -> None:
    listing = tmp_path / "images.txt"
    images = [*fleet.fast[:10], fleet.slow, *fleet.fast[10:]]
    listing.write_text("".join(f"{image}\n" for image in images))
    command = [sys.executable, "-m", "opk_sign.cli", "verify", "--images-from", str(listing)]
    command += ["--issuer", fleet.issuer, "--repository", REPO, "--no-trust-repo", "-o", "json"]
    command += ["--jobs", "6", "--workers", "3", "--vsa", str(tmp_path / "vsa.jsonl")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DOCKER_CONFIG": str(tmp_path)}
    fleet.proxy.waiting.clear()
    fleet.proxy.open.clear()
    try:
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        ) as proc:
            assert proc.stdout is not None
            seen = [proc.stdout.readline() for _ in range(10)]
            assert fleet.proxy.waiting.wait(60)
            pids = worker_pids(proc.pid)
            assert len(pids) == 2, pids  # the third process is the run's own
            interrupted = time.monotonic()
            proc.send_signal(signum)  # to the parent alone, as `kill` does
            rest, err = proc.communicate(timeout=60)
            took = time.monotonic() - interrupted
    finally:
        fleet.proxy.open.set()
    assert proc.returncode == code, err
    assert "Traceback" not in err and "interrupted" in err, err
    decided = [json.loads(line) for line in seen + rest.splitlines() if line.strip()]
    assert [d["image"] for d in decided] == images[:10]  # up to the held image, all reported
    assert all(d["verified"] for d in decided)
    assert len((tmp_path / "vsa.jsonl").read_text().splitlines()) == 10
    assert took < 10  # not waiting for the held image, wherever it was
    for pid in pids:
        for _ in range(50):
            if gone(pid):
                break
            time.sleep(0.1)
        assert gone(pid), f"worker {pid} outlived the interrupted run"
