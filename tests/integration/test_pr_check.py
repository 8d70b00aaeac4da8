"""The pull-request check on a sample repository (issue 5, must-show item 4): images signed by
`sign_image` with the OIDC emulator on a loopback registry, Dockerfiles committed on a branch, and
`opk-sign pr-check --base` run as the reusable workflow runs it (GITHUB_ACTIONS, the step summary
and outputs files): an unsigned base image is reported at its file and line, a signed one passes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_NO_SIGNATURES, EXIT_OK, EXIT_POLICY_MISMATCH, EXIT_USAGE
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import sign_image
from tests.integration.test_action_entrypoint import parse_github_output
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, olareg

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("prcheck")]

REPO = "octo-org/base-images"


@dataclass(frozen=True)
class Images:
    registry: Registry
    issuer: str
    signed: str
    unsigned: str


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    with (
        GitHubOIDCEmulator(key=generated_op_key(0)) as emulator,
        olareg(tmp_path_factory.mktemp("prcheck-reg")) as registry,
        RegistryClient(Keychain.anonymous()) as client,
    ):
        emulator.set_claims(repository=REPO, ref="refs/heads/main")
        signed = registry.ref("octo-org/base", "v1")
        unsigned = registry.ref("octo-org/unsigned", "v1")
        push_sample_image(client, signed, ("linux/amd64",), index=False)
        push_sample_image(client, unsigned, ("linux/amd64",), index=False)
        provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
        sign_image(signed, provider=provider, client=client)
        yield Images(registry, emulator.issuer, signed, unsigned)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path, images: Images) -> tuple[Path, str]:
    """A repository whose main branch has an untouched Dockerfile on the unsigned image."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "ci@example.invalid")
    git(root, "config", "user.name", "ci")
    git(root, "config", "commit.gpgsign", "false")
    base = commit(
        root,
        {"README.md": "sample\n", "legacy/Dockerfile": f"FROM {images.unsigned}\n"},
        "base",
    )
    return root, base


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    summary: str
    outputs: dict[str, str]


