"""Verification at pull and admission time (issue 15): what the containerd verifier costs a pull,
against containerd's 10 s per-verifier budget, and what the admission service answers.

1. ``opk-sign-containerd-verifier`` run exactly as containerd runs it (a new process per pull:
   ``-name -digest -stdin-media-type``, the descriptor on stdin, the settings file next to it),
   wall time per pull over N pulls, p50 and p99:
   - cold: the digest is not in the verified-digest cache (the verifier asks the registry and
     verifies the index's signatures; trust data from its cache, as between refreshes);
   - warm: the digest is in the cache (no registry request).
2. ``opk-sign serve``: one ProviderRequest of 100 distinct signed images, cold (each verified)
   then warm (each from the cache), as images per second.

The images: single-platform, signed once, on olareg (referrers API) on loopback; the policy from
a TUF trust repository's mapping; the issuer is the GitHub OIDC emulator.

    .venv/bin/python -m bench.pull_verifier [--pulls N] [--images N]     # part of `make bench`
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import requests
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import olareg
from tests.services.tuf import StaticServer

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.admission.settings import Settings
from opk_sign.cli.main import main
from opk_sign.containerd.install import install
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import SigningOptions, sign_image

REPO = "octo-org/app"
MEDIA = "application/vnd.oci.descriptor.v1+json"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def cli(*argv: object) -> None:
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the Markdown
        code = main([str(a) for a in argv])
    if code != 0:
        raise SystemExit(f"opk-sign {' '.join(map(str, argv[:3]))} exited {code}")


def run(pulls: int, count: int) -> None:
    with ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opk-bench-pull-")))
        os.environ["OPK_SIGN_TRUST_DIR"] = str(base / "trust")
        registry = stack.enter_context(olareg(base / "olareg"))
        emulator = stack.enter_context(GitHubOIDCEmulator(key=generated_op_key(0)))
        server = stack.enter_context(StaticServer())
        client = stack.enter_context(RegistryClient(Keychain.anonymous()))
        emulator.set_claims(repository=REPO)
        provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
        options = SigningOptions(provenance=False)
        images = max(count, pulls) + 1  # the last one warms the service's trust data up
        log(f"pushing and signing {images} images")
        refs = []
        lock = threading.Lock()

        def one(i: int) -> None:
            pushed = push_sample_image(
                client, registry.ref(f"octo-org/app-{i}", "v1"), ("linux/amd64",), index=False
            )
            ref = f"{registry.host}/octo-org/app-{i}@{pushed.digest}"
            sign_image(ref, provider=provider, client=client, options=options)
            with lock:
                refs.append((ref, pushed.to_dict()))

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(images)))
        work, keys, published = base / "repo", base / "keys", base / "published"
        (base / "team.json").write_text(json.dumps({"issuer": emulator.issuer, "repository": REPO}))
        cli("trust", "repo", "init", work, "--keys-dir", keys)
        cli("trust", "repo", "set-policy", work, "team", base / "team.json", "--keys-dir", keys)
        cli("trust", "repo", "map", work, f"{registry.host}/octo-org/*", "team", "--keys-dir", keys)
        cli("trust", "repo", "publish", work, published)
        server.serve(published)
        cli("trust", "init", "--root", published / "metadata" / "1.root.json", "--url", server.url)

        cache = base / "cache"
        settings = Settings(
            trust_dir=base / "trust", cache_dir=cache, issuer=emulator.issuer, refresh_interval=3600
        )
        installed = install(settings, bin_dir=base / "node" / "bin")
        env = {k: v for k, v in os.environ.items() if k != "OPK_SIGN_TRUST_DIR"}

        def pull(ref: str, descriptor: dict[str, object]) -> float:
            started = time.perf_counter()
            done = subprocess.run(
                [
                    str(installed.executable),
                    "-name",
                    ref,
                    "-digest",
                    str(descriptor["digest"]),
                    "-stdin-media-type",
                    MEDIA,
                ],
                input=json.dumps(descriptor),
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"the verifier refused {ref}: {done.stdout}")
            return seconds

        pull(
            *refs[0]
        )  # the trust data into the verifier's cache: later pulls are between refreshes
        cold, warm = [], []
        for ref, descriptor in refs[:pulls]:
            shutil.rmtree(cache / "verified", ignore_errors=True)
            cold.append(pull(ref, descriptor))
            warm.append(pull(ref, descriptor))

        log(f"the service: one request of {count} images, cold then warm")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "opk_sign.cli",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--config",
                str(installed.config),
                "--cache-dir",
                str(base / "serve-cache"),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, OPK_SIGN_TRUST_DIR=str(base / "trust")),
        )
        stack.callback(process.terminate)
        assert process.stderr is not None
        url = process.stderr.readline().split("listening on ", 1)[1].strip()
        keys_asked = [ref for ref, _ in refs[:count]]
        body = {
            "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
            "kind": "ProviderRequest",
            "request": {"keys": keys_asked},
        }
        timings = []
        with requests.Session() as session:
            session.trust_env = False
            session.post(url, json={**body, "request": {"keys": [refs[-1][0]]}}, timeout=60)
            for label in ("cold", "warm"):
                started = time.perf_counter()
                answer = session.post(url, json=body, timeout=120)
                seconds = time.perf_counter() - started
                items = answer.json()["response"]["items"]
                allowed = sum(item["value"]["allowed"] for item in items)
                for item in items:
                    if "error" in item:
                        log(f"refused: {item['error']}")
                        break
                timings.append((label, seconds, allowed))

    print("## Verification at pull time: the containerd verifier and `opk-sign serve` (issue 15)")
    print()
    print(
        f"`python -m bench.pull_verifier --pulls {pulls} --images {count}` on "
        f"{os.cpu_count()} CPUs: olareg on loopback, single-platform images signed once, the "
        "policy from a TUF mapping. The verifier runs as containerd runs it (a new process per "
        "pull, Python start-up included), trust data from its cache (between refreshes)."
    )
    print()
    print("| verifier, per pull | p50 | p99 | max | containerd's budget |")
    print("| --- | --- | --- | --- | --- |")
    for label, values in (("cold (verified now)", cold), ("warm (cached digest)", warm)):
        print(
            f"| {label} | {percentile(values, 0.5):.2f} s | {percentile(values, 0.99):.2f} s | "
            f"{max(values):.2f} s | 10 s |"
        )
    print()
    print(f"| `opk-sign serve`, one request of {count} images | wall | images/s | allowed |")
    print("| --- | --- | --- | --- |")
    for label, seconds, allowed in timings:
        print(f"| {label} | {seconds:.2f} s | {count / seconds:.0f} | {allowed}/{count} |")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pulls", type=int, default=50)
    parser.add_argument("--images", type=int, default=100)
    return parser.parse_args()


if __name__ == "__main__":
    args = parse()
    run(args.pulls, args.images)
