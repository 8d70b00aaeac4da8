"""Verification by default where images are pulled (issue 15): a real containerd 2.4.2 runs
``opk-sign-containerd-verifier`` (installed by ``opk-sign install containerd-verifier``) on every
``ctr image pull`` through its transfer service, against loopback registries, with the policy
from a TUF trust repository's mapping.

The world: olareg behind a request-counting proxy (images are named, signed and pulled through
the proxy, so the verifier's registry requests are counted: they carry opk-sign's user agent,
containerd's its own); the GitHub OIDC emulator; a trust repository built with the maintainer
commands, served over HTTP behind a second proxy that can make it unreachable; containerd with
the CRI plugin off, its verifier directory the one ``install`` wrote to. Each test states the
settings it needs (the verifier reads its settings file on every pull).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.admission.settings import parse_settings
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import SigningOptions, sign_image
from opk_sign.trust.repository import DEFAULT_EXPIRY, TrustRepository
from tests.services.containerd import SNAPSHOTTER, Containerd, containerd
from tests.services.faultproxy import Fault, FaultProxy, fault_proxy
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import olareg
from tests.services.tuf import StaticServer, cli, team_repository

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("containerd")]

REPO = "octo-org/app"


@dataclass
class World:
    node: Containerd
    registry: FaultProxy  # the registry as everyone names it
    trust: FaultProxy  # the trust repository as the verifier reaches it
    settings_file: Path
    audit_log: Path
    work: Path  # the trust repository's working directory, keys and where it is published
    keys: Path
    published: Path
    signed: str
    unsigned: str
    impostor: str
    unmapped: str
    half_signed: str
    cached: str  # signed, pulled only by the cache test
    signed_index: str  # an index, it and both platforms signed
    emulator: GitHubOIDCEmulator
    installed: bytes  # the settings file as `install` wrote it

    def ref(self, repository: str, tag: str = "v1") -> str:
        return f"{self.registry.host}/{repository}:{tag}"

    def configure(self, **changes: object) -> None:
        """The verifier's settings as installed, with ``changes``; read on the next pull."""
        base = parse_settings(self.installed, str(self.settings_file))
        changed = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
        self.settings_file.write_text(changed.to_toml())

    def verifier_requests(self) -> list[str]:
        return [
            f"{s.method} {s.path}"
            for s in self.registry.requests
            if s.headers.get("user-agent", "").startswith("opk-sign/")
        ]

    def decisions(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()]


