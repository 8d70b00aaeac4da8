"""Signing an image: `opk-sign sign` against `cosign sign --key` (transparency log off), on the same
loopback registries and the same kind of image, side by side in one run.

Both tools run as command-line processes (start-up included), each on a freshly pushed
two-platform image, signing recursively (the index and both platform manifests). A request-counting
proxy sits in front of the registry, so "requests" are what each tool sent to the registry.
opk-sign's numbers include getting the ID token from the GitHub OIDC emulator, checking it against
the issuer's JWKS and GQ256-signing it; cosign signs with a local key. Like cosign without its
transparency log, opk-sign runs without RFC 3161 timestamps (`--no-timestamp`).

    make bench            # or: .venv/bin/python -m bench.sign_vs_cosign [--runs N]
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


def run_once(tool: Tool, proxy: FaultProxy, registry: Registry, run: int) -> Sample:
    image_ref = f"{registry.host}/bench/{tool.name.split()[0]}-{run}:v1"
    with RegistryClient(Keychain.anonymous()) as client:
        pushed = push_sample_image(client, image_ref)
    target = f"{proxy.host}/bench/{tool.name.split()[0]}-{run}@{pushed.digest}"
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


def main() -> str:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows: list[tuple[str, str, list[Sample]]] = []
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
        for kind, start in (("distribution 2.8", distribution), ("olareg (referrers API)", olareg)):
            workdir = tmp / kind.split()[0]
            workdir.mkdir()
            with start(workdir) as registry, fault_proxy(registry.host) as proxy:
                for tool in tools:
                    run_once(tool, proxy, registry, -1)  # warm-up: page cache, first connection
                    samples = [run_once(tool, proxy, registry, i) for i in range(args.runs)]
                    rows.append((kind, tool.name, samples))
    cosign_version = subprocess.run(
        [str(tool_path("cosign")), "version", "--json"], capture_output=True, text=True, check=False
    ).stdout
    version = next(
        (line.split('"')[3] for line in cosign_version.splitlines() if '"gitVersion"' in line), "?"
    )
    header = (
        f"Signing a 2-platform image recursively (index + 2 manifests), {args.runs} runs per row, "
        f"Python {platform.python_version()}, cosign {version}\n"
    )
    return header + "\n" + table(rows)


if __name__ == "__main__":
    sys.stdout.write(main() + "\n")
