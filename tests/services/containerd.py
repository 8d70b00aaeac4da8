"""A private containerd 2.x on loopback for the image-verifier tests (built by
scripts/setup/60-containerd.sh): its own root, state directory and sockets, the CRI plugin off,
the image-verifier plugin pointed at a directory of the test's, and ``ctr`` to pull through its
transfer service (never ``--local``, which would skip the verifiers).

Runs as root (containerd needs it for its snapshotters' mounts); the native snapshotter unpacks
without any mount, so no runc and no overlay support are needed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.services.tools import tool_path

NAMESPACE = "opk-test"
SNAPSHOTTER = "native"
STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Containerd:
    address: Path
    workdir: Path
    verifier_dir: Path

    def ctr(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        argv = [str(tool_path("ctr")), "--address", str(self.address), "--namespace", NAMESPACE]
        return subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def pull(self, ref: str) -> subprocess.CompletedProcess[str]:
        """``ctr image pull`` through the transfer service (plain HTTP to the loopback
        registries), unpacked with the native snapshotter."""
        return self.ctr("image", "pull", "--plain-http", "--snapshotter", SNAPSHOTTER, ref)

    def remove(self, ref: str) -> None:
        self.ctr("image", "rm", "--sync", ref)

    def log(self) -> str:
        return (self.workdir / "containerd.log").read_text(errors="replace")


def config_text(workdir: Path, verifier_dir: Path, timeout: str = "10s") -> str:
    root, state = workdir / "root", workdir / "state"
    return (
        "version = 3\n"
        f'root = "{root}"\n'
        f'state = "{state}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n\n'
        f'[grpc]\n  address = "{workdir / "containerd.sock"}"\n\n'
        f'[ttrpc]\n  address = "{workdir / "containerd.sock.ttrpc"}"\n\n'
        '[plugins."io.containerd.image-verifier.v1.bindir"]\n'
        f'  bin_dir = "{verifier_dir}"\n'
        "  max_verifiers = 10\n"
        f'  per_verifier_timeout = "{timeout}"\n\n'
        # The transfer service unpacks only for the platforms and snapshotters named here.
        '[plugins."io.containerd.transfer.v1.local"]\n'
        '  [[plugins."io.containerd.transfer.v1.local".unpack_config]]\n'
        '    platform = "linux/amd64"\n'
        f'    snapshotter = "{SNAPSHOTTER}"\n'
        '    differ = "walking"\n'
    )


@contextlib.contextmanager
def containerd(
    workdir: Path, verifier_dir: Path, environ: Mapping[str, str] | None = None
) -> Iterator[Containerd]:
    """containerd on private sockets under ``workdir``, verifiers from ``verifier_dir``, run with
    ``environ`` (the verifiers inherit it)."""
    if os.geteuid() != 0:
        raise RuntimeError("containerd needs root (its content store, snapshots and sockets)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.toml"
    config.write_text(config_text(workdir, verifier_dir))
    address = workdir / "containerd.sock"
    log = (workdir / "containerd.log").open("ab")
    process = subprocess.Popen(
        [str(tool_path("containerd")), "--config", str(config), "--log-level", "debug"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ if environ is None else environ),
        cwd=workdir,
    )
    running = Containerd(address, workdir, verifier_dir)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"containerd exited {process.returncode}:\n{running.log()}")
            if address.exists() and running.ctr("version", timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start in {STARTUP_TIMEOUT} s")
            time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        # Unmount nothing: the native snapshotter mounts nothing. The tree goes with tmp_path.
