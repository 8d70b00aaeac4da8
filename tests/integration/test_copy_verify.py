"""Signatures that travel (issue 12, item 1): an image signed in one repository, copied to another
repository and to another registry (distribution and olareg both ways), verifies there when the
verifier names where it was signed (``--signed-repository``, a policy file's
``signed-repository``, a mapping rule's ``signedRepositories``, or a mirror rewrite), and only
then: a signature made for a third repository nobody named stays 12."""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_INVALID_SIGNATURE, EXIT_OK
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import sign_image
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, distribution, olareg
from tests.services.tuf import StaticServer

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("copy-verify")]

REPO = "octo-org/app"
PROVENANCE = "https://slsa.dev/provenance/v1"


@dataclass(frozen=True)
class World:
    source: Registry
    other: Registry
    issuer: str
    signed: str  # source/octo-org/app:v1, a two-platform index signed by REPO
    third: str  # source/octo-org/third:v1, signed by REPO too, for another repository
    stamp: str

    def name(self, image: str) -> str:
        return Reference.parse(image).name


@pytest.fixture(scope="module")
def emulator() -> Iterator[GitHubOIDCEmulator]:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as running:
        running.set_claims(repository=REPO, ref="refs/tags/v1")
        yield running


@pytest.fixture(scope="module", params=["olareg-to-distribution", "distribution-to-olareg"])
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    emulator: GitHubOIDCEmulator,
) -> Iterator[World]:
    first, second = (
        (olareg, distribution)
        if request.param.startswith("olareg")
        else (
            distribution,
            olareg,
        )
    )
    with (
        first(tmp_path_factory.mktemp("source")) as source,
        second(tmp_path_factory.mktemp("other")) as other,
        RegistryClient(Keychain.anonymous()) as client,
    ):
        signed = source.ref("octo-org/app", "v1")
        third = source.ref("octo-org/third", "v1")
        push_sample_image(client, signed, ("linux/amd64", "linux/arm64/v8"), index=True)
        push_sample_image(client, third, ("linux/amd64",), index=False)
        provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
        sign_image(signed, provider=provider, client=client)
        sign_image(third, provider=provider, client=client)
        yield World(source, other, emulator.issuer, signed, third, request.param)


