"""Start-up and one-shot work: `opk-sign` against `cosign` as the commands a user runs, side by
side in one run (issue 13): `--help`, `verify --help`, verifying one single-platform image and
one two-platform index, each with its peak resident memory; and the verifier's CPU ceiling on
this machine (warm library verification, CPU seconds per image, times the cores).

Both tools verify images signed by both on one olareg registry (referrers API): opk-sign's
signatures through the GitHub OIDC emulator, cosign's with `sign --key --tlog-upload=false`
(`--recursive` for the index). Wall times are medians of N runs of each command, alternating the
two tools; peak RSS is the child's `ru_maxrss` from `wait4`.

    .venv/bin/python -m bench.startup_vs_cosign [--runs N]     # part of `make bench`
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from tests.services.images import push_sample_image
from tests.services.oidc import CountingEmulator
from tests.services.registries import olareg

from bench.verify_vs_cosign import COSIGN_FLAGS, Bench, cosign_version, log
from opk_sign import __version__
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import sign_image
from opk_sign.verify.image import verify_image

#: What a verification imports that no Python verifier could do without (HTTP, ECDSA/RSA, GQ's
#: big-number arithmetic); opk-sign's own modules come on top.
FLOOR_IMPORTS = (
    "requests",
    "gmpy2",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "cryptography.hazmat.primitives.asymmetric.rsa",
)


def timed(argv: Sequence[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of ``argv``, which must succeed."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} {argv[1]} failed ({proc.returncode}): {stderr[-2000:]}")
    return elapsed, usage.ru_maxrss


def row(label: str, opk: list[tuple[float, int]], cosign: list[tuple[float, int]]) -> str:
    o, c = statistics.median(t for t, _ in opk), statistics.median(t for t, _ in cosign)
    o_rss, c_rss = max(r for _, r in opk), max(r for _, r in cosign)
    return (
        f"| {label} | {o * 1000:.0f} ms | {c * 1000:.0f} ms | {c / o:.2f}x "
        f"| {o_rss / 1024:.0f} MiB | {c_rss / 1024:.0f} MiB |"
    )


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    lines: list[str] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opk-startup-")))
        emulator = CountingEmulator()
        stack.enter_context(emulator)
        registry = stack.enter_context(olareg(tmp / "olareg"))
        bench = Bench(emulator, tmp, runs=args.runs, batch_runs=1, cosign_loop=0)
        with RegistryClient(Keychain.anonymous()) as client:
            single = push_sample_image(
                client, registry.ref("startup/single", "v1"), ("linux/amd64",), index=False
            )
            multi = push_sample_image(
                client,
                registry.ref("startup/multi", "v1"),
                ("linux/amd64", "linux/arm64/v8"),
                index=True,
            )
            provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
            images = {
                "single-platform image": f"{registry.host}/startup/single@{single.digest}",
                "two-platform index": f"{registry.host}/startup/multi@{multi.digest}",
            }
            for image in images.values():
                sign_image(image, provider=provider, client=client)
        key = str(tmp / "cosign.key")
        for image in images.values():
            sign = [bench.cosign, "sign", "--key", key, "--tlog-upload=false", "--yes"]
            bench.run([*sign, "--recursive", *COSIGN_FLAGS, image])
        commands = [
            ("`--help`", [str(bench.opk_argv()[0]), "--help"], [bench.cosign, "--help"]),
            (
                "`verify --help`",
                [str(bench.opk_argv()[0]), "verify", "--help"],
                [bench.cosign, "verify", "--help"],
            ),
            *(
                (f"verify one {kind}", bench.opk_argv(image), bench.cosign_argv(image))
                for kind, image in images.items()
            ),
        ]
        log(f"timing {len(commands)} commands x {args.runs} runs per tool")
        table = [
            "| command | opk-sign (median) | cosign (median) | cosign / opk-sign | opk-sign "
            "peak RSS | cosign peak RSS |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for label, opk_argv, cosign_argv in commands:
            opk: list[tuple[float, int]] = []
            cosign: list[tuple[float, int]] = []
            for _ in range(args.runs):  # alternating: drift hits both alike
                opk.append(timed(opk_argv, bench.env))
                cosign.append(timed(cosign_argv, bench.env))
            table.append(row(label, opk, cosign))
        # The floor under any one-shot command of a Python verifier on this machine: starting the
        # interpreter, and importing the libraries a verification cannot do without.
        floors = [
            ("Python starts (`python -c pass`)", [sys.executable, "-c", "pass"]),
            (
                "Python imports the HTTP and crypto libraries (requests, cryptography, gmpy2)",
                [sys.executable, "-c", f"import {', '.join(FLOOR_IMPORTS)}"],
            ),
        ]
        floor_rows = []
        for label, argv in floors:
            times = [timed(argv, bench.env)[0] for _ in range(args.runs)]
            floor_rows.append(f"| {label} | {statistics.median(times) * 1000:.0f} ms |")
        # The CPU ceiling: warm verification in this process, CPU seconds per image, one core.
        options = bench.options()
        with RegistryClient(Keychain.anonymous()) as client:
            image = images["single-platform image"]
            verify_image(client, image, options)
            rounds = 300
            cpu = time.process_time()
            for _ in range(rounds):
                assert verify_image(client, image, options).verified
            per_image = (time.process_time() - cpu) / rounds
        cores = os.cpu_count() or 1
    lines += [
        f"Start-up and one-shot verification, {args.runs} runs per command, opk-sign "
        f"{__version__}, Python {platform.python_version()}, {cosign_version(bench.cosign)}",
        "",
        *table,
        "",
        "The floor of a one-shot Python command here, medians of the same number of runs:",
        "",
        "| what | wall time (median) |",
        "| --- | ---: |",
        *floor_rows,
        "",
        f"CPU ceiling: a warm verification of one single-platform image costs "
        f"{per_image * 1000:.2f} ms of CPU in this process (HTTP client, PK token, signature, "
        f"policy), so {1 / per_image:.0f} images/s per core, ~{cores / per_image:.0f} on this "
        f"machine's {cores} cores if nothing else ran (the registry needs CPU too).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
    sys.stdout.flush()
