"""``sign`` and ``library sign`` take one definition of the signing options (cli/options.py):
the same flags, defaults and environment, so that both log public repositories alike. The run
of ``library sign`` with them is tests/integration/test_library.py."""

from __future__ import annotations

import argparse
import re

import pytest

from opk_sign.cli.main import build_parser, main
from opk_sign.cli.options import PUBLIC_TLOG, PUBLIC_TSA, signing
from opk_sign.errors import EXIT_USAGE
from opk_sign.tlog.modes import DEFAULT_TLOG_URL
from opk_sign.trust.tsa import DEFAULT_TIMESTAMP_URL

SIGN = ["sign", "r.io/a:v1"]
LIBRARY_SIGN = ["library", "sign", "library/busybox"]


def parse(argv: list[str]) -> argparse.Namespace:
    # Built now: the defaults are read from the environment when the parser is built.
    return build_parser().parse_args(argv)


@pytest.mark.parametrize("command", [SIGN, LIBRARY_SIGN], ids=["sign", "library-sign"])
@pytest.mark.parametrize("mode", ["auto", "always", "never"])
def test_tlog_reaches_the_signing_options(command: list[str], mode: str) -> None:
    args = parse([*command, "--tlog", mode, "--tlog-url", "https://log.example"])
    _, options = signing(args, {})
    assert (options.tlog, options.tlog_url) == (mode, "https://log.example")


@pytest.mark.parametrize("command", [SIGN, LIBRARY_SIGN], ids=["sign", "library-sign"])
def test_defaults_are_auto_and_the_environments(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPK_SIGN_TLOG", "OPK_SIGN_TLOG_URL", "OPK_SIGN_OIDC_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    _, options = signing(parse(command), {})
    assert (options.tlog, options.tlog_url) == ("auto", DEFAULT_TLOG_URL)
    assert options.timestamp_url == DEFAULT_TIMESTAMP_URL
    monkeypatch.setenv("OPK_SIGN_TLOG", "never")
    monkeypatch.setenv("OPK_SIGN_TLOG_URL", "https://log.example")
    _, options = signing(parse(command), {"OPK_SIGN_TIMESTAMP_URL": "https://tsa.example"})
    assert (options.tlog, options.tlog_url) == ("never", "https://log.example")
    assert options.timestamp_url == "https://tsa.example"
    assert signing(parse([*command, "--no-timestamp"]), {})[1].timestamp_url is None


def test_library_sign_keeps_its_provenance_flag() -> None:
    args = parse([*LIBRARY_SIGN, "--no-provenance", "--oidc-issuer", "https://i.example"])
    _, options = signing(args, {}, provenance=args.provenance)
    assert options.provenance is False and args.oidc_issuer == "https://i.example"


def test_a_bad_tlog_mode_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*LIBRARY_SIGN, "--tlog", "sometimes"]) == 2
    assert "argument --tlog: invalid choice: 'sometimes'" in capsys.readouterr().err


def signing_section(command: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The "signing" options of COMMAND --help, without whitespace: where lines wrap depends on
    the command's other options."""
    assert main([*command[:-1], "--help"]) == 0
    out = capsys.readouterr().out
    section = re.search(r"^signing:\n(.*?)(?:\n\n|\Z)", out, re.MULTILINE | re.DOTALL)
    assert section is not None, out
    return "".join(section.group(1).split())


def test_sign_and_library_sign_list_the_same_signing_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sign = signing_section(SIGN, capsys)
    assert sign == signing_section(LIBRARY_SIGN, capsys)
    for flag in ("--timestamp-url", "--no-timestamp", "--oidc-issuer", "--tlog{", "--tlog-url"):
        assert flag in sign


def test_the_help_names_the_real_defaults() -> None:
    assert (PUBLIC_TSA, PUBLIC_TLOG) == (DEFAULT_TIMESTAMP_URL, DEFAULT_TLOG_URL)


@pytest.mark.parametrize("command", [["sign", "ghcr.io/o/app:1"], ["library", "sign", "x"]])
def test_a_bad_tlog_mode_in_the_environment_names_the_variable(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPK_SIGN_TLOG", "Always")
    assert main(command) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "$OPK_SIGN_TLOG is 'Always'" in err
