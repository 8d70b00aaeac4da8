"""The package as PyPI gets it (issue 16, "What it must show" 3): the sdist and the wheel build
(``python -m build``, with the locked backend), ``twine check --strict`` passes, the wheel carries
the license, the shell completions and the man page, and it installs into a fresh virtualenv
with the locked runtime, where ``opk-sign --version`` prints the version; the completion scripts
and the man page are generated from the parser and equal the shipped ones.
"""

from __future__ import annotations

import email.parser
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from opk_sign._version import __version__
from tests.services.container_build import ROOT, copy_checkout

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("package")]

SHARE = ("opk_sign/share/opk-sign.bash", "opk_sign/share/_opk-sign", "opk_sign/share/opk-sign.1")


def run(argv: list[str | Path], cwd: Path = ROOT, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # In a copy: a build writes build/ and *.egg-info next to the sources.
    checkout = copy_checkout(tmp_path_factory.mktemp("package") / "opk-sign")
    out = checkout / "dist"
    run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--sdist",
            "--wheel",
            "--outdir",
            out,
            ".",
        ],
        checkout,
    )
    yield out


def test_sdist_and_wheel_build_and_pass_twine_check(dists: Path) -> None:
    names = sorted(p.name for p in dists.iterdir())
    assert names == [f"opk_sign-{__version__}-py3-none-any.whl", f"opk_sign-{__version__}.tar.gz"]
    report = run([sys.executable, "-m", "twine", "check", "--strict", *sorted(dists.iterdir())])
    assert report.count("PASSED") == 2


def test_wheel_metadata_license_and_shipped_assets(dists: Path) -> None:
    wheel = dists / f"opk_sign-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = email.parser.Parser().parsestr(
            archive.read(f"opk_sign-{__version__}.dist-info/METADATA").decode()
        )
    assert set(SHARE) <= names
    assert f"opk_sign-{__version__}.dist-info/licenses/LICENSE" in names
    # PEP 639: an SPDX expression, no license classifier; the README is the long description.
    assert metadata["License-Expression"] == "Apache-2.0"
    assert not [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert any(
        url.startswith("Changelog, https://") for url in metadata.get_all("Project-URL") or []
    )
    # Only the runtime: no test tooling among the requirements outside the extra.
    runtime = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert not any(r.startswith(("pytest", "shtab", "argparse-manpage")) for r in runtime)
    with tarfile.open(dists / f"opk_sign-{__version__}.tar.gz") as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"LICENSE", "README.md", "pyproject.toml"} <= members
    assert {f"src/{name}" for name in SHARE} <= members


def test_wheel_installs_in_a_fresh_venv_and_prints_its_version(dists: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    # The locked runtime (hash-checked, as the image installs it), then the wheel alone.
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
    run([*pip, "--require-hashes", "--no-deps", "-r", ROOT / "requirements" / "runtime.txt"])
    run([*pip, "--no-deps", "--no-index", dists / f"opk_sign-{__version__}-py3-none-any.whl"])
    run([sys.executable, "-m", "pip", "--python", python, "check"])
    # Not a checkout: the version alone.
    assert (
        run([venv / "bin" / "opk-sign", "--version"], cwd=tmp_path) == f"opk-sign {__version__}\n"
    )
    bash = run([venv / "bin" / "opk-sign", "completion", "bash"], cwd=tmp_path)
    assert bash == (ROOT / "src" / "opk_sign" / "share" / "opk-sign.bash").read_text()


def test_completion_scripts_and_man_page_are_generated_from_the_parser(tmp_path: Path) -> None:
    run([sys.executable, ROOT / "scripts" / "shell_assets.py", "--out", tmp_path])
    for name in ("opk-sign.bash", "_opk-sign", "opk-sign.1"):
        generated = (tmp_path / name).read_text()
        shipped = (ROOT / "src" / "opk_sign" / "share" / name).read_text()
        assert generated == shipped, f"{name} is out of date: run `make shell-assets`"
    # bash accepts the script, and it completes the commands.
    probe = (
        f"source {tmp_path / 'opk-sign.bash'}; COMP_WORDS=(opk-sign ver); COMP_CWORD=1; "
        "COMP_LINE='opk-sign ver'; COMP_POINT=${#COMP_LINE}; _shtab_opk_sign; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    assert run(["bash", "-c", probe]).split() == ["verify"]
    man = (tmp_path / "opk-sign.1").read_text()
    assert man.startswith('.TH OPK\\-SIGN "1"') and "opk\\-sign verify" in man