def pr_check(
    root: Path,
    images: Images,
    *args: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    summary, output = root.parent / "step_summary.md", root.parent / "github_output"
    summary.write_text("")
    output.write_text("")
    monkeypatch.chdir(root)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("DOCKER_CONFIG", str(root.parent / "no-docker-config"))
    capsys.readouterr()
    code = main(["pr-check", "--issuer", images.issuer, "--repository", REPO, *args])
    captured = capsys.readouterr()
    return Run(
        code,
        captured.out,
        captured.err,
        summary.read_text(),
        parse_github_output(output.read_text()),
    )


def test_unsigned_base_is_reported_at_its_file_and_line_and_signed_one_passes(
    repo: tuple[Path, str],
    images: Images,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, base = repo
    git(root, "checkout", "-q", "-b", "change")
    commit(
        root,
        {
            "app/Dockerfile": f"FROM {images.signed}\nRUN true\n",
            # The unsigned base at line 5, after a directive, a comment and a global ARG.
            "worker/Dockerfile": (
                "# syntax=docker/dockerfile:1\n"
                "# the worker\n"
                f"ARG BASE={images.unsigned}\n"
                "\n"
                "FROM --platform=$BUILDPLATFORM ${BASE} AS run\n"
                'CMD ["run"]\n'
            ),
            # Multi-stage: the second FROM names the first stage, not an image.
            "multi/build.Dockerfile": (
                f"FROM {images.signed} AS build\nRUN make\nFROM build\nCOPY --from=build /o /o\n"
            ),
            "docs/notes.md": "not a Dockerfile\n",
        },
        "change",
    )

    run = pr_check(root, images, "--base", base, monkeypatch=monkeypatch, capsys=capsys)

    assert run.code == EXIT_NO_SIGNATURES, run.stdout
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error")]
    assert len(errors) == 1, run.stdout
    assert errors[0].startswith(
        "::error file=worker/Dockerfile,line=5,title=opk-sign%3A image not verified (no-signatures)::"
    )
    assert images.unsigned in errors[0] and "no opk-sign signatures" in errors[0]
    # The human-readable report is fenced off from the runner's command parser.
    lines = run.stdout.splitlines()
    assert lines[0].startswith("::stop-commands::")
    token = lines[0].removeprefix("::stop-commands::")
    assert f"::{token}::" in lines
    assert "FAIL worker/Dockerfile:5" in run.stdout
    assert "OK   app/Dockerfile:1" in run.stdout and "OK   multi/build.Dockerfile:1" in run.stdout
    assert "legacy/Dockerfile" not in run.stdout  # untouched by the change

    assert "<code>worker/Dockerfile:5</code>" in run.summary
    assert "❌ no-signatures (10)" in run.summary
    assert "<code>app/Dockerfile:1</code>" in run.summary and "✅ verified" in run.summary
    assert f"<code>{REPO}</code>" in run.summary
    assert "multi/build.Dockerfile:3" not in run.summary
    assert "1 of 2 images verified; 1 failing place" in run.summary

    assert run.outputs["verified"] == "false"
    assert json.loads(run.outputs["failed-images"]) == [images.unsigned]
    results = {doc["image"]: doc for doc in json.loads(run.outputs["results"])}
    assert results[images.signed]["verified"] is True
    assert sorted(p["file"] for p in results[images.signed]["places"]) == [
        "app/Dockerfile",
        "multi/build.Dockerfile",
    ]


def test_a_change_bringing_in_only_signed_images_passes(
    repo: tuple[Path, str],
    images: Images,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, base = repo
    git(root, "checkout", "-q", "-b", "signed-only")
    commit(root, {"app/Dockerfile": f"FROM {images.signed}\n"}, "signed only")
    run = pr_check(root, images, "--base", base, monkeypatch=monkeypatch, capsys=capsys)
    assert run.code == EXIT_OK, run.stdout
    assert "::error" not in run.stdout
    assert run.outputs["verified"] == "true"
    assert json.loads(run.outputs["failed-images"]) == []
    # And deleting the legacy Dockerfile is no reason to verify it.
    git(root, "rm", "-q", "legacy/Dockerfile")
    git(root, "commit", "-q", "-m", "drop legacy")
    assert pr_check(root, images, "--base", base, monkeypatch=monkeypatch, capsys=capsys).code == 0


def test_policy_mismatch_unresolvable_from_and_list_file(
    repo: tuple[Path, str],
    images: Images,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, _ = repo
    git(root, "checkout", "-q", "-b", "other")
    commit(
        root,
        {
            "svc/Dockerfile": "ARG BASE\nFROM $BASE\n",
            "images.txt": f"# extra images\n\n{images.signed}\n",
        },
        "other",
    )
    # The list file's image against a policy it does not satisfy: 11, at images.txt line 3.
    run = pr_check(
        root,
        images,
        "--dockerfile",
        "svc/Dockerfile",
        "--images-file",
        "images.txt",
        "--repository-regex",
        "someone-else/.*",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert run.code == EXIT_POLICY_MISMATCH, run.stdout
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error")]
    assert errors[0].startswith("::error file=svc/Dockerfile,line=2,title=opk-sign%3A cannot tell")
    assert "ARG BASE has no default" in errors[0]
    assert errors[1].startswith("::error file=images.txt,line=3,")
    assert "policy-mismatch" in errors[1]
    # Only the unresolvable FROM: a usage problem, exit 2, never a silent pass.
    only = pr_check(
        root, images, "--dockerfile", "svc/Dockerfile", monkeypatch=monkeypatch, capsys=capsys
    )
    assert only.code == EXIT_USAGE
    assert only.outputs["verified"] == "false"


def test_a_shallow_clone_is_a_usage_error_naming_fetch_depth(
    repo: tuple[Path, str],
    images: Images,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, _ = repo
    run = pr_check(root, images, "--base", "0" * 40, monkeypatch=monkeypatch, capsys=capsys)
    assert run.code == EXIT_USAGE
    assert "fetch-depth: 0" in run.stderr
