"""Signing many images: one ``opk-sign sign --images-from FILE`` against one ``opk-sign sign``
process per image (issue 17), on olareg on loopback with the GitHub OIDC emulator.

Each side signs its own freshly pushed set of N two-platform images (index + 2 platform manifests,
SLSA provenance on each platform, no RFC 3161 timestamps), as processes (start-up included). The
emulator counts the ID-token requests each side makes: one for the batch, N for the processes.

    .venv/bin/python -m bench.sign_images_from [--images 50]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.services.images import push_sample_image
from tests.services.oidc import CountingEmulator
from tests.services.registries import olareg

from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain

ROOT = Path(__file__).resolve().parents[1]
OPK_SIGN = ROOT / ".venv" / "bin" / "opk-sign"


def push_images(host: str, prefix: str, count: int) -> list[str]:
    refs = []
    with RegistryClient(Keychain.anonymous()) as client:
        for number in range(count):
            ref = f"{host}/bench/{prefix}-{number}:v1"
            pushed = push_sample_image(client, ref, layer_size=256)
            refs.append(f"{host}/bench/{prefix}-{number}@{pushed.digest}")
    return refs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    args = parser.parse_args(argv)
    emulator = CountingEmulator()
    with tempfile.TemporaryDirectory() as tmp_name, emulator:
        tmp = Path(tmp_name)
        (tmp / "docker").mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp),
            "DOCKER_CONFIG": str(tmp / "docker"),
            **emulator.env(),
            "OPK_SIGN_OIDC_ISSUER": emulator.issuer,
            "OPK_SIGN_TLOG": "never",  # never the public transparency log from a bench
        }
        with olareg(tmp / "olareg") as registry:
            batch = push_images(registry.host, "batch", args.images)
            single = push_images(registry.host, "single", args.images)
            listing = tmp / "images.txt"
            listing.write_text("\n".join(batch) + "\n")

            emulator.reset_counts()
            started = time.perf_counter()
            cpu = _children_cpu()
            proc = subprocess.run(
                [str(OPK_SIGN), "sign", "--no-timestamp", "--images-from", str(listing)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            batch_seconds = time.perf_counter() - started
            batch_cpu = _children_cpu() - cpu
            if proc.returncode != 0:
                raise SystemExit(f"sign --images-from failed: {proc.stderr[-2000:]}")
            batch_tokens = sum(p.endswith("/token") for p in emulator.requests)

            emulator.reset_counts()
            started = time.perf_counter()
            cpu = _children_cpu()
            for image in single:
                proc = subprocess.run(
                    [str(OPK_SIGN), "sign", "--no-timestamp", image],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    raise SystemExit(f"sign {image} failed: {proc.stderr[-2000:]}")
            single_seconds = time.perf_counter() - started
            single_cpu = _children_cpu() - cpu
            single_tokens = sum(p.endswith("/token") for p in emulator.requests)

    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    print(
        f"{args.images} two-platform images (index + 2 manifests, SLSA provenance), olareg, "
        f"{when}, load average {load:.1f}, Python {platform.python_version()}"
    )
    print()
    print("| how | wall time | per image | CPU time | ID-token requests |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| one `opk-sign sign --images-from` | {batch_seconds:.2f} s "
        f"| {batch_seconds / args.images * 1000:.0f} ms | {batch_cpu:.2f} s | {batch_tokens} |"
    )
    print(
        f"| {args.images} `opk-sign sign` processes | {single_seconds:.2f} s "
        f"| {single_seconds / args.images * 1000:.0f} ms | {single_cpu:.2f} s | {single_tokens} |"
    )
    print()
    ratio = single_seconds / batch_seconds
    print(
        f"speed-up: {ratio:.1f}x wall time, {single_cpu / batch_cpu:.1f}x CPU time "
        "(aim: at least 10x)"
    )
    return 0 if ratio >= 10 else 1


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
