"""The action image, built for real from the Dockerfile and run as a runner runs a docker action
(issue 16, "What it must show" 1).

buildah (chroot isolation, vfs storage) builds the Dockerfile from a Debian base the tests make
with mmdebstrap and push to a loopback registry (tests/services/container_build.py: the pinned
python:3.12-slim cannot be pulled here). The image's own ENTRYPOINT then runs under ``buildah
run`` with what GitHub gives a container action: the INPUT_* variables, the GITHUB_* and RUNNER_*
variables, the token request variables (the GitHub OIDC emulator), HOME, the workspace and the file
commands bind-mounted at /github/..., root as the user and /github/workspace as the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign._version import __version__
from opk_sign.cli.main import main as cli_main
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from tests.services.container_build import (
    ROOT,
    Buildah,
    base_image,
    build_action_image,
    exclusive,
    in_use,
    tidy,
)
from tests.services.container_build import image_size as measured_size
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, distribution

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("buildah")]

LOCK = ROOT / "requirements" / "runtime.txt"
TAG = "localhost/opk-sign-action:test"
REVISION = "0123456789abcdef0123456789abcdef01234567"
REPOSITORY = "octo-org/app"
SIGNER = f"{REPOSITORY}/.github/workflows/release.yml@refs/heads/main"


@dataclass(frozen=True)
class Built:
    buildah: Buildah
    image: str
    registry: Registry
    seconds: float
    #: One working container of the image for every test (with vfs each `buildah from` copies
    #: the whole image), and where its file system is on this machine.
    container: str
    rootfs: Path


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    buildah = Buildah()
    start = time.monotonic()
    with (
        distribution(tmp_path_factory.mktemp("image-registry")) as registry,
        contextlib.ExitStack() as using,
    ):
        with exclusive(buildah):
            base = base_image(buildah)
            tidy(buildah, keep=base)
            digest = buildah.push(base, registry.ref("debian/python3", "bookworm"))
            image = build_action_image(
                buildah,
                base=f"{registry.host}/debian/python3@{digest}",
                tag=TAG,
                build_args={"VERSION": __version__, "REVISION": REVISION},
            )
            using.enter_context(in_use(buildah))
        seconds = time.monotonic() - start
        print(f"\naction image {image[:19]}: {measured_size(buildah, image)}, {seconds:.0f} s")
        with buildah.container(image) as container:
            rootfs = Path(buildah.run("mount", container).stdout.strip())
            yield Built(buildah, image, registry, seconds, container, rootfs)


@pytest.fixture(scope="session")
def image_emulator() -> Iterator[GitHubOIDCEmulator]:
    with GitHubOIDCEmulator(key=generated_op_key(0), claims={"repository": REPOSITORY}) as running:
        yield running


def config(built: Built) -> dict[str, object]:
    data = built.buildah.inspect(built.image)
    oci = data["OCIv1"]
    assert isinstance(oci, dict)
    section = oci["config"]
    assert isinstance(section, dict)
    return section


def locked(path: Path) -> dict[str, str]:
    """Name (normalized) to version of every package a requirements lock pins."""
    pins = re.findall(r"(?m)^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", path.read_text())
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    outputs: str
    summary: str
    written: list[str]


def run_as_runner(
    built: Built, tmp_path: Path, emulator: GitHubOIDCEmulator, inputs: Mapping[str, str]
) -> Run:
    """The image's ENTRYPOINT with a runner's variables and mounts; also which files of the
    container's own file system it wrote (any is a fault: only the runner's paths may change)."""
    runner = tmp_path / "runner"
    mounts = {
        "workspace": "/github/workspace",
        "home": "/github/home",
        "file_commands": "/github/file_commands",
        "workflow": "/github/workflow",
    }
    for name in mounts:
        (runner / name).mkdir(parents=True)
    (runner / "file_commands" / "set_output").write_text("")
    (runner / "file_commands" / "step_summary").write_text("")
    (runner / "workflow" / "event.json").write_text("{}")
    env = {
        # What the runner sets for every container action (docker run -e ...).
        "HOME": "/github/home",
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_WORKSPACE": "/github/workspace",
        "GITHUB_OUTPUT": "/github/file_commands/set_output",
        "GITHUB_STEP_SUMMARY": "/github/file_commands/step_summary",
        "GITHUB_EVENT_PATH": "/github/workflow/event.json",
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_SHA": REVISION,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_API_URL": "https://api.github.com",
        "RUNNER_OS": "Linux",
        "RUNNER_ARCH": "X64",
        "RUNNER_TEMP": "/home/runner/work/_temp",
        **emulator.env(),
        # Defaults the runner fills in from action.yml.
        "INPUT_RECURSIVE": "true",
        "INPUT_PROVENANCE": "true",
        "INPUT_PREDICATE": "",
        "INPUT_PREDICATE-TYPE": "",
        "INPUT_REGISTRY-USERNAME": "",
        "INPUT_REGISTRY-PASSWORD": "",
        "INPUT_TIMESTAMP-URL": "",
        "INPUT_BUNDLE-DIR": ".opk-sign",
        "INPUT_GITHUB-TOKEN": "ghs_" + "t" * 36,
        **{f"INPUT_{name.upper()}": value for name, value in inputs.items()},
        # The tests' issuer is the emulator; nothing is written to a public log.
        "OPK_SIGN_OIDC_ISSUER": emulator.issuer,
        "OPK_SIGN_TLOG": "never",
    }
    entrypoint = config(built)["Entrypoint"]
    assert isinstance(entrypoint, list)
    before = time.time() - 1
    args = ["run", "--isolation", "chroot", "--workingdir", "/github/workspace"]
    args += [f"--volume={runner / name}:{target}" for name, target in mounts.items()]
    args += [f"--env={name}={value}" for name, value in env.items()]
    done = built.buildah.run(*args, built.container, "--", *entrypoint, check=False, timeout=180)
    written = written_since(built.rootfs, before)
    return Run(
        done.returncode,
        done.stdout,
        done.stderr,
        (runner / "file_commands" / "set_output").read_text(),
        (runner / "file_commands" / "step_summary").read_text(),
        written,
    )


def written_since(rootfs: Path, before: float) -> list[str]:
    """The regular files of the container's own file system changed after ``before``."""
    return sorted(
        "/" + str(path.relative_to(rootfs))
        for path in rootfs.rglob("*")
        if not path.is_symlink() and path.is_file() and path.stat().st_mtime > before
    )


