"""The release, rehearsed (issue 16, "What it must show" 2): scripts/release.sh rehearse, in a copy
of the checkout, against a loopback registry and the GitHub OIDC emulator. It builds the action
image (buildah, from the tests' Debian base), pushes it, signs it with provenance through the
signing action's entry point, verifies it, builds the dists and writes the digest-pinned
action.yml and verify/action.yml; `opk-sign verify` of the pushed image then passes with the
identity the reusable signing workflow gives it (sign.yml at the release tag), and only with it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign._version import __version__
from opk_sign.cli.main import main as cli_main
from opk_sign.errors import EXIT_POLICY_MISMATCH
from tests.services.container_build import (
    ROOT,
    Buildah,
    base_image,
    copy_checkout,
    exclusive,
    tidy,
)
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, distribution

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("buildah")]

PROJECT = "opk-sign/opk-sign"
TAG_REF = f"refs/tags/v{__version__}"
SIGNER = f"{PROJECT}/.github/workflows/sign.yml@{TAG_REF}"
SLSA = "https://slsa.dev/provenance/v1"


@pytest.fixture(scope="session")
def release_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with distribution(tmp_path_factory.mktemp("release-registry")) as running:
        yield running


@pytest.fixture(scope="session")
def release_emulator() -> Iterator[GitHubOIDCEmulator]:
    # The job the reusable signing workflow runs in, called by release.yml on the version tag.
    claims = {
        "repository": PROJECT,
        "ref": TAG_REF,
        "workflow_file": ".github/workflows/release.yml",
        "job_workflow_ref": SIGNER,
        "event_name": "push",
    }
    with GitHubOIDCEmulator(key=generated_op_key(0), claims=claims) as running:
        yield running


@pytest.fixture(scope="session")
def rehearsal(
    tmp_path_factory: pytest.TempPathFactory,
    release_registry: Registry,
    release_emulator: GitHubOIDCEmulator,
) -> Iterator[tuple[Path, str, subprocess.CompletedProcess[str]]]:
    buildah = Buildah()
    checkout = copy_checkout(tmp_path_factory.mktemp("release") / "opk-sign")
    venv_bin = Path(sys.executable).parent
    env = {
        **buildah.env(),
        **release_emulator.env(),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHON": sys.executable,
        "OPK_SIGN": str(venv_bin / "opk-sign"),
        "OPK_SIGN_OIDC_ISSUER": release_emulator.issuer,
        "OPK_SIGN_TLOG": "never",
        "GITHUB_REPOSITORY": PROJECT,
        "GITHUB_REF_NAME": f"v{__version__}",
        "RELEASE_BUILDER": "buildah",
        "RELEASE_REGISTRY": release_registry.host,
        "RELEASE_INSECURE_REGISTRY": "1",
        "RELEASE_TIMESTAMP_URL": "",
        "RELEASE_VERIFY_ARGS": "--no-trust-repo",
    }
    env.pop("GITHUB_OUTPUT", None)
    start = time.monotonic()
    with exclusive(buildah):  # buildah's storage is shared with other test processes
        base = base_image(buildah)
        tidy(buildah, keep=base)
        digest = buildah.push(base, release_registry.ref("debian/python3", "bookworm"))
        env["BASE_IMAGE"] = f"{release_registry.host}/debian/python3@{digest}"
        done = subprocess.run(
            ["bash", str(checkout / "scripts" / "release.sh"), "rehearse"],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    print(f"\nrelease rehearsal: {time.monotonic() - start:.0f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    image = done.stdout.strip().splitlines()[-1]
    yield checkout, image, done


def test_rehearsal_pushes_the_image_by_digest(
    rehearsal: tuple[Path, str, subprocess.CompletedProcess[str]], release_registry: Registry
) -> None:
    _, image, done = rehearsal
    assert re.fullmatch(
        rf"{re.escape(release_registry.host)}/{PROJECT}@sha256:[0-9a-f]{{64}}", image
    )
    # Each step ran: signed through the action's entry point (its outputs and summary), verified.
    assert "signing" in done.stderr and "verifying" in done.stderr
    assert "verified (exit 0)" in done.stdout + done.stderr


def test_rehearsal_writes_the_digest_pinned_action_metadata(
    rehearsal: tuple[Path, str, subprocess.CompletedProcess[str]],
) -> None:
    checkout, image, _ = rehearsal
    for path in ("action.yml", "verify/action.yml"):
        runs = yaml.safe_load((checkout / path).read_text())["runs"]
        assert runs["using"] == "docker"
        assert runs["image"] == f"docker://{image}", path
    # The verify action keeps its mode argument; nothing else changed.
    assert yaml.safe_load((checkout / "verify/action.yml").read_text())["runs"]["args"] == [
        "verify"
    ]
    changed = subprocess.run(
        [
            "diff",
            "-u",
            str(ROOT / "verify" / "action.yml"),
            str(checkout / "verify" / "action.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    removed = [line for line in changed.splitlines() if line.startswith("-  ")]
    assert all("image:" in line or line.startswith("-  #") for line in removed), changed
    # zizmor takes the digest-pinned image for pinned (the local build it flagged is gone).
    zizmor = Path(sys.executable).parent / "zizmor"
    linted = subprocess.run(
        [str(zizmor), "--offline", "--no-progress", "action.yml", "verify/action.yml"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_rehearsal_builds_the_dists(
    rehearsal: tuple[Path, str, subprocess.CompletedProcess[str]],
) -> None:
    checkout, _, _ = rehearsal
    names = sorted(p.name for p in (checkout / "dist").iterdir())
    assert names == [f"opk_sign-{__version__}-py3-none-any.whl", f"opk_sign-{__version__}.tar.gz"]


def test_pushed_action_image_verifies_with_the_signing_workflow_identity(
    rehearsal: tuple[Path, str, subprocess.CompletedProcess[str]],
    release_emulator: GitHubOIDCEmulator,
) -> None:
    _, image, _ = rehearsal
    common = ["--issuer", release_emulator.issuer, "--no-trust-repo", "--attestation", SLSA]
    assert cli_main(["verify", image, "--signer-workflow", SIGNER, *common]) == 0
    # Any other signer identity is refused: the caller's own workflow, another tag.
    for other in (
        f"{PROJECT}/.github/workflows/release.yml@{TAG_REF}",
        f"{PROJECT}/.github/workflows/sign.yml@refs/tags/v999.0.0",
    ):
        assert cli_main(["verify", image, "--signer-workflow", other, *common]) == (
            EXIT_POLICY_MISMATCH
        )
