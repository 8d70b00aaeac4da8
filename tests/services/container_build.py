"""Real container image builds for the tests: buildah (chroot isolation, vfs storage: no daemon,
no overlay mounts) building the project's Dockerfile from a Debian base made with mmdebstrap.

The pinned base of the Dockerfile (python:3.12-slim) cannot be pulled here, so the tests make
their own: a minimal Debian rootfs with python3 and its venv module, carrying this machine's CA
bundle with ``PIP_CERT`` and ``SSL_CERT_FILE`` set (package downloads here pass a TLS-inspecting
proxy; the real base needs none of that). It is pushed to a loopback registry and named by digest
in ``--build-arg BASE_IMAGE``, exactly as a release could override the base.

What is slow is cached between runs, outside the checkout (the tool cache):
- the mmdebstrap tarball (minutes to make), keyed by suite, variant and package list;
- buildah's storage (the base image committed from it, and ``--layers`` build cache: a rebuild
  after a source change only redoes the last steps).

``python -m tests.services.container_build`` makes the tarball and the base image ahead of time
(scripts/setup/50-container-build.sh runs it, so `make test` finds them warm).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.services.tools import TOOLS_DIR, tool_path

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
VARIANT = "essential"
#: What the base needs: python3 with venv (the Dockerfile's build stage makes two virtualenvs).
PACKAGES = ("python3", "python3-venv", "ca-certificates")
#: Left out of the rootfs: documentation and translations (a third of its size).
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: Where the base image keeps the host's CA bundle (PIP_CERT, SSL_CERT_FILE).
BASE_CA_BUNDLE = "/etc/ssl/certs/opk-sign-tests-ca.pem"
CACHE_DIR = TOOLS_DIR.parent
BUILDAH_DIR = Path(os.environ.get("OPK_SIGN_BUILDAH_DIR", CACHE_DIR / "buildah"))
MMDEBSTRAP_TIMEOUT = 900
BUILD_TIMEOUT = 900
#: Past this, the build cache is dropped before a build (tidy). vfs keeps a full copy per layer:
#: a `make test` adds about 1.5 GB (a new source tree), so the cache lasts a few runs.
STORAGE_LIMIT = 8 * 2**30


def base_key() -> str:
    """What the cached tarball and base image are made from, hashed: a change remakes them."""
    recipe = {
        "suite": SUITE,
        "variant": VARIANT,
        "packages": sorted(PACKAGES),
        "excludes": DPKG_EXCLUDES,
        "ca": hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def base_tarball() -> Path:
    """The cached Debian rootfs tarball, made with mmdebstrap when missing (minutes, once)."""
    cache = CACHE_DIR / "images"
    tarball = cache / f"debian-{SUITE}-{base_key()}.tar"
    if tarball.is_file():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(f".{os.getpid()}.partial")
    argv = [
        str(tool_path("mmdebstrap")),
        f"--variant={VARIANT}",
        f"--include={','.join(PACKAGES)}",
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES),
        "--format=tar",
        "--quiet",
        SUITE,
        str(partial),
    ]
    try:
        subprocess.run(argv, check=True, timeout=MMDEBSTRAP_TIMEOUT, stdin=subprocess.DEVNULL)
        partial.rename(tarball)
    finally:
        partial.unlink(missing_ok=True)
    return tarball


@dataclass(frozen=True)
class Buildah:
    """buildah with its own storage (vfs) under ``root``, every command in chroot isolation."""

    root: Path = BUILDAH_DIR

    def argv(self, *args: str) -> list[str]:
        return [
            str(tool_path("buildah")),
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "vfs",
            *args,
        ]

    def env(self) -> dict[str, str]:
        # Registries configuration of our own: loopback registries are plain HTTP, and short
        # names resolve nowhere.
        self.root.mkdir(parents=True, exist_ok=True)
        registries = self.root / "registries.conf"
        if not registries.is_file():
            registries.write_text(
                'unqualified-search-registries = []\nshort-name-mode = "disabled"\n'
            )
        # The same storage for a plain `buildah` (scripts/release.sh) as for argv()'s flags.
        storage = self.root / "storage.conf"
        if not storage.is_file():
            storage.write_text(
                f'[storage]\ndriver = "vfs"\ngraphroot = "{self.root / "storage"}"\n'
                f'runroot = "{self.root / "run"}"\n'
            )
        return {
            **os.environ,
            "BUILDAH_ISOLATION": "chroot",
            "CONTAINERS_STORAGE_CONF": str(storage),
            "CONTAINERS_REGISTRIES_CONF": str(registries),
            "TMPDIR": str(self.root / "tmp"),
        }

    def run(
        self,
        *args: str,
        timeout: float = 300,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            self.argv(*args),
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"buildah {' '.join(args[:2])} failed ({done.returncode}):\n"
                f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        return done

    def has_image(self, name: str) -> bool:
        return self.run("inspect", "--type", "image", name, check=False).returncode == 0

    def inspect(self, name: str) -> dict[str, object]:
        data = json.loads(self.run("inspect", "--type", "image", name).stdout)
        assert isinstance(data, dict)
        return data

    def push(self, image: str, destination: str) -> str:
        """Push ``image`` to ``destination`` (a plain-HTTP loopback registry); its digest."""
        with tempfile.TemporaryDirectory() as scratch:
            digest_file = Path(scratch) / "digest"
            self.run(
                "push",
                "--quiet",
                "--tls-verify=false",
                "--digestfile",
                str(digest_file),
                image,
                f"docker://{destination}",
            )
            return digest_file.read_text().strip()

    @contextlib.contextmanager
    def container(self, image: str) -> Iterator[str]:
        """A working container of ``image``, removed afterwards."""
        name = self.run("from", "--quiet", "--pull-never", image).stdout.strip()
        try:
            yield name
        finally:
            self.run("rm", name, check=False)


def base_image(buildah: Buildah) -> str:
    """The test base image in buildah's storage (made from the cached tarball when missing)."""
    name = f"localhost/opk-sign-test-base:{base_key()}"
    if buildah.has_image(name):
        return name
    tarball = base_tarball()
    container = buildah.run("from", "--quiet", "scratch").stdout.strip()
    try:
        buildah.run("add", "--quiet", container, str(tarball), "/", timeout=600)
        buildah.run("copy", "--quiet", container, str(HOST_CA_BUNDLE), BASE_CA_BUNDLE)
        buildah.run(
            "config",
            "--env",
            f"PIP_CERT={BASE_CA_BUNDLE}",
            "--env",
            f"SSL_CERT_FILE={BASE_CA_BUNDLE}",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--cmd",
            "/usr/bin/python3",
            "--os",
            "linux",
            container,
        )
        buildah.run("commit", "--quiet", "--timestamp", "0", container, name, timeout=600)
    finally:
        buildah.run("rm", container, check=False)
    return name


