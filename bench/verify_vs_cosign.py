"""Verifying images: `opk-sign verify` against `cosign verify --key` (transparency log off), on the
same loopback registries and the same images, side by side in one run.

Every image is a single-platform image (one manifest, no index) signed by both tools: by opk-sign
through the GitHub OIDC emulator (in process, in parallel: setup, not measured) and by cosign with a
local key, without the transparency log (`cosign sign` processes of 100 images each, several at
once). The tools do not see each
other's signatures: opk-sign's are OCI referrers (the referrers API, or the `sha256-<hex>` fallback
tag on distribution), cosign's are `sha256-<hex>.sig` tags.

Measured, per registry:

- one image: each tool as the command a user runs (start-up included, median of N runs), and
  opk-sign's library in process: "cold" is a fresh registry client and JWKS cache (everything
  one CLI run does except starting Python and importing), "warm" reuses both (the per-image cost
  of a long-running verifier);
- a batch: all images in one `opk-sign verify --images-from FILE` process against a loop of one
  `cosign verify` process per image, and against one `cosign verify` process given all images;
- requests: the same verifications through a request-counting proxy, on extra images signed
  under the proxy's address (a signature names its repository, so an image must be verified
  under the name it was signed under); the timings are taken without the proxy in the way.

The tools check different cryptography: cosign one ECDSA P-256 signature under a key it is given;
opk-sign the issuer's RS256 key set (discovery + JWKS, fetched once per run), the PK token's GQ256
signature, its CIC and commitment, the ES256 signature over the payload, and the identity policy.

    make bench            # or: .venv/bin/python -m bench.verify_vs_cosign [--runs N] [--images N]
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.services.faultproxy import FaultProxy, fault_proxy
from tests.services.images import push_sample_image
from tests.services.oidc import CountingEmulator
from tests.services.registries import Registry, distribution, olareg
from tests.services.tools import tool_path

from opk_sign import __version__
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider, JWKSCache
from opk_sign.policy import policy_from_fields
from opk_sign.sign.image import sign_image
from opk_sign.verify.image import verify_image
from opk_sign.verify.options import VerifyOptions

ROOT = Path(__file__).resolve().parents[1]
OPK_SIGN = ROOT / ".venv" / "bin" / "opk-sign"
#: Threads pushing and signing the fleet (setup, not measured).
SETUP_JOBS = 8
#: Images per registry verified through the counting proxy (requests per image in a batch).
COUNTED = 20
#: Plain-HTTP loopback registries; and no 3-minute limit on a command (cosign's default), which
#: one process verifying (or signing) a thousand images would hit.
COSIGN_FLAGS = ("--allow-http-registry", "--allow-insecure-registry", "--timeout=60m")
#: The batch rows: opk-sign's default (a worker process per core for large batches) and one
#: process alone (``--workers 0``).
BATCH_DEFAULT = "opk-sign verify --images-from (default: a worker process per core)"
BATCH_SINGLE = "opk-sign verify --images-from --workers 0 (1 process)"
#: Images per `cosign sign` process at setup (several such processes run at once).
COSIGN_SIGN_CHUNK = 100


@dataclass(frozen=True)
class Fleet:
    kind: str
    images: list[str]  # NAME@sha256:..., named by the registry's own address
    counted: list[str]  # the same kind of image, named (and signed) through the proxy
    proxy: FaultProxy


@dataclass(frozen=True)
class Counted:
    registry: float  # requests per image
    issuer: int  # requests to the OIDC issuer per run


@dataclass
class Bench:
    emulator: CountingEmulator
    tmp: Path
    runs: int
    batch_runs: int
    cosign_loop: int
    repository: str = ""

    def __post_init__(self) -> None:
        self.repository = str(self.emulator.claims("")["repository"])
        self.cosign = str(tool_path("cosign"))
        (self.tmp / "docker").mkdir()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.tmp),
            "DOCKER_CONFIG": str(self.tmp / "docker"),
            "COSIGN_PASSWORD": "",
        }
        subprocess.run(
            [self.cosign, "generate-key-pair"],
            cwd=self.tmp,
            env=self.env,
            capture_output=True,
            check=True,
        )
        self.jwks = JWKSCache()

    # --- the commands -----------------------------------------------------------------------

    def opk_argv(self, *images: str) -> list[str]:
        policy = ["--issuer", self.emulator.issuer, "--repository", self.repository]
        return [str(OPK_SIGN), "verify", *images, *policy]

    def cosign_argv(self, *images: str) -> list[str]:
        key = str(self.tmp / "cosign.pub")
        flags = ["--key", key, "--insecure-ignore-tlog=true", *COSIGN_FLAGS]
        return [self.cosign, "verify", *flags, *images]

    def run(self, argv: Sequence[str]) -> float:
        started = time.perf_counter()
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} {argv[1]} failed ({proc.returncode}): {proc.stderr[-2000:]}"
            )
        return elapsed

    def options(self) -> VerifyOptions:
        policy = policy_from_fields({"issuer": self.emulator.issuer, "repository": self.repository})
        return VerifyOptions(
            policy=policy, keys=JWKSCache(), issuers=frozenset({self.emulator.issuer})
        )

    # --- setup: the fleet -------------------------------------------------------------------

    def fleet(self, registry: Registry, proxy: FaultProxy, count: int) -> Fleet:
        started = time.perf_counter()
        with RegistryClient(Keychain.anonymous(), fallback_settle=0.0) as client:
            images = push(client, registry.host, "fleet", count)
            counted = push(client, proxy.host, "counted", COUNTED)
            provider = GitHubActionsProvider(env=self.emulator.env(), issuer=self.emulator.issuer)

            def sign(image: str) -> None:
                sign_image(image, provider=provider, client=client, jwks=self.jwks)

            parallel(sign, images + counted)
        pushed = time.perf_counter()
        key = str(self.tmp / "cosign.key")
        argv = [self.cosign, "sign", "--key", key, "--tlog-upload=false", "--yes", *COSIGN_FLAGS]
        everything = images + counted
        chunks = [
            everything[i : i + COSIGN_SIGN_CHUNK]
            for i in range(0, len(everything), COSIGN_SIGN_CHUNK)
        ]
        with ThreadPoolExecutor(max_workers=SETUP_JOBS // 2) as pool:
            list(pool.map(lambda chunk: self.run([*argv, *chunk]), chunks))
        cosigned = time.perf_counter()
        log(
            f"{registry.kind}: {count + COUNTED} images pushed and signed by opk-sign in "
            f"{pushed - started:.0f} s, by cosign in {cosigned - pushed:.0f} s"
        )
        return Fleet(registry.kind, images, counted, proxy)

    # --- one image --------------------------------------------------------------------------

    def one_image(self, fleet: Fleet) -> list[tuple[str, list[float], Counted]]:
        image = fleet.images[0]
        rows = []
        opk = self.opk_argv(image)
        cosign = self.cosign_argv(image)
        self.run(opk)  # warm-up: page cache, byte-compiled modules
        self.run(cosign)
        opk_times = [self.run(opk) for _ in range(self.runs)]
        cosign_times = [self.run(cosign) for _ in range(self.runs)]

        def cold() -> float:
            started = time.perf_counter()
            with RegistryClient(Keychain.anonymous()) as client:
                verified(verify_image(client, image, self.options()))
            return time.perf_counter() - started

        cold()
        cold_times = [cold() for _ in range(self.runs)]
        with RegistryClient(Keychain.anonymous()) as client:
            options = self.options()
            verified(verify_image(client, image, options))

            def warm() -> float:
                started = time.perf_counter()
                verified(verify_image(client, image, options))
                return time.perf_counter() - started

            warm_times = [warm() for _ in range(self.runs)]
        target = fleet.counted[0]
        rows.append(
            ("opk-sign verify (process)", opk_times, self.count(fleet, self.opk_argv(target)))
        )
        rows.append(("opk-sign library, cold client", cold_times, self.count_library(fleet, False)))
        rows.append(("opk-sign library, warm client", warm_times, self.count_library(fleet, True)))
        rows.append(
            (
                "cosign verify --key (process)",
                cosign_times,
                self.count(fleet, self.cosign_argv(target)),
            )
        )
        return rows

    def count(self, fleet: Fleet, argv: Sequence[str], images: int = 1) -> Counted:
        fleet.proxy.reset_counts()
        self.emulator.reset_counts()
        self.run(argv)
        return Counted(len(fleet.proxy.requests) / images, len(self.emulator.requests))

    def count_library(self, fleet: Fleet, warm: bool) -> Counted:
        with RegistryClient(Keychain.anonymous()) as client:
            options = self.options()
            if warm:
                verified(verify_image(client, fleet.counted[1], options))
            fleet.proxy.reset_counts()
            self.emulator.reset_counts()
            verified(verify_image(client, fleet.counted[0], options))
            return Counted(len(fleet.proxy.requests), len(self.emulator.requests))

    # --- many images ------------------------------------------------------------------------

    def batch(self, fleet: Fleet) -> list[tuple[str, int, float, Counted]]:
        images = fleet.images
        listing = self.tmp / f"{fleet.kind}-images.txt"
        listing.write_text("".join(f"{image}\n" for image in images))
        counted_listing = self.tmp / f"{fleet.kind}-counted.txt"
        counted_listing.write_text("".join(f"{image}\n" for image in fleet.counted))
        opk = [*self.opk_argv("--images-from", str(listing)), "--output", "json"]
        single = [*opk, "--workers", "0"]
        one_call = self.cosign_argv(*images)
        # The three take turns, so a change in the machine's load weighs on all alike.
        times: dict[str, list[float]] = {"opk": [], "single": [], "cosign": []}
        for _ in range(self.batch_runs):
            times["opk"].append(self.run(opk))
            times["single"].append(self.run(single))
            times["cosign"].append(self.run(one_call))
        opk_time = statistics.median(times["opk"])
        single_time = statistics.median(times["single"])
        one_call_time = statistics.median(times["cosign"])
        opk_count = self.count(
            fleet, self.opk_argv("--images-from", str(counted_listing)), len(fleet.counted)
        )
        one_call_count = self.count(fleet, self.cosign_argv(*fleet.counted), len(fleet.counted))
        loop = images[: self.cosign_loop or len(images)]
        started = time.perf_counter()
        for image in loop:
            self.run(self.cosign_argv(image))
        loop_time = time.perf_counter() - started
        fleet.proxy.reset_counts()
        self.emulator.reset_counts()
        for image in fleet.counted:
            self.run(self.cosign_argv(image))
        loop_count = Counted(len(fleet.proxy.requests) / len(fleet.counted), 0)
        return [
            (BATCH_DEFAULT, len(images), opk_time, opk_count),
            (BATCH_SINGLE, len(images), single_time, opk_count),
            ("cosign verify --key (1 process per image)", len(loop), loop_time, loop_count),
            (
                "cosign verify --key (1 process, all images)",
                len(images),
                one_call_time,
                one_call_count,
            ),
        ]


def push(client: RegistryClient, host: str, prefix: str, count: int) -> list[str]:
    def one(i: int) -> str:
        name = f"{host}/{prefix}/app-{i:04d}"
        pushed = push_sample_image(
            client, f"{name}:v1", ("linux/amd64",), index=False, layers=1, layer_size=1024
        )
        return f"{name}@{pushed.digest}"

    with ThreadPoolExecutor(max_workers=SETUP_JOBS) as pool:
        return list(pool.map(one, range(count)))


def parallel(task: Callable[[str], None], items: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=SETUP_JOBS) as pool:
        list(pool.map(task, items))


def verified(result: Any) -> None:
    if not result.verified:
        raise RuntimeError(f"{result.image}: {result.outcome.label}: {result.message}")


def log(message: str) -> None:
    print(f"verify-vs-cosign: {message}", file=sys.stderr, flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def requests_text(count: Counted) -> tuple[str, str]:
    registry = (
        f"{count.registry:.0f}"
        if count.registry == int(count.registry)
        else f"{count.registry:.2f}"
    )
    return registry, str(count.issuer)


def one_image_table(rows: list[tuple[str, str, list[float], Counted]]) -> str:
    lines = [
        "| registry | tool | wall time (median) | min | registry requests | issuer requests |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for registry, tool, seconds, count in rows:
        reg, issuer = requests_text(count)
        lines.append(
            f"| {registry} | {tool} | {ms(statistics.median(seconds))} | {ms(min(seconds))} "
            f"| {reg} | {issuer} |"
        )
    return "\n".join(lines)


def batch_table(rows: list[tuple[str, str, int, float, Counted]]) -> str:
    lines = [
        "| registry | tool | images | wall time | per image | registry requests per image "
        "| issuer requests per run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for registry, tool, images, seconds, count in rows:
        reg, issuer = requests_text(count)
        lines.append(
            f"| {registry} | {tool} | {images} | {seconds:.1f} s | {ms(seconds / images)} "
            f"| {reg} | {issuer} |"
        )
    return "\n".join(lines)


def ratios(
    singles: list[tuple[str, str, list[float], Counted]],
    batches: list[tuple[str, str, int, float, Counted]],
    images: int,
) -> str:
    """cosign's time over opk-sign's, per registry: above 1, opk-sign is faster."""
    lines = [
        "| registry | one image, process vs process "
        "| one image, cosign process vs library cold / warm "
        f"| {images:,} images vs a cosign process per image "
        f"| {images:,} images vs one cosign process |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for registry in dict.fromkeys(r[0] for r in singles):
        one = {tool: statistics.median(s) for reg, tool, s, _ in singles if reg == registry}
        cosign = one["cosign verify --key (process)"]
        many = {tool: secs / n for reg, tool, n, secs, _ in batches if reg == registry}
        opk_batch = many[BATCH_DEFAULT]
        lines.append(
            f"| {registry} | {cosign / one['opk-sign verify (process)']:.2f}x "
            f"| {cosign / one['opk-sign library, cold client']:.1f}x / "
            f"{cosign / one['opk-sign library, warm client']:.1f}x "
            f"| {many['cosign verify --key (1 process per image)'] / opk_batch:.1f}x "
            f"| {many['cosign verify --key (1 process, all images)'] / opk_batch:.2f}x |"
        )
    return "\n".join(lines)


def cosign_version(cosign: str) -> str:
    argv = [cosign, "version", "--json"]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    return next((line.split('"')[3] for line in out.splitlines() if '"gitVersion"' in line), "?")


def main() -> str:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10, help="runs per one-image row")
    parser.add_argument("--images", type=int, default=1000, help="images in the batch")
    parser.add_argument("--batch-runs", type=int, default=3, help="runs per one-process batch row")
    parser.add_argument(
        "--cosign-loop", type=int, default=0, help="images in the cosign loop (0: all)"
    )
    parser.add_argument(
        "--registries", default="olareg,distribution", help="olareg, distribution or both"
    )
    args = parser.parse_args()
    starts = {
        "olareg": ("olareg (referrers API)", olareg),
        "distribution": ("distribution 2.8", distribution),
    }
    singles: list[tuple[str, str, list[float], Counted]] = []
    batches: list[tuple[str, str, int, float, Counted]] = []
    with tempfile.TemporaryDirectory(prefix="opk-bench-") as scratch, ExitStack() as stack:
        tmp = Path(scratch)
        emulator = CountingEmulator()
        stack.enter_context(emulator)
        bench = Bench(emulator, tmp, args.runs, args.batch_runs, args.cosign_loop)
        for name in args.registries.split(","):
            kind, start = starts[name]
            workdir = tmp / name
            workdir.mkdir()
            with start(workdir) as registry, fault_proxy(registry.host) as proxy:
                fleet = bench.fleet(registry, proxy, args.images)
                for tool, seconds, count in bench.one_image(fleet):
                    singles.append((kind, tool, seconds, count))
                log(f"{kind}: one image done")
                for tool, images, total, count in bench.batch(fleet):
                    batches.append((kind, tool, images, total, count))
                log(f"{kind}: batch done")
        version = cosign_version(bench.cosign)
    header = (
        f"opk-sign {__version__}, Python {platform.python_version()}, cosign {version}, "
        f"{os.cpu_count()} CPUs; single-platform images, each signed by both tools"
    )
    return "\n\n".join(
        [
            header,
            f"Verifying one image, {args.runs} runs per row",
            one_image_table(singles),
            f"Verifying {args.images} images (one-process rows: median of {args.batch_runs} runs)",
            batch_table(batches),
            "Ratios, cosign time / opk-sign time (above 1: opk-sign is faster), per image in the"
            " batch columns\n\n" + ratios(singles, batches, args.images),
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(main() + "\n")
