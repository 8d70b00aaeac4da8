"""``opk-sign library sign`` then ``library verify`` (issue 17, item 2) on a library file of three
entries x two architectures with shared tags, images laid out as BuildKit writes them
(tests/services/buildkit.py) on olareg, signed through the GitHub OIDC emulator."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from opk_sign.cli.main import main
from opk_sign.errors import EXIT_NO_SIGNATURES, EXIT_OK, EXIT_POLICY_MISMATCH
from opk_sign.library.bashbrew import parse_library
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from tests.services.buildkit import push_buildkit_image
from tests.services.oidc import CountingEmulator, generated_op_key
from tests.services.registries import Registry, olareg

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("library")]

REPO = "docker-library/busybox"
GIT = "https://github.com/docker-library/busybox.git"
C1, C2, C3, C4, C5 = (c * 40 for c in "12345")

#: Written for the tests in the documented format (official-images README, "Instruction format").
LIBRARY = f"""\
# this file is written for opk-sign's tests
Maintainers: Octo Maintainer <octo@example.com> (@octo-maintainer),
             Other Maintainer (@other-maintainer)
GitRepo: {GIT}
Architectures: amd64, arm64v8

Tags: 1.37.0-glibc, 1.37-glibc, glibc
SharedTags: 1.37.0, 1.37, latest
GitCommit: {C1}
Directory: latest/glibc

# per-architecture commit, as official images write it
Tags: 1.37.0-musl, 1.37-musl, musl
GitCommit: {C2}
arm64v8-GitCommit: {C3}
Directory: latest/musl

