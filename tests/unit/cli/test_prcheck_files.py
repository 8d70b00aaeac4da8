"""pr-check reads a change's files as hostile: a Dockerfile committed as a symbolic link (to
/dev/zero, or to a file of the runner) is not followed, and none is read past 1 MiB (red team:
a link to /dev/zero was a MemoryError traceback)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opk_sign.cli.main import main
from opk_sign.errors import EXIT_USAGE

POLICY = ["--issuer", "https://token.actions.githubusercontent.com", "--repository", "o/r"]


def _run(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["pr-check", *POLICY, "--no-trust-repo", "--dockerfile", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("target", ["/dev/zero", "/etc/hostname"])
def test_a_dockerfile_that_is_a_symbolic_link_is_not_followed(
    target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "Dockerfile"
    os.symlink(target, link)
    code, err = _run(link, capsys)
    assert code == EXIT_USAGE and "not a regular file" in err and "Traceback" not in err


def test_a_dockerfile_over_a_mebibyte_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "Dockerfile"
    big.write_text("FROM alpine\n" + "# padding\n" * 120_000)
    code, err = _run(big, capsys)
    assert code == EXIT_USAGE and "larger than 1048576 bytes" in err