def _push(client: RegistryClient, direct: str, platforms: tuple[str, ...]) -> Descriptor:
    return push_sample_image(
        client, direct, platforms, index=len(platforms) > 1, layers=1, tar_layers=True
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("containerd-verifier")
    trust_dir = base / "trust"
    saved_trust_dir = os.environ.get("OPK_SIGN_TRUST_DIR")
    os.environ["OPK_SIGN_TRUST_DIR"] = str(trust_dir)
    try:
        with (
            olareg(base / "olareg") as running,
            fault_proxy(running.host) as registry,
            GitHubOIDCEmulator(key=generated_op_key(0)) as emulator,
            StaticServer() as server,
            fault_proxy(server.url.removeprefix("http://")) as trust,
            RegistryClient(Keychain.anonymous()) as client,
        ):
            provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
            plain = SigningOptions(provenance=False)

            def sign(ref: str, *, recursive: bool = True) -> None:
                options = dataclasses.replace(plain, recursive=recursive)
                sign_image(ref, provider=provider, client=client, options=options)

            # Pushed straight to the registry, signed and pulled through the proxy: signatures
            # name the repository as the node names it.
            names = {}
            for name, platforms in (
                ("app", ("linux/amd64",)),
                ("cached", ("linux/amd64",)),
                ("unsigned", ("linux/amd64",)),
                ("impostor", ("linux/amd64",)),
                ("half-signed", ("linux/amd64", "linux/arm64")),
                ("multi", ("linux/amd64", "linux/arm64")),
            ):
                _push(client, f"{running.host}/octo-org/{name}:v1", platforms)
                names[name] = f"{registry.host}/octo-org/{name}:v1"
            _push(client, f"{running.host}/elsewhere/app:v1", ("linux/amd64",))
            emulator.set_claims(repository=REPO)
            sign(names["app"])
            sign(names["cached"])
            sign(names["multi"])
            emulator.set_claims(repository="evil-org/app")
            sign(names["impostor"])
            emulator.set_claims(repository=REPO)
            # An index signed, one platform signed, the other not.
            sign(names["half-signed"], recursive=False)
            index = client.walk(names["half-signed"])
            amd64 = next(d for d, _ in index if d.platform and d.platform.architecture == "amd64")
            sign(f"{registry.host}/octo-org/half-signed@{amd64.digest}")

            # The trust repository: octo-org/* on this registry must be signed by octo-org/app.
            node_trust = team_repository(
                base,
                issuer=emulator.issuer,
                repository=REPO,
                pattern=f"{registry.host}/octo-org/*",
                jwks=emulator.jwks(),
            )
            work, keys, published = node_trust.dir, node_trust.keys, node_trust.published
            server.serve(published)
            root = published / "metadata" / "1.root.json"
            assert cli("trust", "init", "--root", root, "--url", f"http://{trust.host}") == 0

            # The node: the verifier installed as an operator would, then containerd.
            verifiers = base / "node" / "bin"
            settings_file = base / "node" / "opk-sign-containerd-verifier.toml"
            audit_log = base / "node" / "audit.jsonl"
            assert (
                cli(
                    "install",
                    "containerd-verifier",
                    "--bin-dir",
                    verifiers,
                    "--config",
                    settings_file,
                    "--cache-dir",
                    base / "node" / "cache",
                    "--audit-log",
                    audit_log,
                    "--issuer",
                    emulator.issuer,
                )
                == 0
            )
            assert sorted(p.name for p in verifiers.iterdir()) == ["opk-sign"]
            # containerd's environment: no trust directory named there (the settings name it),
            # an empty docker config (the node's credentials are the settings' business).
            env = {k: v for k, v in os.environ.items() if k != "OPK_SIGN_TRUST_DIR"}
            env["DOCKER_CONFIG"] = str(base / "docker")
            with containerd(base / "containerd", verifiers, env) as node:
                found = World(
                    node=node,
                    registry=registry,
                    trust=trust,
                    settings_file=settings_file,
                    audit_log=audit_log,
                    work=work,
                    keys=keys,
                    published=published,
                    signed=names["app"],
                    unsigned=names["unsigned"],
                    impostor=names["impostor"],
                    unmapped=f"{registry.host}/elsewhere/app:v1",
                    half_signed=names["half-signed"],
                    cached=names["cached"],
                    signed_index=names["multi"],
                    emulator=emulator,
                    installed=settings_file.read_bytes(),
                )
                yield found
    finally:
        if saved_trust_dir is None:
            os.environ.pop("OPK_SIGN_TRUST_DIR", None)
        else:
            os.environ["OPK_SIGN_TRUST_DIR"] = saved_trust_dir


@pytest.fixture
def node(world: World) -> Iterator[World]:
    """The world with the settings as installed, the trust repository reachable, and no image
    left in containerd (a pull always asks the verifier anyway)."""
    world.configure()
    world.trust.clear_faults()
    yield world
    world.trust.clear_faults()
    for ref in (
        world.signed,
        world.unsigned,
        world.impostor,
        world.unmapped,
        world.half_signed,
        world.cached,
        world.signed_index,
    ):
        world.node.remove(ref)


def refused(world: World, ref: str) -> str:
    pulled = world.node.pull(ref)
    assert pulled.returncode != 0, f"{ref} was pulled:\n{pulled.stdout}"
    assert "image verifier bindir blocked pull" in pulled.stderr, pulled.stderr
    return pulled.stderr


def allowed(world: World, ref: str) -> str:
    pulled = world.node.pull(ref)
    assert pulled.returncode == 0, f"{ref} was refused:\n{pulled.stderr}"
    return pulled.stdout


# --- 1. through containerd -----------------------------------------------------------------------


def test_mapped_unsigned_image_is_refused_with_the_reason(node: World) -> None:
    error = refused(node, node.unsigned)
    # containerd's error carries the verifier's line: what was required, what was found, and
    # the exit code `opk-sign verify` gives (also the verifier's own: containerd shows it).
    assert "verifier opk-sign rejected image (exit code 10)" in error
    assert f"opk-sign refused {node.unsigned}@sha256:" in error
    assert "required: a signature satisfying" in error and f"'{REPO}'" in error
    assert "found: " in error and "no opk-sign signatures" in error
    assert "`opk-sign verify` exits 10 (no-signatures)" in error
    last = node.decisions()[-1]
    assert last["decision"] == "refuse" and last["outcome"] == "no-signatures"
    assert last["rule"] == f"{node.registry.host}/octo-org/*"


def test_mapped_image_signed_by_the_required_repository_is_pulled_and_unpacked(
    node: World,
) -> None:
    out = allowed(node, node.signed)
    assert "extracted" in out  # every layer unpacked
    listed = node.node.ctr("image", "ls", "-q").stdout.split()
    assert node.signed in listed
    snapshots = node.node.ctr("snapshots", "--snapshotter", SNAPSHOTTER, "ls").stdout
    assert "Committed" in snapshots
    last = node.decisions()[-1]
    assert last["decision"] == "allow" and last["outcome"] == "verified"
    assert last["identity"]["repository"] == REPO  # type: ignore[index]


def test_image_signed_by_another_repository_is_refused_naming_the_claim(node: World) -> None:
    error = refused(node, node.impostor)
    assert "exit code 11" in error
    assert "repository" in error and "evil-org/app" in error
    assert "`opk-sign verify` exits 11 (policy-mismatch)" in error


def test_unmapped_image_is_allowed_and_refused_with_unmapped_deny(node: World) -> None:
    allowed(node, node.unmapped)
    assert node.decisions()[-1]["outcome"] == "unmapped"
    node.node.remove(node.unmapped)
    node.configure(unmapped="deny")
    error = refused(node, node.unmapped)
    assert "mapping does not cover the name (unmapped = deny)" in error
    assert "exit code 2" in error


def test_signed_index_is_pulled(node: World) -> None:
    allowed(node, node.signed_index)
    last = node.decisions()[-1]
    assert last["outcome"] == "verified" and "verified: 3 manifests" in str(last["found"])


def test_index_with_one_unsigned_platform_is_refused(node: World) -> None:
    error = refused(node, node.half_signed)
    assert "linux/arm64" in error and "no opk-sign signatures" in error
    assert "exit code 10" in error


# --- 2. the trust repository unreachable ---------------------------------------------------------


def test_unreachable_trust_repository_decides_from_a_fresh_cache(node: World) -> None:
    allowed(node, node.unmapped)  # the trust data is cached (fetched online on this pull)
    node.configure(refresh_interval=0.01, trust_timeout=1.0)  # every pull tries online first
    node.trust.add(Fault("reset", times=-1))
    node.trust.reset_counts()
    time.sleep(0.05)
    error = refused(node, node.unsigned)
    assert "exit code 10" in error  # decided, not "no trust data"
    allowed(node, node.signed)
    assert node.trust.count() > 0  # it did try the repository


def test_expired_trust_cache_refuses_mapped_names(node: World) -> None:
    # The maintainer's timestamp now expires within seconds (time enough for one pull on a
    # busy machine); the verifier fetches it.
    lifetime, window = DEFAULT_EXPIRY["timestamp"], 8
    soon = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=lifetime - window)
    expires_at = time.time() + window
    TrustRepository(node.work, node.keys, clock=lambda: soon).resign(["timestamp"])
    assert cli("trust", "repo", "publish", node.work, node.published) == 0
    node.configure(refresh_interval=0.01, trust_timeout=1.0)
    try:
        allowed(node, node.signed)
        node.node.remove(node.signed)
        node.trust.add(Fault("reset", times=-1))
        time.sleep(max(0.0, expires_at - time.time()) + 1.0)
        error = refused(node, node.signed)  # verified before, and cached: still refused
        assert "exit code 14" in error
        assert "mapped names are refused (fail closed)" in error and "expired" in error
        allowed(node, node.unmapped)  # the mapping last seen says it is not mapped
    finally:
        node.trust.clear_faults()
        # The maintainer's next timestamp: valid again.
        TrustRepository(node.work, node.keys).resign(["timestamp"])
        assert cli("trust", "repo", "publish", node.work, node.published) == 0