Tags: 1.36.1-uclibc, uclibc
SharedTags: 1.36
GitFetch: refs/heads/dist-1.36
GitCommit: {C4}
Directory: 1.36/uclibc
"""
ENTRY_TWO_LINE = 13


@dataclass(frozen=True)
class Setup:
    registry: Registry
    emulator: CountingEmulator
    library: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    emulator = CountingEmulator(key=generated_op_key(0))
    workdir = tmp_path_factory.mktemp("library")
    with emulator, olareg(workdir / "olareg") as registry:
        emulator.set_claims(ref="refs/heads/master", repository=REPO)
        library = workdir / "busybox"
        library.write_text(LIBRARY)
        parsed = parse_library(LIBRARY)
        with RegistryClient(Keychain.anonymous()) as client:
            for entry in parsed.entries:
                amd64 = entry.sources["amd64"]
                push_buildkit_image(
                    client,
                    f"{registry.host}/library/busybox:{entry.tags[0]}",
                    ("linux/amd64", "linux/arm64/v8"),
                    repository=GIT,
                    commit=amd64.commit,
                    commits={"linux/arm64/v8": entry.sources["arm64v8"].commit},
                    directory=amd64.directory,
                    extra_tags=entry.all_tags[1:],
                )
        yield Setup(registry, emulator, library)


def cli(setup: Setup, *args: str) -> int:
    env = {**setup.emulator.env(), "OPK_SIGN_OIDC_ISSUER": setup.emulator.issuer}
    with mock.patch.dict(os.environ, env):
        return main(["library", *args, "--registry", setup.registry.host])


def verify(setup: Setup, library: Path, *args: str) -> int:
    return cli(
        setup,
        "verify",
        str(library),
        "--issuer",
        setup.emulator.issuer,
        "--repository",
        REPO,
        "--output",
        "json",
        *args,
    )


def output(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


@pytest.fixture(scope="module")
def signed(setup: Setup) -> Setup:
    setup.emulator.reset_counts()
    assert cli(setup, "sign", str(setup.library), "--no-timestamp") == EXIT_OK
    # One ID token for the whole library (3 entries, 12 tags, 3 distinct images).
    assert [p for p in setup.emulator.requests if p.endswith("/token")] == ["GET /token"]
    return setup


def test_library_sign_then_verify_every_tag_once(
    signed: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    summary = tmp_path / "summary.md"
    assert verify(signed, signed.library, "--summary", str(summary)) == EXIT_OK
    doc = output(capsys)
    tags = [t["tag"] for t in doc["tags"]]
    expected = [t.tag for t in parse_library(LIBRARY).tags()]
    assert tags == expected and len(tags) == len(set(tags)) == 12
    assert all(t["result"]["outcome"] == "verified" for t in doc["tags"])
    latest = next(t for t in doc["tags"] if t["tag"] == "latest")
    assert latest["entries"] == [7]
    for manifest in latest["result"]["manifests"][1:]:
        (provenance,) = [b for b in manifest["bundles"] if (b.get("buildkit") or {}).get("source")]
        assert provenance["buildkit"]["source"]["commit"] == C1
    musl = next(t for t in doc["tags"] if t["tag"] == "musl")
    commits = {
        m["platform"]: b["buildkit"]["source"]["commit"]
        for m in musl["result"]["manifests"][1:]
        for b in m["bundles"]
        if (b.get("buildkit") or {}).get("source")
    }
    assert commits == {"linux/amd64": C2, "linux/arm64/v8": C3}
    table = summary.read_text()
    assert "Verified 12 of 12 tags" in table and "| `1.36` | 18 |" in table


def test_a_wrong_git_commit_is_reported_for_its_entry(
    signed: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "busybox"
    wrong.write_text(LIBRARY.replace(f"arm64v8-GitCommit: {C3}", f"arm64v8-GitCommit: {C5}"))
    capsys.readouterr()

    assert verify(signed, wrong) == EXIT_POLICY_MISMATCH

    doc = output(capsys)
    failed = {t["tag"]: t for t in doc["tags"] if t["result"]["outcome"] != "verified"}
    assert set(failed) == {"1.37.0-musl", "1.37-musl", "musl"}
    for tag in failed.values():
        assert tag["entries"] == [ENTRY_TWO_LINE]
        assert tag["result"]["outcome"] == "policy-mismatch"
        assert f"source commit {C3!r}; the policy requires {C5!r}" in tag["result"]["message"]


def test_an_unsigned_tag_is_reported(
    signed: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RegistryClient(Keychain.anonymous()) as client:
        push_buildkit_image(
            client,
            f"{signed.registry.host}/library/busybox:edge",
            ("linux/amd64", "linux/arm64/v8"),
            repository=GIT,
            commit=C5,
        )
    more = tmp_path / "busybox"
    more.write_text(LIBRARY + f"\nTags: edge\nGitCommit: {C5}\n")
    capsys.readouterr()

    assert verify(signed, more) == EXIT_NO_SIGNATURES

    doc = output(capsys)
    failed = [t for t in doc["tags"] if t["result"]["outcome"] != "verified"]
    assert [(t["tag"], t["result"]["outcome"]) for t in failed] == [("edge", "no-signatures")]
    assert failed[0]["entries"] == [parse_library(more.read_text()).entries[-1].line]


def test_library_sign_reports_a_missing_tag_and_signs_the_rest(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = tmp_path / "busybox"
    partial.write_text(LIBRARY + f"\nTags: missing\nGitCommit: {C5}\n")
    capsys.readouterr()
    assert cli(setup, "sign", str(partial), "--no-timestamp", "--output", "json") == 15
    doc = output(capsys)
    rows = {t["tag"]: t for t in doc["tags"]}
    assert rows["missing"]["signed"] is False and rows["missing"]["exitCode"] == 15
    assert all(r["signed"] for tag, r in rows.items() if tag != "missing")


def test_a_malformed_library_file_is_refused_with_its_line(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "busybox"
    bad.write_text(LIBRARY.replace("Directory: latest/musl", "Dockerfile: latest/musl"))
    assert verify(setup, bad) == 2
    assert f"{bad}, line 16: unknown field 'Dockerfile'" in capsys.readouterr().err


class _Signing(Exception):
    """Raised by the stand-in for sign_images: what it was handed is all this test wants."""


@pytest.mark.parametrize(
    ("flags", "environ", "tlog"),
    [
        ((), {"OPK_SIGN_TLOG": ""}, "auto"),  # sign's default: public repositories are logged
        ((), {"OPK_SIGN_TLOG": "always"}, "always"),
        (("--tlog", "never"), {"OPK_SIGN_TLOG": "always"}, "never"),
        (("--tlog", "always", "--tlog-url", "https://log.example"), {}, "always"),
    ],
)
def test_library_sign_logs_as_sign_does(
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    flags: tuple[str, ...],
    environ: dict[str, str],
    tlog: str,
) -> None:
    """``--tlog``, ``--tlog-url`` and their environment reach the signing of every tag. Nothing is
    signed here: the emulator's tokens must never reach a public log (tests/conftest.py)."""
    handed: list[Any] = []

    def sign_images(images: list[str], **kwargs: Any) -> None:
        handed.append(kwargs["options"])
        raise _Signing

    monkeypatch.setattr("opk_sign.sign.batch.sign_images", sign_images)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(_Signing):
        cli(setup, "sign", str(setup.library), *flags)
    (options,) = handed
    assert options.tlog == tlog
    if "--tlog-url" in flags:
        assert options.tlog_url == "https://log.example"