def storage_size(buildah: Buildah) -> int:
    """Bytes buildah's storage takes (vfs keeps every layer as a full copy of the tree)."""
    done = subprocess.run(
        ["du", "-sb", str(buildah.root / "storage")], capture_output=True, text=True, check=False
    )
    return int(done.stdout.split()[0]) if done.returncode == 0 and done.stdout else 0


@contextlib.contextmanager
def exclusive(buildah: Buildah) -> Iterator[None]:
    """One build (or tidy) at a time in buildah's storage, across processes (xdist workers)."""
    buildah.root.mkdir(parents=True, exist_ok=True)
    with (buildah.root / "build.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def in_use(buildah: Buildah) -> Iterator[None]:
    """Held while tests use the storage's images and containers: tidy leaves it alone."""
    buildah.root.mkdir(parents=True, exist_ok=True)
    with (buildah.root / "users.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield


_tidied: set[Path] = set()


def tidy(buildah: Buildah, keep: str, limit: int = STORAGE_LIMIT) -> None:
    """Keep the build cache between runs, but not without bound: past ``limit`` bytes, every
    container and every image but ``keep`` (the base) goes, and the next build starts cold.
    Call it under :func:`exclusive`; once per process, and never while another process holds
    :func:`in_use`."""
    if buildah.root in _tidied:
        return
    _tidied.add(buildah.root)
    with (buildah.root / "users.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another test process is using images and containers
        try:
            buildah.run("rm", "--all", check=False)  # left by an interrupted run
            if storage_size(buildah) <= limit:
                return
            keep_id = str(buildah.inspect(keep)["FromImageID"]).removeprefix("sha256:")
            listed = json.loads(
                buildah.run("images", "--all", "--json", "--no-trunc").stdout or "[]"
            )
            for image in listed:
                if str(image["id"]).removeprefix("sha256:") != keep_id:
                    buildah.run("rmi", "--force", str(image["id"]), check=False)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_action_image(
    buildah: Buildah,
    *,
    base: str,
    tag: str,
    build_args: Mapping[str, str] | None = None,
    context: Path = ROOT,
) -> str:
    """``buildah bud`` of the project's Dockerfile from ``base`` (pulled from a loopback
    registry); the image ID. ``--layers`` reuses what an earlier run built from the same inputs."""
    args = [f"--build-arg=BASE_IMAGE={base}"]
    args += [f"--build-arg={name}={value}" for name, value in (build_args or {}).items()]
    with tempfile.TemporaryDirectory() as scratch:
        iid = Path(scratch) / "iid"
        buildah.run(
            "bud",
            "--isolation",
            "chroot",
            "--layers",
            "--tls-verify=false",
            "--pull=true",
            "--iidfile",
            str(iid),
            *args,
            "--tag",
            tag,
            "--file",
            str(context / "Dockerfile"),
            str(context),
            timeout=BUILD_TIMEOUT,
        )
        return iid.read_text().strip()


def image_size(buildah: Buildah, image: str) -> str:
    """The size of ``image`` as buildah reports it (uncompressed, e.g. "207 MB")."""
    done = buildah.run("images", "--json", image)
    (entry, *_) = json.loads(done.stdout)
    return str(entry["size"])


def copy_checkout(destination: Path, paths: Sequence[str] | None = None) -> Path:
    """The files git tracks or would track (not ignored) in the checkout, copied: a build
    context as a fresh clone of this working tree would give."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if paths is not None and not any(name == p or name.startswith(f"{p}/") for p in paths):
            continue
        source = ROOT / name
        if not source.is_file():
            continue  # deleted in the working tree
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return destination


if __name__ == "__main__":
    made = base_image(Buildah())
    print(f"test base image: {made} (from {base_tarball()})")
