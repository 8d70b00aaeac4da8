"""What a release ships and pins (issue 16; docs/release.md, ADR 0011), checked from the files:
``--version``, the locks against pyproject.toml, the Dockerfile, Dependabot, the release
workflow's permissions and pins, the README's links (PyPI renders them), the shell assets.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from opk_sign._version import __version__
from opk_sign.cli import version
from opk_sign.cli.main import main
from opk_sign.cli.version import describe

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = ROOT / "requirements"


def pins(path: Path) -> dict[str, str]:
    """Name to version of every requirement a lock pins, each checked to carry a hash."""
    found: dict[str, str] = {}
    # An entry: its `name==version` line and the indented lines (hashes, comments) after it.
    for entry in re.split(r"\n(?=\S)", path.read_text()):
        pinned = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", entry)
        if pinned is None:
            continue
        name, version = pinned.groups()
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"{path.name}: {name} has no hash"
        found[canonicalize_name(name)] = version
    assert found, path
    return found


# --- --version --------------------------------------------------------------------------------


def test_version_names_the_package_version_and_the_checkout_commit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert PYPROJECT["project"]["version"] == __version__
    assert main(["--version"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"opk-sign {__version__}")
    if (ROOT / ".git").exists():  # a checkout: the commit git names
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert f"(commit {head}" in line


def test_version_without_a_checkout_is_the_version_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(version, "checkout_commit", lambda: None)
    assert describe() == f"opk-sign {__version__}"


def test_version_when_git_is_missing_is_the_version_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert version.checkout_commit() is None


def test_help_start_up_runs_no_git_and_reads_no_package_metadata() -> None:
    probe = (
        "import sys\nfrom opk_sign.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('subprocess', 'importlib.metadata', 'shtab') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- the locks ---------------------------------------------------------------------------------


def test_runtime_lock_pins_every_dependency_within_its_range() -> None:
    runtime = pins(LOCKS / "runtime.txt")
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in runtime, f"{name} is not in requirements/runtime.txt: run `make lock`"
        assert requirement.specifier.contains(runtime[name], prereleases=True), (name, spec)


def test_ci_lock_pins_the_runtime_and_the_test_extra_alike() -> None:
    runtime, ci = pins(LOCKS / "runtime.txt"), pins(LOCKS / "ci.txt")
    for spec in PYPROJECT["project"]["optional-dependencies"]["test"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in ci, f"{name} is not in requirements/ci.txt: run `make lock`"
        assert requirement.specifier.contains(ci[name], prereleases=True), (name, spec)
    # The image and CI run the same versions of what they share.
    assert {name: ci.get(name) for name in runtime} == runtime


def test_build_lock_satisfies_the_build_system() -> None:
    build = pins(LOCKS / "build.txt")
    for spec in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(spec)
        assert requirement.specifier.contains(build[canonicalize_name(requirement.name)])
    assert "pip" in build


def test_a_lock_entry_without_a_hash_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("requests==2.32.0\n    # via opk-sign\n")
    with pytest.raises(AssertionError, match="no hash"):
        pins(lock)


# --- the Dockerfile ----------------------------------------------------------------------------

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_dockerfile_base_is_pinned_by_digest_and_overridable() -> None:
    (default,) = re.findall(r"(?m)^ARG BASE_IMAGE=(\S+)$", DOCKERFILE)
    assert re.fullmatch(r"[a-z0-9./_-]+:[\w.-]+@sha256:[0-9a-f]{64}", default)
    froms = re.findall(r"(?m)^FROM (\S+)", DOCKERFILE)
    assert froms == ["${BASE_IMAGE}", "${BASE_IMAGE}"]  # two stages, both the pinned base


def test_dockerfile_installs_only_the_lock_with_hashes_and_keeps_the_default_user() -> None:
    assert DOCKERFILE.count("--require-hashes") == 2
    assert "-r requirements/runtime.txt" in DOCKERFILE
    # Nothing else is resolved from an index: opk-sign itself goes in without dependencies.
    assert "--no-deps --no-index" in DOCKERFILE
    assert not re.search(r"(?m)^USER\b", DOCKERFILE)
    assert "GitHub runs container actions as root" in DOCKERFILE
    for label in ("source", "version", "revision"):
        assert f"org.opencontainers.image.{label}=" in DOCKERFILE
    # Only the runtime virtualenv and the entry point reach the final stage.
    final = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    assert re.findall(r"(?m)^COPY (.*)$", final) == [
        "--from=build /opt/opk-sign /opt/opk-sign",
        "entrypoint.py /opt/opk-sign/entrypoint.py",
    ]


def test_dockerignore_lets_in_only_what_the_dockerfile_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = set()
    for sources in re.findall(r"(?m)^COPY (?!--from)(.*) \S+$", DOCKERFILE):
        copied.update(sources.split())
    assert copied <= allowed, copied - allowed


# --- Dependabot, the release workflow -----------------------------------------------------------


def test_dependabot_keeps_every_pin_fresh() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    updates = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(updates) == {"pip", "github-actions", "gomod", "docker"}
    assert updates["pip"]["directory"] == "/"  # pyproject.toml and requirements/
    go_mods = {f"/{p.parent.relative_to(ROOT)}" for p in ROOT.glob("tests/**/go.mod")}
    assert go_mods <= set(updates["gomod"]["directories"])


RELEASE = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())


def test_release_runs_on_version_tags_with_least_privilege() -> None:
    assert RELEASE[True]["push"]["tags"] == ["v[0-9]+.[0-9]+.[0-9]+"]  # `on` is YAML 1.1 True
    assert RELEASE["permissions"] == {}
    jobs = RELEASE["jobs"]
    with_id_token = {name for name, job in jobs.items() if "id-token" in job.get("permissions", {})}
    assert with_id_token == {"sign", "pypi"}
    # The image is signed through the reusable signing workflow, with provenance (its default).
    assert jobs["sign"]["uses"] == "./.github/workflows/sign.yml"
    assert jobs["sign"]["with"] == {"image": "${{ needs.image.outputs.image }}"}
    assert jobs["pypi"]["needs"] == ["publish"] and jobs["pypi"]["environment"]["name"] == "pypi"
    assert set(jobs["publish"]["needs"]) == {"image", "sign", "dists"}


def test_release_actions_are_pinned_by_commit() -> None:
    uses = re.findall(
        r"(?m)^\s+(?:- )?uses: (\S+)", (ROOT / ".github/workflows/release.yml").read_text()
    )
    assert any(u.startswith("pypa/gh-action-pypi-publish@") for u in uses)
    for use in uses:
        if not use.startswith("./"):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", use), use


# --- README, shell assets -----------------------------------------------------------------------


def test_readme_links_are_absolute_so_pypi_renders_them() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", (ROOT / "README.md").read_text())
    assert links
    relative = [link for link in links if not re.match(r"https?://|#|mailto:", link)]
    assert relative == [], (
        "README links must be absolute (https://github.com/opk-sign/opk-sign/blob/main/PATH): "
        "PyPI shows the README and cannot resolve relative links"
    )
    project = PYPROJECT["project"]["urls"]["Homepage"]
    own = [link for link in links if re.search(r"/(blob|tree)/main/", link)]
    assert own and all(link.startswith(f"{project}/") for link in own)


def test_completion_prints_the_shipped_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    for shell, name in (("bash", "opk-sign.bash"), ("zsh", "_opk-sign")):
        assert main(["completion", shell]) == 0
        shipped = (ROOT / "src" / "opk_sign" / "share" / name).read_text()
        assert capsys.readouterr().out == shipped
        assert "_shtab_opk_sign" in shipped
    assert main(["completion", "fish"]) == 2


# --- no dependency the package does not use ----------------------------------------------------

#: The module each runtime dependency provides (a new dependency must be added here).
IMPORT_NAMES = {
    "cryptography": "cryptography",
    "pyjwt": "jwt",
    "requests": "requests",
    "actions-toolkit": "actions_toolkit",
    "tuf": "tuf",
    "rfc3161-client": "rfc3161_client",
    "platformdirs": "platformdirs",
    "pyyaml": "yaml",
    "gmpy2": "gmpy2",
}


def test_every_runtime_dependency_is_imported_by_the_package() -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "src" / "opk_sign").rglob("*.py"))
    for spec in PYPROJECT["project"]["dependencies"]:
        name = canonicalize_name(Requirement(spec).name)
        assert name in IMPORT_NAMES, f"{name}: add its module to IMPORT_NAMES"
        module = IMPORT_NAMES[name]
        assert re.search(rf"(?m)^\s*(?:import|from) {module}\b", sources), f"{name} is unused"
