"""entrypoint.py run exactly as the runner runs a container action: INPUT_* variables, the
GITHUB_* context, the token request variables, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files.

The registry asks for a password (distribution with htpasswd) so the credential inputs are used,
and every secret (request token, ID token, registry password) is checked to appear nowhere but in
the ``::add-mask::`` commands that tell the runner to hide it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.bundle import ATTESTATION_ARTIFACT_TYPE, SIGNATURE_ARTIFACT_TYPE, Bundle
from opk_sign.cli.main import main as cli_main
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.credentials import ExplicitCredentials
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import ImageManifest, parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.trust.timestamp import verify_timestamp
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, distribution
from tests.services.tsa import TimestampAuthority

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("action")]

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "octo-bot", "registry-Pa55word-not-for-logs"
GITHUB_TOKEN = "ghs_" + "t" * 36


class RecordingEmulator(GitHubOIDCEmulator):
    """The emulator, remembering every ID token it hands out (to look for them in the logs)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.issued: list[str] = []

    def issue_token(self, audience: str | None = None) -> str:
        token = super().issue_token(audience)
        self.issued.append(token)
        return token


@pytest.fixture(scope="module")
def emulator() -> Iterator[RecordingEmulator]:
    running = RecordingEmulator(key=generated_op_key(0))
    with running:
        yield running


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with distribution(tmp_path_factory.mktemp("action-reg"), htpasswd_users={USER: PASSWORD}) as r:
        yield r


def authed_client(registry: Registry) -> RegistryClient:
    return RegistryClient(
        Keychain(
            [ExplicitCredentials.for_registry(registry.host, username=USER, password=PASSWORD)]
        )
    )


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    outputs_text: str
    summary: str

    @property
    def outputs(self) -> dict[str, str]:
        return parse_github_output(self.outputs_text)


