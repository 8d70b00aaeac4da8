"""The CLI's contract: usage errors exit 2, errors print their diagnostics and exit code."""

from __future__ import annotations

import pytest

from opk_sign import __version__
from opk_sign.cli.main import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["no-such-command"], ["dev", "github-oidc", "--port", "x"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err
