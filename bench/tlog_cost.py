"""What logging in Rekor v2 adds to a signature (issue 14, docs/transparency.md).

One two-platform image (the index and 2 platform manifests: 3 signatures and 2 provenance
attestations, 5 bundles) is signed in-process with ``--tlog never`` and ``--tlog always``, turn
about, against the real rekor-tiles v2.3.0 POSIX server on loopback with a 1 s checkpoint
interval (the log answers once a checkpoint holds the entry). A request-counting proxy in front of
the log counts what signing sent it. Also measured: the bytes an entry adds to a bundle and the
time to verify one entry offline (body rebuilt, inclusion proof, checkpoint signature).

    .venv/bin/python -m bench.tlog_cost [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tests.services.faultproxy import fault_proxy
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import olareg
from tests.services.rekor import rekor_log

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.bundle import ATTESTATION_ARTIFACT_TYPE, SIGNATURE_ARTIFACT_TYPE, Bundle
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import ImageManifest, parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import SigningOptions, sign_image
from opk_sign.tlog.verify import verify_tlog


def _bundles(client: RegistryClient, tag: str, digests: list[str]) -> list[Bundle]:
    reference = Reference.parse(tag)
    found = []
    for digest in digests:
        for artifact_type in (SIGNATURE_ARTIFACT_TYPE, ATTESTATION_ARTIFACT_TYPE):
            for descriptor in client.list_referrers(reference, digest, artifact_type):
                data, _ = client.get_manifest(reference, descriptor.digest)
                manifest = parse_manifest(data)
                assert isinstance(manifest, ImageManifest)
                found.append(
                    Bundle.from_json(client.get_blob(reference, manifest.layers[0].digest))
                )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ["DOCKER_CONFIG"] = tempfile.mkdtemp()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        with (
            GitHubOIDCEmulator(key=generated_op_key(0)) as emulator,
            olareg(work / "registry") as registry,
            rekor_log(work / "log") as log,
            fault_proxy(log.url.removeprefix("http://")) as proxy,
            RegistryClient(Keychain.anonymous()) as client,
        ):
            emulator.set_claims(repository="octo-org/app", ref="refs/tags/v1")
            provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
            times: dict[str, list[float]] = {"never": [], "always": []}
            requests: dict[str, list[int]] = {"never": [], "always": []}
            last = None
            for run in range(args.runs):
                for mode in ("never", "always"):
                    tag = registry.ref("octo-org/app", f"{mode}-{run}")
                    push_sample_image(client, tag, ("linux/amd64", "linux/arm64"), index=True)
                    options = SigningOptions(tlog=mode, tlog_url=f"http://{proxy.host}")
                    proxy.reset_counts()
                    started = time.perf_counter()
                    result = sign_image(tag, provider=provider, client=client, options=options)
                    times[mode].append(time.perf_counter() - started)
                    requests[mode].append(len(proxy.requests))
                    if mode == "always":
                        last = (tag, [m.digest for m in result.manifests])
            assert last is not None
            bundles = _bundles(client, *last)
            trust = log.trust()
            started = time.perf_counter()
            for bundle in bundles:
                verify_tlog(bundle, trust, required=True)
            per_entry = (time.perf_counter() - started) / len(bundles)
            added = statistics.mean(
                len(b.to_json()) - len(replace(b, tlog_entries=()).to_json()) for b in bundles
            )
    never, always = statistics.median(times["never"]), statistics.median(times["always"])
    print(f"Rekor v2 (rekor-tiles v2.3.0, checkpoint interval 1 s), {args.runs} runs per row,")
    print(f"one two-platform image (5 bundles), load average {os.getloadavg()[0]:.2f}")
    print()
    print("| tlog | wall time (median) | requests to the log |")
    print("| --- | ---: | ---: |")
    print(f"| never | {never:.2f} s | {statistics.median(requests['never']):.0f} |")
    print(f"| always | {always:.2f} s | {statistics.median(requests['always']):.0f} |")
    print()
    print(f"Added per signing run: {always - never:+.2f} s. Bundle size added per entry: ")
    print(f"{added / 1024:.1f} KiB. Offline verification of one entry: {per_entry * 1000:.2f} ms.")


if __name__ == "__main__":
    main()