@pytest.fixture(autouse=True)
def _env(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPK_SIGN_OIDC_ISSUER", world.issuer)
    monkeypatch.setenv("OPK_SIGN_TRUST_DIR", str(tmp_path / "no-trust"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))


def cli(*argv: object) -> int:
    return main([str(a) for a in argv])


def copy(src: str, dst: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Copy through the CLI; the verify command it prints."""
    capsys.readouterr()
    assert cli("copy", src, dst) == EXIT_OK
    out = capsys.readouterr().out
    (command,) = [line.strip() for line in out.splitlines() if "opk-sign verify" in line]
    return command


def destinations(world: World) -> dict[str, str]:
    return {
        "another repository": world.source.ref("mirror/app", "v1"),
        "another registry": world.other.ref("octo-org/app", "v1"),
    }


@pytest.mark.parametrize("where", ["another repository", "another registry"])
def test_a_copy_verifies_when_told_where_it_was_signed(
    world: World, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = destinations(world)[where]
    command = copy(world.signed, destination, capsys)
    source = world.name(world.signed)
    # Replay protection stays: the signatures name the source repository.
    assert cli("verify", destination, "--repository", REPO) == EXIT_INVALID_SIGNATURE
    out = capsys.readouterr().out
    assert "replayed from another repository" in out
    assert f"--signed-repository {source}" in out  # the hint names the flag and the value
    # Named, it verifies, index and every platform, provenance included.
    flags = ("--repository", REPO, "--signed-repository", source)
    assert cli("verify", destination, *flags) == EXIT_OK
    assert cli("verify", destination, *flags, "--attestation", PROVENANCE) == EXIT_OK
    # The command `copy` printed works as printed.
    assert command.startswith("opk-sign verify ") and f"--signed-repository {source}" in command
    capsys.readouterr()
    assert main(shlex.split(command)[1:]) == EXIT_OK, capsys.readouterr().out


def test_the_signer_is_still_checked_on_a_copy(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = world.source.ref("mirror/app-policy", "v1")
    copy(world.signed, destination, capsys)
    flags = ("--signed-repository", world.name(world.signed))
    assert cli("verify", destination, *flags, "--repository", "evil-org/app") == 11


def test_a_signature_for_an_unnamed_third_repository_stays_refused(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = world.other.ref("mirror/third", "v1")
    copy(world.third, destination, capsys)
    named = ("--repository", REPO, "--signed-repository", world.name(world.signed))
    assert cli("verify", destination, *named) == EXIT_INVALID_SIGNATURE
    assert "replayed from another repository" in capsys.readouterr().out
    assert (
        cli("verify", destination, *named, "--signed-repository", world.name(world.third))
        == EXIT_OK
    )


def test_a_policy_file_names_the_signed_repository(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = world.other.ref("octo-org/app-from-file", "v1")
    copy(world.signed, destination, capsys)
    policy = tmp_path / "policy.yml"
    policy.write_text(f"repository: {REPO}\nsigned-repository: {world.name(world.signed)}\n")
    assert cli("verify", destination, "--policy", policy) == EXIT_OK
    policy.write_text(f"repository: {REPO}\nsigned-repository: [{world.name(world.third)}]\n")
    assert cli("verify", destination, "--policy", policy) == EXIT_INVALID_SIGNATURE


def test_pr_check_takes_the_signed_repository(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = world.other.ref("octo-org/app-pr", "v1")
    copy(world.signed, destination, capsys)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {destination}\nRUN true\n")
    base = ("pr-check", "--dockerfile", dockerfile, "--repository", REPO)
    assert cli(*base) == EXIT_INVALID_SIGNATURE
    assert cli(*base, "--signed-repository", world.name(world.signed)) == EXIT_OK


# --- through the trust repository's mapping ------------------------------------------------------


def test_mapping_rewrites_and_signed_repositories(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    # The other registry mirrors the source's octo-org/* (a rewrite), and copies in mirror/*
    # have a rule naming the repository they were signed in.
    mirror = world.other.ref("octo-org/app", "v1")
    copied = world.source.ref(f"mirror/app-{stamp}", "v1")
    third = world.source.ref(f"mirror/third-{stamp}", "v1")
    copy(world.signed, mirror, capsys)
    copy(world.signed, copied, capsys)
    copy(world.third, third, capsys)
    work, keys, out = tmp_path / "repo", tmp_path / "keys", tmp_path / "published"
    team = tmp_path / "team.json"
    team.write_text(json.dumps({"issuer": world.issuer, "repository": REPO}))
    source_app = world.name(world.signed)
    monkeypatch.setenv("OPK_SIGN_TRUST_DIR", str(tmp_path / "trust"))
    with StaticServer() as server:
        for step in (
            ("init", work),
            ("set-policy", work, "team", team),
            (
                "map",
                work,
                f"{world.source.host}/octo-org/*",
                "team",
                "--rewrite",
                f"{world.other.host}/octo-org/*={world.source.host}/octo-org/*",
            ),
            (
                "map",
                work,
                f"{world.source.host}/mirror/*",
                "team",
                "--signed-repository",
                source_app,
            ),
            ("publish", work, out),
        ):
            extra = () if step[0] == "publish" else ("--keys-dir", keys)
            assert cli("trust", "repo", *step, *extra) == 0, step
        server.serve(out)
        root = out / "metadata" / "1.root.json"
        assert cli("trust", "init", "--root", root, "--url", server.url) == 0
        capsys.readouterr()
        # The mirror's copy: the rewrite gives the canonical name the signatures name.
        assert cli("verify", mirror) == EXIT_OK
        # A copy in mirror/*: the rule's signedRepositories names where it was signed.
        assert cli("verify", copied) == EXIT_OK
        # A signature for octo-org/third, which no rule names: refused.
        assert cli("verify", third) == EXIT_INVALID_SIGNATURE
        assert "replayed from another repository" in capsys.readouterr().out