#: Files buildah itself provides in a running container (bind-mounted over these paths).
RUNTIME_FILES = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/run/.containerenv"}


def test_image_has_oci_labels_the_entrypoint_and_the_default_user(built: Built) -> None:
    section = config(built)
    labels = section["Labels"]
    assert isinstance(labels, dict)
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.revision"] == REVISION
    assert labels["org.opencontainers.image.source"].startswith("https://github.com/")
    assert section["Entrypoint"] == ["/opt/opk-sign/bin/python", "/opt/opk-sign/entrypoint.py"]
    # No USER: GitHub runs container actions as root, and the mounts are the runner user's.
    assert section.get("User", "") in ("", "root", "0")


def test_the_final_stage_holds_only_the_runtime(built: Built) -> None:
    venv = built.rootfs / "opt" / "opk-sign"
    assert sorted(p.name for p in (built.rootfs / "opt").iterdir()) == ["opk-sign"]  # no /opt/build
    assert not (built.rootfs / "src").exists()  # no source tree
    bin_names = {p.name for p in (venv / "bin").iterdir()}
    assert "opk-sign" in bin_names and not bin_names & {"pip", "pip3", "wheel"}
    site = next(venv.glob("lib/python3*/site-packages"))
    assert not list(site.glob("pip*")) and not list(site.glob("setuptools*"))
    sizes = [
        os.lstat(os.path.join(directory, name)).st_size
        for directory, _, files in os.walk(venv)  # symbolic links not followed (lib64, python)
        for name in files
    ]
    venv_mb = sum(sizes) / 2**20
    print(f"\nruntime virtualenv: {venv_mb:.0f} MB")
    assert venv_mb < 120


def test_installed_packages_are_exactly_the_lock(built: Built) -> None:
    # pip is not in the image: the distributions the runtime virtualenv holds, as pip freeze
    # would list them.
    probe = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    done = built.buildah.run(
        "run",
        "--isolation",
        "chroot",
        built.container,
        "--",
        "/opt/opk-sign/bin/python",
        "-c",
        probe,
    )
    installed = {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in json.loads(done.stdout).items()
    }
    assert installed.pop("opk-sign") == __version__
    assert installed == locked(LOCK)


def test_entrypoint_signs_an_image_as_a_runner_runs_it(
    built: Built, image_emulator: GitHubOIDCEmulator, tmp_path: Path
) -> None:
    ref = built.registry.ref(REPOSITORY, "v1")
    with RegistryClient(Keychain([])) as client:
        pushed = push_sample_image(client, ref)

    run = run_as_runner(built, tmp_path, image_emulator, {"image": ref})

    assert run.code == 0, run.stdout + run.stderr
    assert "digest<<" in run.outputs and pushed.digest in run.outputs
    assert pushed.digest in run.summary
    assert "Traceback" not in run.stdout + run.stderr
    # The offline kit went to the workspace; nothing was written to the image's own file system.
    assert (tmp_path / "runner" / "workspace" / ".opk-sign" / pushed.digest.split(":")[1]).is_dir()
    assert set(run.written) <= RUNTIME_FILES, run.written
    # What it pushed verifies, from outside the container, as the signer's identity.
    verify = [
        *("verify", f"{ref.rsplit(':', 1)[0]}@{pushed.digest}", "--no-trust-repo"),
        *("--issuer", image_emulator.issuer, "--signer-workflow", SIGNER),
        *("--attestation", "https://slsa.dev/provenance/v1"),
    ]
    assert cli_main(verify) == 0


def test_entrypoint_without_an_image_fails_with_an_error_annotation_not_a_traceback(
    built: Built, image_emulator: GitHubOIDCEmulator, tmp_path: Path
) -> None:
    run = run_as_runner(built, tmp_path, image_emulator, {})

    assert run.code != 0
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error")]
    assert errors and "image" in errors[0].lower(), run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert set(run.written) <= RUNTIME_FILES, run.written


def test_build_time_is_reported(built: Built) -> None:
    # With the base and the layers cached (a rerun) the build is a matter of seconds; a cold
    # build (mmdebstrap, every pip download) takes minutes.
    print(f"\nbase + build: {built.seconds:.0f} s")
    assert built.seconds < 900
    assert os.environ.get("OPK_SIGN_BUILDAH_DIR", "") != "/"


def test_a_write_to_the_containers_own_file_system_is_seen(built: Built) -> None:
    # The check above can fail: a file written outside the runner's paths is found.
    before = time.time() - 1
    built.buildah.run(
        *("run", "--isolation", "chroot", built.container, "--"),
        *("/bin/sh", "-c", "echo x > /var/tmp/opk-sign-probe"),
    )
    assert "/var/tmp/opk-sign-probe" in written_since(built.rootfs, before)
    built.buildah.run(
        "run", "--isolation", "chroot", built.container, "--", "rm", "/var/tmp/opk-sign-probe"
    )