# --- 3. the second pull costs no registry request ------------------------------------------------


def test_second_pull_of_the_same_image_makes_no_registry_request(node: World) -> None:
    node.registry.reset_counts()
    allowed(node, node.cached)
    first = node.verifier_requests()
    assert node.decisions()[-1]["cache"] == "miss"
    assert any("/referrers/" in line for line in first), first  # it did verify
    node.node.remove(node.cached)
    node.registry.reset_counts()
    allowed(node, node.cached)
    assert node.verifier_requests() == []
    assert node.registry.count() > 0  # containerd itself resolved the tag: the proxy counts
    last = node.decisions()[-1]
    assert last["decision"] == "allow" and last["cache"] == "hit"


# --- the verifier never outlives containerd's timeout --------------------------------------------


def test_a_registry_that_stops_answering_is_refused_within_the_verifiers_deadline(
    node: World,
) -> None:
    node.configure(timeout=3.0, trust_timeout=1.0)
    # Only the verifier asks for referrers: containerd's own requests pass.
    node.registry.add(Fault("delay_request", path="/referrers/", delay=20.0, times=-1))
    try:
        started = time.monotonic()
        error = refused(node, node.impostor)
        elapsed = time.monotonic() - started
    finally:
        node.registry.clear_faults()
    # opk-sign's own answer (the outcome is unknown: 13), well before containerd's 10 s kill.
    assert "verifier opk-sign rejected image (exit code 13)" in error
    # The settings' 3 s less the verifier's start-up (reading the strictly parsed descriptor).
    assert re.search(r"did not finish within (3|2\.\d+) s", error), error
    assert elapsed < 8.0


def test_a_local_pull_skips_the_verifier(node: World) -> None:
    """What docs/containerd.md says is not covered: `ctr image pull --local` fetches in the
    client, never through the transfer service, so no verifier runs (admission is the second
    line)."""
    before = len(node.decisions())
    local = node.node.ctr(
        "image", "pull", "--local", "--plain-http", "--snapshotter", SNAPSHOTTER, node.unsigned
    )
    assert local.returncode == 0, local.stderr
    assert len(node.decisions()) == before
