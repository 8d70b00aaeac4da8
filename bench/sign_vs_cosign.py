"""Signing an image: `opk-sign sign` against `cosign sign --key` (transparency log off), on the same
loopback registries and the same kind of image, side by side in one run.

Both tools run as command-line processes (start-up included), each on a freshly pushed
two-platform image, signing recursively (the index and both platform manifests). A request-counting
proxy sits in front of the registry, so "requests" are what each tool sent to the registry.
opk-sign's numbers include getting the ID token from the GitHub OIDC emulator, checking it against
the issuer's JWKS and GQ256-signing it; cosign signs with a local key. Like cosign without its
transparency log, opk-sign runs without RFC 3161 timestamps (`--no-timestamp`).

The tools take turns (run 1 of each tool, then run 2 of each, ...), so a change in the machine's
load during the bench weighs on all of them alike; the load average is printed with the table.
``--baseline-src DIR`` adds a row for the opk-sign whose ``src`` directory is DIR (an older
checkout, e.g. from ``git archive``), run the same way, for before/after numbers from one run.

    make bench            # or: .venv/bin/python -m bench.sign_vs_cosign [--runs N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.services.faultproxy import FaultProxy, fault_proxy
from tests.services.images import push_sample_image
from tests.services.registries import Registry, distribution, olareg
from tests.services.tools import tool_path

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain

ROOT = Path(__file__).resolve().parents[1]
OPK_SIGN = ROOT / ".venv" / "bin" / "opk-sign"


@dataclass(frozen=True)
class Sample:
    seconds: float
    requests: int
    referrers: int


@dataclass(frozen=True)
class Tool:
    name: str
    referrers: int  # referrers (signatures, attestations) one run writes on a 2-platform image
    argv: Sequence[str]
    env: Mapping[str, str]


def run_once(tool: Tool, proxy: FaultProxy, registry: Registry, run: int, slot: int) -> Sample:
    """One run of ``tool`` on a freshly pushed image, in a repository of its own (never signed)."""
    repository = f"bench/{tool.name.split()[0]}-{slot}-{run}"
    with RegistryClient(Keychain.anonymous()) as client:
        pushed = push_sample_image(client, f"{registry.host}/{repository}:v1")
    target = f"{proxy.host}/{repository}@{pushed.digest}"
    proxy.reset_counts()
    started = time.perf_counter()
    proc = subprocess.run(
        [*tool.argv, target], env=dict(tool.env), capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{tool.name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return Sample(elapsed, len(proxy.requests), tool.referrers)


@contextmanager
def emulator_env(tmp: Path) -> Iterator[dict[str, str]]:
    with GitHubOIDCEmulator() as emulator:
        (tmp / "docker").mkdir()
        yield {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp),
            "DOCKER_CONFIG": str(tmp / "docker"),
            **emulator.env(),
            "OPK_SIGN_OIDC_ISSUER": emulator.issuer,
            # Both tools with the transparency log off (cosign: --tlog-upload=false); the
            # emulator's token says "public", which would log to Sigstore's instance.
            "OPK_SIGN_TLOG": "never",
        }


def cosign_tool(tmp: Path) -> Tool:
    cosign = tool_path("cosign")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "DOCKER_CONFIG": str(tmp / "docker"),
        "COSIGN_PASSWORD": "",
    }
    subprocess.run(
        [str(cosign), "generate-key-pair"], cwd=tmp, env=env, capture_output=True, check=True
    )
    argv = [
        str(cosign),
        "sign",
        "--key",
        str(tmp / "cosign.key"),
        "--tlog-upload=false",
        "--yes",
        "--recursive",
        "--allow-http-registry",
        "--allow-insecure-registry",
    ]
    return Tool("cosign sign --key", 3, argv, env)


def table(rows: list[tuple[str, str, list[Sample]]]) -> str:
    lines = [
        "| registry | tool | wall time (median) | min | requests per run | referrers written "
        "| requests per referrer |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for registry, tool, samples in rows:
        seconds = [s.seconds for s in samples]
        requests = statistics.median(s.requests for s in samples)
        referrers = samples[0].referrers
        lines.append(
            f"| {registry} | {tool} | {statistics.median(seconds) * 1000:.0f} ms "
            f"| {min(seconds) * 1000:.0f} ms | {requests:.0f} | {referrers} "
            f"| {requests / referrers:.1f} |"
        )
    return "\n".join(lines)


def ratios(rows: list[tuple[str, str, list[Sample]]]) -> str:
    """cosign's median over each opk-sign row's median, per registry (above 1: opk-sign faster)."""
    lines = [
        "| registry | tool | cosign time / its time |",
        "| --- | --- | ---: |",
    ]
    for registry, tool, samples in rows:
        cosign = next(s for r, t, s in rows if r == registry and t.startswith("cosign"))
        if tool.startswith("cosign"):
            continue
        ratio = statistics.median(s.seconds for s in cosign) / statistics.median(
            s.seconds for s in samples
        )
        lines.append(f"| {registry} | {tool} | {ratio:.2f}x |")
    return "\n".join(lines)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> str:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--registries", default="distribution,olareg", help="comma-separated: distribution, olareg"
    )
    parser.add_argument("--baseline-src", type=Path, help="src directory of another opk-sign")
    parser.add_argument("--baseline-label", default="baseline")
    args = parser.parse_args()
    rows: list[tuple[str, str, list[Sample]]] = []
    registries = {
        "distribution": ("distribution 2.8", distribution),
        "olareg": ("olareg (referrers API)", olareg),
    }
    chosen = [registries[name.strip()] for name in args.registries.split(",") if name.strip()]
    started = datetime.datetime.now(datetime.UTC)
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="opk-bench-") as scratch, ExitStack() as stack:
        tmp = Path(scratch)
        env = stack.enter_context(emulator_env(tmp))
        tools = [
            Tool(
                "opk-sign sign --no-provenance",
                3,
                [str(OPK_SIGN), "sign", "--no-provenance", "--no-timestamp"],
                env,
            ),
            Tool(
                "opk-sign sign (+ SLSA provenance)",
                5,
                [str(OPK_SIGN), "sign", "--no-timestamp"],
                env,
            ),
            cosign_tool(tmp),
        ]
        if args.baseline_src is not None:
            baseline_env = {**env, "PYTHONPATH": str(args.baseline_src.resolve())}
            tools.insert(
                1,
                Tool(
                    f"opk-sign sign --no-provenance ({args.baseline_label})",
                    3,
                    [str(OPK_SIGN), "sign", "--no-provenance", "--no-timestamp"],
                    baseline_env,
                ),
            )
        for kind, start in chosen:
            workdir = tmp / kind.split()[0]
            workdir.mkdir()
            with start(workdir) as registry, fault_proxy(registry.host) as proxy:
                samples: dict[str, list[Sample]] = {tool.name: [] for tool in tools}
                for slot, tool in enumerate(tools):  # warm-up: page cache, first connection
                    run_once(tool, proxy, registry, -1, slot)
                for run in range(args.runs):  # the tools take turns
                    for slot, tool in enumerate(tools):
                        samples[tool.name].append(run_once(tool, proxy, registry, run, slot))
                rows += [(kind, tool.name, samples[tool.name]) for tool in tools]
    cosign_version = subprocess.run(
        [str(tool_path("cosign")), "version", "--json"], capture_output=True, text=True, check=False
    ).stdout
    version = next(
        (line.split('"')[3] for line in cosign_version.splitlines() if '"gitVersion"' in line), "?"
    )
    header = (
        f"Signing a 2-platform image recursively (index + 2 manifests), {args.runs} runs per row, "
        f"Python {platform.python_version()}, cosign {version}; "
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average {load_before} "
        f"before and {load()} after\n"
    )
    return header + "\n" + table(rows) + "\n\n" + ratios(rows)


if __name__ == "__main__":
    sys.stdout.write(main() + "\n")