def parse_github_output(text: str) -> dict[str, str]:
    """The runner's parser of GITHUB_OUTPUT: ``name=value`` or ``name<<DELIM`` … ``DELIM``."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            out[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        else:
            name, _, value = line.partition("=")
            out[name] = value
            i += 1
    return out


def run_entrypoint(
    tmp_path: Path,
    emulator: GitHubOIDCEmulator,
    inputs: Mapping[str, str],
    *,
    drop: tuple[str, ...] = (),
    extra_env: Mapping[str, str] | None = None,
    tsa: TimestampAuthority | None = None,
) -> Run:
    output = tmp_path / "github_output"
    summary = tmp_path / "step_summary"
    workspace = tmp_path / "workspace"
    home = tmp_path / "home"
    for directory in (workspace, home):
        directory.mkdir(exist_ok=True)
    output.write_text("")
    summary.write_text("")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_WORKSPACE": str(workspace),
        "RUNNER_TEMP": str(tmp_path),
        "OPK_SIGN_OIDC_ISSUER": emulator.issuer,
        **emulator.env(),
        # Defaults the runner sets from action.yml for inputs not given.
        "INPUT_RECURSIVE": "true",
        "INPUT_PROVENANCE": "true",
        "INPUT_PREDICATE": "",
        "INPUT_PREDICATE-TYPE": "",
        "INPUT_REGISTRY-USERNAME": "",
        "INPUT_REGISTRY-PASSWORD": "",
        "INPUT_GITHUB-TOKEN": GITHUB_TOKEN,
        # action.yml's default is the public TSA: the loopback one, or none.
        "INPUT_TIMESTAMP-URL": tsa.url if tsa is not None else "",
        # action.yml's default logs a public repository's signatures in Sigstore's public log.
        "INPUT_TLOG": "never",
        **{f"INPUT_{name.upper()}": value for name, value in inputs.items()},
        **(extra_env or {}),
    }
    for name in drop:
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "entrypoint.py")],
        env=env,
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, output.read_text(), summary.read_text())


def assert_secrets_hidden(run: Run, secrets: list[str]) -> None:
    """No secret in outputs, summary or stderr; on stdout only inside ``::add-mask::`` commands."""
    for secret in secrets:
        assert secret
        # The ID token's signature segment alone is what makes it replayable.
        pieces = [secret, secret.rpartition(".")[2]] if secret.count(".") == 2 else [secret]
        for piece in pieces:
            assert piece not in run.outputs_text
            assert piece not in run.summary
            assert piece not in run.stderr
            for line in run.stdout.splitlines():
                if piece in line:
                    assert line.startswith("::add-mask::"), line


def test_signs_writes_outputs_and_summary_and_hides_secrets(
    tmp_path: Path, registry: Registry, emulator: RecordingEmulator, tsa: TimestampAuthority
) -> None:
    ref = registry.ref("octo-org/action", "v1")
    with authed_client(registry) as c:
        pushed = push_sample_image(c, ref)
    before = len(emulator.issued)

    run = run_entrypoint(
        tmp_path,
        emulator,
        {"image": ref, "registry-username": USER, "registry-password": PASSWORD},
        tsa=tsa,
    )

    assert run.code == 0, run.stdout + run.stderr
    outputs = run.outputs
    assert set(outputs) == {
        *("digest", "signatures", "attestations", "identity", "issuer", "bundle-path")
    }
    assert outputs["digest"] == pushed.digest
    # The bundles, as an offline kit in the workspace (a relative path later steps can use),
    # that verifies with no registry: bundles and the issuer's JWKS are in it.
    kit = tmp_path / "workspace" / outputs["bundle-path"]
    assert outputs["bundle-path"] == f".opk-sign/{pushed.digest.split(':')[1]}"
    offline = [
        *("verify", "--from-dir", str(kit), f"{Reference.parse(ref).name}@{pushed.digest}"),
        *("--issuer", emulator.issuer, "--no-trust-repo"),
        *("--repository", str(emulator.claims("")["repository"])),
        *("--attestation", "https://slsa.dev/provenance/v1"),
    ]
    assert cli_main(offline) == 0
    signatures, attestations = (
        json.loads(outputs["signatures"]),
        json.loads(outputs["attestations"]),
    )
    assert len(signatures) == 3 and len(attestations) == 2
    assert outputs["identity"] == emulator.claims("")["job_workflow_ref"]
    assert outputs["issuer"] == emulator.issuer
    # The outputs file uses the heredoc form with a random delimiter (multiline-safe).
    assert "digest<<ghadelimiter_" in run.outputs_text

    assert "| Manifest | Platform | Signed | Attestations |" in run.summary
    assert pushed.digest in run.summary
    assert "linux/amd64" in run.summary and "linux/arm64" in run.summary
    assert outputs["identity"] in run.summary

    # What the outputs name is really in the registry.
    with authed_client(registry) as c:
        listed = c.list_referrers(Reference.parse(ref), pushed.digest, SIGNATURE_ARTIFACT_TYPE)
        assert [d.digest for d in listed] == [signatures[-1]]
        children = [
            d.digest
            for d in c.list_referrers(
                Reference.parse(ref), pushed.digest, ATTESTATION_ARTIFACT_TYPE
            )
        ]
        assert children == []  # attestations are on the platform manifests
        # The signature is timestamped by the TSA the timestamp-url input names.
        (descriptor,) = listed
        manifest = parse_manifest(c.get_manifest(Reference.parse(ref), descriptor.digest)[0])
        assert isinstance(manifest, ImageManifest)
        bundle = Bundle.from_json(c.get_blob(Reference.parse(ref), manifest.layers[0].digest))
        (timestamp,) = bundle.timestamps
        verify_timestamp(timestamp, bundle.signature_bytes(), tsa.trust)

    issued = emulator.issued[before:]
    assert len(issued) == 1
    assert f"::add-mask::{emulator.request_token}" in run.stdout.splitlines()
    assert f"::add-mask::{issued[0]}" in run.stdout.splitlines()
    assert f"::add-mask::{PASSWORD}" in run.stdout.splitlines()
    assert_secrets_hidden(run, [emulator.request_token, *issued, PASSWORD, GITHUB_TOKEN])


def test_missing_token_variables_fail_with_an_annotation_naming_the_permission(
    tmp_path: Path, registry: Registry, emulator: RecordingEmulator
) -> None:
    ref = registry.ref("octo-org/action-notoken", "v1")
    run = run_entrypoint(
        tmp_path,
        emulator,
        {"image": ref, "registry-username": USER, "registry-password": PASSWORD},
        drop=("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    )
    assert run.code != 0
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error")]
    assert len(errors) == 1, run.stdout
    assert "id-token: write" in errors[0]
    assert run.outputs_text == ""
    assert run.summary == ""
    assert_secrets_hidden(run, [emulator.request_token, PASSWORD])


def test_pull_request_without_token_explains_forks(
    tmp_path: Path, registry: Registry, emulator: RecordingEmulator
) -> None:
    run = run_entrypoint(
        tmp_path,
        emulator,
        {"image": registry.ref("octo-org/action-pr", "v1")},
        drop=("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
        extra_env={"GITHUB_EVENT_NAME": "pull_request"},
    )
    assert run.code != 0
    assert "fork" in run.stdout and "id-token: write" in run.stdout


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ({"image": "--help"}, "looks like a command-line flag"),
        ({"image": "ok/image:v1", "predicate-type": "-x"}, "looks like a command-line flag"),
        ({"image": "ok/image:v1", "recursive": "yes please"}, "must be true or false"),
        ({"image": ""}, "is required"),
        ({"image": "Not A Reference"}, "invalid image reference"),
        ({"image": "ok/image:v1", "predicate-type": "https://x.example/t"}, "needs the predicate"),
        ({"image": "ok/image:v1", "timestamp-url": "http://tsa.example/"}, "must use https"),
    ],
)
def test_bad_inputs_are_refused_before_anything_runs(
    tmp_path: Path,
    emulator: RecordingEmulator,
    inputs: dict[str, str],
    needle: str,
) -> None:
    before = len(emulator.issued)
    run = run_entrypoint(tmp_path, emulator, inputs)
    assert run.code == 2, run.stdout + run.stderr
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error")]
    assert len(errors) == 1 and needle in errors[0], run.stdout
    assert len(emulator.issued) == before  # no token was even requested


def test_an_error_annotation_has_no_empty_properties(
    tmp_path: Path, emulator: RecordingEmulator
) -> None:
    run = run_entrypoint(tmp_path, emulator, {"image": ""})
    assert run.code == 2
    assert run.stdout.splitlines()[-1] == (
        "::error title=opk-sign::the 'image' input is required%0A  hint: set `with: image: …`"
    )


@pytest.mark.parametrize("predicate", ["{outside}", "../outside.json", "link.json", "dir/../../x"])
def test_a_predicate_outside_the_workspace_is_refused(
    tmp_path: Path, emulator: RecordingEmulator, predicate: str
) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('{"secret": true}')
    workspace = tmp_path / "workspace"
    (workspace / "dir").mkdir(parents=True)
    (workspace / "link.json").symlink_to(outside)
    before = len(emulator.issued)
    run = run_entrypoint(
        tmp_path,
        emulator,
        {
            "image": "ok/image:v1",
            "predicate": predicate.format(outside=outside),
            "predicate-type": "https://spdx.dev/Document",
        },
    )
    assert run.code == 2, run.stdout + run.stderr
    (error,) = [line for line in run.stdout.splitlines() if line.startswith("::error")]
    assert error.startswith(
        "::error title=opk-sign::the 'predicate' input must name a file in the workspace: "
    )
    assert "secret" not in run.stdout
    assert len(emulator.issued) == before  # refused before a token was requested


def test_library_hints_name_the_actions_inputs(
    tmp_path: Path, registry: Registry, emulator: RecordingEmulator, tsa: TimestampAuthority
) -> None:
    ref = registry.ref("octo-org/action-tsa", "v1")
    with authed_client(registry) as c:
        push_sample_image(c, ref, ["linux/amd64"], index=False)
    run = run_entrypoint(
        tmp_path,
        emulator,
        {"image": ref, "registry-username": USER, "registry-password": PASSWORD},
        extra_env={"INPUT_TIMESTAMP-URL": f"http://{tsa.host}/no-such-endpoint"},
    )
    assert run.code != 0
    (error,) = [line for line in run.stdout.splitlines() if line.startswith("::error")]
    assert error.startswith("::error title=opk-sign::")
    assert error.endswith(
        "hint: check the TSA URL (the timestamp-url input), or sign without timestamps"
        ' (`timestamp-url: ""`)'
    ), error
    assert "--timestamp-url" not in error and "--no-timestamp" not in error


def test_predicate_from_the_workspace_and_credentials_from_docker_config(
    tmp_path: Path, registry: Registry, emulator: RecordingEmulator
) -> None:
    ref = registry.ref("octo-org/action-sbom", "v1")
    with authed_client(registry) as c:
        pushed = push_sample_image(c, ref, ["linux/amd64"], index=False)
    workspace = tmp_path / "workspace"
    (workspace / "reports").mkdir(parents=True)
    (workspace / "reports" / "sbom.json").write_text('{"spdxVersion": "SPDX-2.3"}')
    # A symlink is followed, and taken since it stays in the workspace.
    (workspace / "sbom.json").symlink_to(workspace / "reports" / "sbom.json")
    # docker/login-action's config, written where the runner mounts the container's home.
    docker_dir = tmp_path / "_github_home" / ".docker"
    docker_dir.mkdir(parents=True)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker_dir / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    run = run_entrypoint(
        tmp_path,
        emulator,
        {
            "image": f"{registry.host}/octo-org/action-sbom@{pushed.digest}",
            "provenance": "false",
            "predicate": "sbom.json",
            "predicate-type": "https://spdx.dev/Document",
        },
        extra_env={"DOCKER_CONFIG": str(docker_dir)},
    )
    assert run.code == 0, run.stdout + run.stderr
    assert len(json.loads(run.outputs["attestations"])) == 1
    assert "https://spdx.dev/Document" in run.summary
    assert_secrets_hidden(run, [PASSWORD])
