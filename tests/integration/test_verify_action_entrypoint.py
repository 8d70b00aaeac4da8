"""The verify action (verify/action.yml) run exactly as the runner runs it: ``entrypoint.py verify``
(the action's ``args``), every input as an ``INPUT_*`` variable with action.yml's defaults for
those not given, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files; against an image signed by
`sign_image` with the OIDC emulator on a loopback registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.errors import EXIT_NO_SIGNATURES, EXIT_OK, EXIT_POLICY_MISMATCH, EXIT_USAGE
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import sign_image
from tests.integration.test_action_entrypoint import parse_github_output
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, olareg

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("verify-action")]

ROOT = Path(__file__).resolve().parents[2]
REPO = "octo-org/app"
WORKFLOW = f"{REPO}/.github/workflows/release.yml@refs/tags/v1"
DEFAULTS = {
    name: str(spec.get("default", ""))
    for name, spec in yaml.safe_load((ROOT / "verify" / "action.yml").read_text())["inputs"].items()
}


@dataclass(frozen=True)
class Signed:
    registry: Registry
    issuer: str
    image: str
    digest: str
    unsigned: str


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    with (
        GitHubOIDCEmulator(key=generated_op_key(0)) as emulator,
        olareg(tmp_path_factory.mktemp("verify-action-reg")) as registry,
        RegistryClient(Keychain.anonymous()) as client,
    ):
        emulator.set_claims(repository=REPO, ref="refs/tags/v1")
        image = registry.ref("octo-org/app", "v1")
        unsigned = registry.ref("octo-org/unsigned", "v1")
        pushed = push_sample_image(client, image, ("linux/amd64", "linux/arm64"), index=True)
        push_sample_image(client, unsigned, ("linux/amd64",), index=False)
        provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
        sign_image(image, provider=provider, client=client)
        yield Signed(registry, emulator.issuer, image, pushed.digest, unsigned)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith("::error")]


def run_action(tmp_path: Path, signed: Signed, inputs: Mapping[str, str]) -> Run:
    output, summary, workspace = tmp_path / "out", tmp_path / "summary", tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    output.write_text("")
    summary.write_text("")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_WORKSPACE": str(workspace),
        "RUNNER_TEMP": str(tmp_path),
        "OPK_SIGN_TRUST_DIR": str(tmp_path / "trust"),
        # The runner sets every declared input: the given value, else action.yml's default.
        **{f"INPUT_{name.upper()}": value for name, value in {**DEFAULTS, **inputs}.items()},
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "entrypoint.py"), "verify"],
        env=env,
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Run(
        proc.returncode,
        proc.stdout,
        proc.stderr,
        parse_github_output(output.read_text()),
        summary.read_text(),
    )


def test_signed_image_verifies(tmp_path: Path, signed: Signed) -> None:
    run = run_action(
        tmp_path,
        signed,
        {
            "images": f"# what we deploy\n{signed.image}\n",
            "issuer": signed.issuer,
            "repository": REPO,
            "signer-workflow-regex": f"{REPO}/.github/workflows/release.yml@refs/tags/v.*",
            "attestation": "https://slsa.dev/provenance/v1",
        },
    )
    assert run.code == EXIT_OK, run.stdout + run.stderr
    assert run.errors == []
    assert run.outputs["verified"] == "true"
    assert json.loads(run.outputs["failed-images"]) == []
    (doc,) = json.loads(run.outputs["results"])
    assert doc["digest"] == signed.digest and doc["outcome"] == "verified"
    assert doc["identity"]["job_workflow_ref"] == WORKFLOW
    assert [m["platform"] for m in doc["manifests"]] == [None, "linux/amd64", "linux/arm64"]
    assert "verified<<ghadelimiter_" in (tmp_path / "out").read_text()
    assert "**1 of 1 images verified**" in run.summary
    assert f"| <code>{signed.image}</code> |" in run.summary and "✅ verified" in run.summary
    assert f"<code>{WORKFLOW}</code>" in run.summary
    # The report quotes the signer's claims: it is printed with workflow commands stopped.
    name = signed.image.rsplit(":", 1)[0]
    assert (
        run.stdout.startswith("::stop-commands::") and f"OK   {name}@{signed.digest}" in run.stdout
    )


def test_policy_mismatch_fails_with_exit_11_and_an_annotation(
    tmp_path: Path, signed: Signed
) -> None:
    run = run_action(
        tmp_path,
        signed,
        {"images": signed.image, "issuer": signed.issuer, "repository": "octo-org/other"},
    )
    assert run.code == EXIT_POLICY_MISMATCH, run.stdout + run.stderr
    (error,) = run.errors
    assert error.startswith(
        f"::error title=opk-sign%3A {signed.image.replace(':', '%3A')} not verified "
        "(policy-mismatch)::"
    )
    assert "claim 'repository' is 'octo-org/app'" in error
    assert "%0A" in error and "\r" not in error  # a multi-line message, escaped onto one line
    assert run.outputs["verified"] == "false"
    assert json.loads(run.outputs["failed-images"]) == [signed.image]
    assert "❌ policy-mismatch (11)" in run.summary


def test_fail_on_error_false_reports_but_passes(tmp_path: Path, signed: Signed) -> None:
    run = run_action(
        tmp_path,
        signed,
        {
            "images": f"{signed.image}\n{signed.unsigned}",
            "issuer": signed.issuer,
            "repository": REPO,
            "fail-on-error": "false",
        },
    )
    assert run.code == EXIT_OK, run.stdout + run.stderr
    assert len(run.errors) == 1 and "no-signatures" in run.errors[0]
    assert json.loads(run.outputs["failed-images"]) == [signed.unsigned]
    results = json.loads(run.outputs["results"])
    assert [r["exitCode"] for r in results] == [0, EXIT_NO_SIGNATURES]


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ({"images": "--help", "repository": REPO}, "looks like a command-line flag"),
        ({"images": "ghcr.io/o/a:1"}, "no identity policy"),
        # A policy any repository satisfies (issue 11, class 1): refused, naming what to add.
        ({"images": "ghcr.io/o/a:1", "ref": "refs/heads/main"}, "names no signer"),
        ({"images": "ghcr.io/o/a:1", "repository-regex": "[^/]+/.*"}, "names no signer"),
    ],
)
def test_bad_inputs_fail_before_any_registry_is_asked(
    tmp_path: Path, signed: Signed, inputs: dict[str, str], needle: str
) -> None:
    run = run_action(tmp_path, signed, inputs)
    assert run.code == EXIT_USAGE, run.stdout + run.stderr
    (error,) = run.errors
    assert needle in error
    assert run.outputs == {} and run.summary == ""


def test_without_a_policy_the_error_names_the_inputs_not_flags(
    tmp_path: Path, signed: Signed
) -> None:
    run = run_action(tmp_path, signed, {"images": signed.image, "issuer": signed.issuer})
    assert run.code == EXIT_USAGE, run.stdout + run.stderr
    (error,) = run.errors
    assert error.startswith("::error title=opk-sign verify::no identity policy")
    assert "the input `repository: octo-org/app`" in error and "the policy-file input" in error
    assert "--repository" not in error and "--policy" not in error


def test_a_missing_attestation_names_the_attestation_input(tmp_path: Path, signed: Signed) -> None:
    run = run_action(
        tmp_path,
        signed,
        {
            "images": signed.image,
            "issuer": signed.issuer,
            "repository": REPO,
            "attestation": "https://example.com/no-such-predicate",
        },
    )
    assert run.code == EXIT_POLICY_MISMATCH, run.stdout + run.stderr
    (error,) = run.errors
    assert "(required by the attestation input)" in error and "--attestation" not in error
    assert "--attestation" not in run.summary and "--attestation" not in run.stdout
    assert "--attestation" not in run.outputs["results"]


@pytest.mark.parametrize("policy_file", ["../policy.yml", "link.yml"])
def test_a_policy_file_outside_the_workspace_is_refused(
    tmp_path: Path, signed: Signed, policy_file: str
) -> None:
    (tmp_path / "policy.yml").write_text(f"repository: {REPO}\n")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "link.yml").symlink_to(tmp_path / "policy.yml")
    run = run_action(
        tmp_path,
        signed,
        {"images": signed.image, "issuer": signed.issuer, "policy-file": policy_file},
    )
    assert run.code == EXIT_USAGE, run.stdout + run.stderr
    (error,) = run.errors
    assert error.startswith(
        "::error title=opk-sign verify::the 'policy-file' input must name a file in the workspace"
    )
    assert run.outputs == {} and run.summary == ""


def test_a_policy_file_in_the_workspace_through_a_symlink_is_read(
    tmp_path: Path, signed: Signed
) -> None:
    (tmp_path / "ws" / "policies").mkdir(parents=True)
    (tmp_path / "ws" / "policies" / "release.yml").write_text(f"repository: {REPO}\n")
    (tmp_path / "ws" / "policy.yml").symlink_to(tmp_path / "ws" / "policies" / "release.yml")
    run = run_action(
        tmp_path,
        signed,
        {"images": signed.image, "issuer": signed.issuer, "policy-file": "policy.yml"},
    )
    assert run.code == EXIT_OK, run.stdout + run.stderr
    assert run.outputs["verified"] == "true"
