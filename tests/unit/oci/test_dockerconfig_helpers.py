"""A docker config can name only a credential helper program on PATH (issue 11, class 4): no path
separators, no relative PATH entries, so a config (or a repository checked out in the working
directory) cannot make the verifier run a program of its choosing; a helper's answer is parsed
under limits."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from opk_sign.errors import RegistryAuthError, UsageError
from opk_sign.oci.dockerconfig import DockerConfig


def config(**doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "name", ["../../tmp/evil", "./evil", "/usr/bin/evil", "a/b", "", "-rf", ".hidden", "x" * 65]
)
@pytest.mark.parametrize("field", ["credHelpers", "credsStore"])
def test_helper_names_with_paths_are_refused(field: str, name: str) -> None:
    doc = {"credHelpers": {"ghcr.io": name}} if field == "credHelpers" else {"credsStore": name}
    if name == "" and field == "credsStore":
        assert DockerConfig.parse(config(**doc)).creds_store is None  # empty: no store
        return
    if name == "":
        return  # an empty helper name means none (docker's reading)
    with pytest.raises(UsageError) as caught:
        DockerConfig.parse(config(**doc))
    assert "is not a program name" in caught.value.message


@pytest.mark.parametrize("name", ["desktop", "ecr-login", "gcloud", "osxkeychain", "pass", "v1.2"])
def test_docker_helper_names_are_accepted(name: str) -> None:
    parsed = DockerConfig.parse(config(credHelpers={"ghcr.io": name}))
    assert parsed.cred_helpers["ghcr.io"] == name


def _helper(directory: Path, name: str, answer: str, marker: Path) -> None:
    program = directory / f"docker-credential-{name}"
    program.write_text(f"#!/bin/sh\ntouch {marker}\ncat <<'EOF'\n{answer}\nEOF\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)


def test_a_helper_in_the_working_directory_is_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    _helper(tmp_path, "desktop", '{"Username": "u", "Secret": "s"}', marker)
    monkeypatch.chdir(tmp_path)
    for path in ("", ".", os.pathsep + "/nonexistent"):
        parsed = DockerConfig.parse(config(credsStore="desktop"), helper_path=path)
        with pytest.raises(RegistryAuthError, match="not installed"):
            parsed.credential_for("ghcr.io")
    assert not marker.exists()


def test_a_helper_on_path_is_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _helper(tmp_path, "desktop", '{"Username": "u", "Secret": "s"}', marker)
    parsed = DockerConfig.parse(config(credsStore="desktop"), helper_path=str(tmp_path))
    credential = parsed.credential_for("ghcr.io")
    assert credential is not None and credential.username == "u" and marker.exists()


@pytest.mark.parametrize(
    "answer",
    [
        '{"Username": "u", "Secret": ' + "9" * 5000 + "}",
        "[" * 100_000,
        '{"Username": "u", "Username": "v", "Secret": "s"}',
        "not json",
    ],
)
def test_a_hostile_helper_answer_is_an_auth_error(tmp_path: Path, answer: str) -> None:
    _helper(tmp_path, "desktop", answer, tmp_path / "ran")
    parsed = DockerConfig.parse(config(credsStore="desktop"), helper_path=str(tmp_path))
    with pytest.raises(RegistryAuthError, match="unreadable answer"):
        parsed.credential_for("ghcr.io")


@pytest.mark.parametrize(
    "data",
    [b'{"auths": {}, "auths": {}}', b'{"credsStore": ' + b"1" * 5000 + b"}", b"[" * 100_000],
)
def test_a_hostile_config_is_a_usage_error(data: bytes) -> None:
    with pytest.raises(UsageError):
        DockerConfig.parse(data)
