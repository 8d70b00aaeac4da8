"""The container action's pure helpers: where the docker config is, which credentials go where,
and the step summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opk_sign.actions import runner
from opk_sign.actions.runner import docker_config_dir
from opk_sign.actions.sign import ActionInputs, keychain, summary_markdown
from opk_sign.errors import UsageError
from opk_sign.identity import SignerIdentity
from opk_sign.oci.reference import Reference
from opk_sign.sign.image import Attestation, SignedManifest, SigningResult

TOKEN = "ghs_" + "x" * 36


def inputs(**kw: str) -> ActionInputs:
    values = {
        "image": "ghcr.io/o/app:v1",
        "predicate": "",
        "predicate_type": "",
        "registry_username": "",
        "registry_password": "",
        "github_token": TOKEN,
    }
    values.update(kw)
    return ActionInputs(recursive=True, provenance=True, **values)


@pytest.fixture
def container_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "github-home"
    monkeypatch.setattr(runner, "CONTAINER_HOME", home)
    return home


def test_docker_config_env_that_exists_wins(tmp_path: Path, container_home: Path) -> None:
    (container_home / ".docker").mkdir(parents=True)
    assert docker_config_dir({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path


def test_runner_path_is_mapped_into_the_container(container_home: Path) -> None:
    (container_home / ".docker").mkdir(parents=True)
    runner_path = "/home/runner/work/_temp/_github_home/.docker"
    assert docker_config_dir({"DOCKER_CONFIG": runner_path}) == container_home / ".docker"


def test_container_home_then_default(container_home: Path) -> None:
    assert docker_config_dir({}) is None
    (container_home / ".docker").mkdir(parents=True)
    assert docker_config_dir({}) == container_home / ".docker"


def test_github_token_is_used_for_ghcr_only(container_home: Path) -> None:
    ghcr = keychain(inputs(), Reference.parse("ghcr.io/o/app:v1"), {"GITHUB_ACTOR": "octocat"})
    credential = ghcr.get("ghcr.io")
    assert (credential.username, credential.password) == ("octocat", TOKEN)
    hub = keychain(inputs(), Reference.parse("docker.io/o/app:v1"), {"GITHUB_ACTOR": "octocat"})
    assert hub.get("docker.io").anonymous
    assert hub.get("ghcr.io").anonymous  # bound to the image's registry, never sent elsewhere


def test_explicit_password_is_bound_to_the_image_registry(container_home: Path) -> None:
    chain = keychain(
        inputs(registry_username="bot", registry_password="pw"),
        Reference.parse("registry.example/o/app:v1"),
        {},
    )
    assert chain.get("registry.example").password == "pw"
    assert chain.get("ghcr.io").anonymous


def test_username_without_password_is_a_usage_error(container_home: Path) -> None:
    with pytest.raises(UsageError):
        keychain(inputs(registry_username="bot"), Reference.parse("quay.io/o/a:v1"), {})


def test_summary_is_a_markdown_table_with_raw_json() -> None:
    identity = SignerIdentity(
        issuer="https://token.actions.githubusercontent.com",
        subject="repo:o/app:ref:refs/tags/v1",
        job_workflow_ref="o/app/.github/workflows/r|elease.yml@refs/tags/v1",
    )
    result = SigningResult(
        reference=Reference.parse("ghcr.io/o/app:v1").with_digest("sha256:" + "a" * 64),
        digest="sha256:" + "a" * 64,
        identity=identity,
        manifests=(
            SignedManifest(
                "sha256:" + "b" * 64,
                "application/vnd.oci.image.manifest.v1+json",
                "linux/amd64",
                "sha256:" + "c" * 64,
                (Attestation("https://slsa.dev/provenance/v1", "sha256:" + "d" * 64),),
            ),
            SignedManifest(
                "sha256:" + "a" * 64,
                "application/vnd.oci.image.index.v1+json",
                None,
                "sha256:" + "e" * 64,
                is_index=True,
            ),
        ),
    )
    text = summary_markdown(result)
    rows = [line for line in text.splitlines() if line.startswith("| `sha256:")]
    assert len(rows) == 2
    assert "linux/amd64" in rows[0] and "https://slsa.dev/provenance/v1" in rows[0]
    assert "| index |" in rows[1]
    assert "r\\|elease.yml" in text  # a pipe in a value cannot break the table
    raw = text.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(raw)["signatures"] == ["sha256:" + "c" * 64, "sha256:" + "e" * 64]


def test_cli_text_summary_names_digest_identity_and_referrers() -> None:
    from opk_sign.cli.sign import format_result

    identity = SignerIdentity(issuer="https://i", subject="s", job_workflow_ref="o/r/w.yml@refs/v")
    result = SigningResult(
        reference=Reference.parse("ghcr.io/o/app:v1").with_digest("sha256:" + "a" * 64),
        digest="sha256:" + "a" * 64,
        identity=identity,
        manifests=(
            SignedManifest(
                "sha256:" + "a" * 64,
                "application/vnd.oci.image.manifest.v1+json",
                "linux/amd64",
                "sha256:" + "c" * 64,
                (Attestation("https://slsa.dev/provenance/v1", "sha256:" + "d" * 64),),
            ),
        ),
    )
    text = format_result(result)
    assert text.splitlines()[0] == f"Signed ghcr.io/o/app:v1@sha256:{'a' * 64}"
    assert "identity: o/r/w.yml@refs/v" in text
    assert f"signature    sha256:{'c' * 64}" in text
    assert f"attestation  sha256:{'d' * 64}  https://slsa.dev/provenance/v1" in text
