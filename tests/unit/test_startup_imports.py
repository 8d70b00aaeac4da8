"""Start-up (issue 13): what the command line imports. ``opk-sign --help`` loads no command,
a command's ``--help`` only that command, neither the HTTP stack, the crypto, TUF, YAML, the
Actions toolkit nor package metadata; a verification without TSA certificates or a trust
repository loads neither TUF nor the timestamp code nor YAML.

Each case runs the real CLI in a fresh interpreter and reads ``sys.modules`` at its end: import
sets are deterministic, times are not (bench/startup_vs_cosign.py measures those).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opk_sign.cli.main import COMMANDS
from tests.unit.attacks.world import DIGEST, REFERENCE, REPOSITORY, dump, world

#: Runs ``main(argv)`` and writes the modules then imported, as JSON, to the file $MODULES names.
DRIVER = """
import json, os, sys
from opk_sign.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
with open(os.environ["MODULES"], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""

#: Never on a help path: each costs tens of milliseconds and no help needs it.
HEAVY = (
    "requests",
    "urllib3",
    "http.client",
    "ssl",
    "cryptography",
    "tuf",
    "securesystemslib",
    "rfc3161_client",
    "yaml",
    "actions_toolkit",
    "jwt",
    "gmpy2",
    "platformdirs",
    "importlib.metadata",
)

#: Only for TSA certificates or a trust repository, and policy files.
NOT_FOR_A_PLAIN_VERIFY = (
    "tuf",
    "securesystemslib",
    "rfc3161_client",
    "cryptography.x509",
    "yaml",
    "jwt",
    "actions_toolkit",
    "opk_sign.trust.client",
    "opk_sign.trust.timestamp",
    "opk_sign.tlog",  # only with transparency-log keys (issue 14)
    "opk_sign.admission",
    "opk_sign.containerd",
    "opk_sign.library",
)


def imported(argv: list[str], tmp_path: Path, **env: str) -> tuple[int, set[str], str]:
    """The exit code, the modules imported and the standard output of ``opk-sign ARGV``."""
    modules = tmp_path / "modules.json"
    trust_dir = tmp_path / "no-trust-repo"  # installed nowhere
    trust_dir.mkdir(exist_ok=True)
    done = subprocess.run(
        # -I: no PYTHON* variables, user site or working directory can add imports of their own.
        [sys.executable, "-I", "-c", DRIVER, *argv],
        env={**os.environ, "OPK_SIGN_TRUST_DIR": str(trust_dir), **env, "MODULES": str(modules)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert modules.exists(), done.stderr
    result = json.loads(modules.read_text())
    return result["code"], set(result["modules"]), done.stdout


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (each a package with its submodules) ``modules`` holds."""
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


def command_modules(modules: set[str]) -> set[str]:
    return {f"opk_sign.cli.{module}" for _, module, _ in COMMANDS} & modules


def test_top_level_help_loads_no_command(tmp_path: Path) -> None:
    code, modules, out = imported(["--help"], tmp_path)
    assert code == 0 and "verify" in out and "pr-check" in out
    assert command_modules(modules) == set()
    assert loaded(modules, HEAVY) == []
    assert "typing" not in modules  # nothing on this path needs it at run time
    assert "shutil" not in modules  # the terminal's width is read without it (cli.main)


@pytest.mark.parametrize("columns", ["", "40", "200", "0", "x"])
def test_the_help_width_is_argparses(columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from opk_sign.cli.main import terminal_columns

    monkeypatch.setenv("COLUMNS", columns)
    assert terminal_columns() == shutil.get_terminal_size().columns


@pytest.mark.parametrize("name", [name for name, _, _ in COMMANDS])
def test_a_commands_help_loads_that_command_only(name: str, tmp_path: Path) -> None:
    module = dict((n, m) for n, m, _ in COMMANDS)[name]
    code, modules, out = imported([name, "--help"], tmp_path)
    assert code == 0 and f"usage: opk-sign {name}" in out
    assert command_modules(modules) == {f"opk_sign.cli.{module}"}
    assert loaded(modules, HEAVY) == []


@pytest.mark.parametrize("name", ["verify", "sign", "inspect", "copy"])
def test_the_main_commands_help_needs_no_dataclasses_or_pathlib(name: str, tmp_path: Path) -> None:
    """Defining the options is argparse and constants (opk_sign.claims, opk_sign.names): the
    dataclasses, pathlib (with urllib.parse) and the policy and HTTP modules are the commands'
    work, not their help's (`verify --help` in bench/RESULTS.md)."""
    code, modules, _ = imported([name, "--help"], tmp_path)
    assert code == 0
    heavy = ("dataclasses", "inspect", "pathlib", "urllib", "opk_sign.identity", "opk_sign.http")
    assert loaded(modules, heavy) == []


def test_help_anywhere_and_usage_errors_load_nothing_more(tmp_path: Path) -> None:
    code, modules, out = imported(["-h", "verify"], tmp_path)
    assert code == 0 and "COMMAND" in out and command_modules(modules) == set()
    code, modules, _ = imported(["no-such-command"], tmp_path)
    assert code == 2 and command_modules(modules) == set() and loaded(modules, HEAVY) == []
    code, modules, out = imported(["verify", "x", "-h"], tmp_path)
    assert code == 0 and "usage: opk-sign verify" in out
    assert loaded(modules, HEAVY) == []


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``verify --bundle FILE --jwks FILE``: a whole verification, nothing fetched."""
    tmp = tmp_path_factory.mktemp("offline")
    signature, jwks = tmp / "sig.json", tmp / "jwks.json"
    signature.write_bytes(dump(world().signature))
    jwks.write_text(json.dumps(world().keys.jwks))
    return [
        *("verify", f"{REFERENCE}@{DIGEST}", "--repository", REPOSITORY),
        *("--jwks", str(jwks), "--bundle", str(signature), "--expiry-policy", "never"),
        *("-o", "json"),
    ]


@pytest.mark.parametrize(
    "trust", [["--no-trust-repo"], []], ids=["no-trust-repo", "none-installed"]
)
def test_a_plain_verification_loads_no_trust_repository_timestamps_or_yaml(
    offline_run: list[str], trust: list[str], tmp_path: Path
) -> None:
    code, modules, out = imported([*offline_run, *trust], tmp_path)
    assert code == 0 and json.loads(out)["outcome"] == "verified", out
    assert loaded(modules, NOT_FOR_A_PLAIN_VERIFY) == []
    assert {"opk_sign.pktoken.gq", "gmpy2"} <= modules  # the GQ256 proof was checked


def test_the_command_table_is_what_each_command_registers() -> None:
    """``opk-sign --help`` lists COMMANDS' lines without importing the modules: each must be
    the help its module's ``register`` gives, and every module with a ``register`` is listed."""
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    for name, module, line in COMMANDS:
        before = len(subparsers._choices_actions)
        importlib.import_module(f"opk_sign.cli.{module}").register(subparsers)
        (added,) = subparsers._choices_actions[before:]
        assert (added.dest, added.help) == (name, line)
    package = Path(importlib.import_module("opk_sign.cli").__path__[0])
    registering = {
        path.stem for path in package.glob("*.py") if "\ndef register(" in path.read_text()
    }
    assert registering == {module for _, module, _ in COMMANDS}


def test_signing_without_a_log_loads_no_log_client() -> None:
    """``sign --tlog never`` (and ``auto`` for a private repository) decides from
    opk_sign.tlog.modes; the log client, its HTTP and proof code load only to log."""
    code = "import sys, opk_sign.sign.image; print(sorted(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    modules = set(json.loads(done.stdout.replace("'", '"')))
    assert "opk_sign.tlog.modes" in modules
    assert loaded(modules, ("opk_sign.tlog.client", "opk_sign.tlog.checkpoint")) == []
