"""The conventions cosign and gh users type (issue 12, first part): -o, --repo, no abbreviated
options, oci:// references, a hint for URL schemes, one-line usage errors, a username without a
password refused, and each distinct image of a batch verified once."""

from __future__ import annotations

import argparse

import pytest

from opk_sign.cli.main import build_parser, main
from opk_sign.errors import EXIT_USAGE, UsageError
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.reference import Reference
from opk_sign.verify.image import verify_images
from opk_sign.verify.options import VerifyOptions

IMAGE = "registry.example/o/app@sha256:" + "a" * 64


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("command", ["verify", "inspect", "copy", "sign"])
def test_dash_o_is_output(command: str) -> None:
    extra = ["registry.example/o/b:1"] if command == "copy" else []
    assert parse(command, IMAGE, *extra, "-o", "json").output == "json"


def test_repo_is_repository() -> None:
    args = parse("verify", IMAGE, "--repo", "o/app", "--repo-regex", "o/.*")
    assert args.repository == "o/app" and args.repository_regex == "o/.*"


@pytest.mark.parametrize("abbreviated", ["--out", "--repos", "--signer-work", "--polic"])
def test_abbreviations_are_not_options(
    abbreviated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", IMAGE, abbreviated, "x"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err or "expected" in err


def test_a_usage_error_is_one_line_and_a_pointer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", IMAGE, "--no-such-flag"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == "opk-sign: error: unrecognized arguments: --no-such-flag"
    assert err[1] == "usage: see `opk-sign --help`"
    assert main(["verify", IMAGE, "--jobs", "x"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("opk-sign verify: error: argument --jobs")
    assert err[1] == "usage: see `opk-sign verify --help`"


def test_oci_scheme_is_accepted() -> None:
    assert Reference.parse("oci://ghcr.io/o/app:v1") == Reference.parse("ghcr.io/o/app:v1")


@pytest.mark.parametrize("text", ["http://localhost:5000/o/app", "https://ghcr.io/o/app:v1"])
def test_url_schemes_get_a_hint(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        Reference.parse(text)
    assert "no URL scheme" in caught.value.message and "drop the scheme" in (
        caught.value.hint or ""
    )


def test_a_username_without_a_password_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("OPK_SIGN_REGISTRY_PASSWORD", "OPK_SIGN_REGISTRY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    argv = ["verify", IMAGE, "--repository", "o/app", "--no-trust-repo"]
    assert main([*argv, "--registry-username", "octocat"]) == EXIT_USAGE
    assert "without a password" in capsys.readouterr().err


def test_each_distinct_image_is_verified_once() -> None:
    asked: list[str] = []

    def options(image: str) -> VerifyOptions:
        asked.append(image)
        raise UsageError(f"stop at {image}")

    lines = ["alpine", "docker.io/library/alpine:latest"] + ["r.example/o/a:1"] * 300
    with RegistryClient(Keychain.anonymous()) as client:
        results = list(verify_images(lines, options, client=client, jobs=4))
    assert asked == ["alpine", "r.example/o/a:1"]  # once each, however spelled or repeated
    assert [r.image for r in results] == lines  # reported for every line, in order
    assert all(r.exit_code == EXIT_USAGE for r in results)
