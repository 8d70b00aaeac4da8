"""What one registry read costs in CPU, layer by layer (issue 13: where the verifier's time goes).

The same GET of one manifest from a loopback olareg, on a kept-alive connection, N times through
each layer of the stack opk-sign's registry client is built on, in one process, alternating the
layers round by round so that drift hits all alike; CPU time per request (the process's own,
so the registry's share is not counted), the median of the rounds:

- ``http.client``: the standard library alone (status line, headers, body): the floor of any
  Python HTTP/1.1 client;
- ``urllib3``: its connection pool over the same;
- ``urllib3 + deadlines + retries``: opk-sign's connection classes (a deadline on every read)
  and its retry policy, as its session uses them;
- ``requests session``: opk-sign's session (``opk_sign.http.new_session``), what the registry
  client sends through;
- ``registry client``: ``RegistryClient.pull_manifest``: the above plus the registry protocol
  (auth header, size limit, digest check, manifest parsing).

    .venv/bin/python -m bench.http_floor [--requests N] [--rounds R]     # part of `make bench`
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import urllib3
from tests.services.images import push_sample_image
from tests.services.registries import olareg

from opk_sign.http import new_session
from opk_sign.http._session import _HTTPPool, retry_policy
from opk_sign.oci import mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.reference import Reference

ACCEPT = {"Accept": mediatypes.OCI_MANIFEST}


def layers(host: str, port: int, path: str, image: str) -> dict[str, Callable[[], None]]:
    plain = http.client.HTTPConnection(host, port)
    pool = urllib3.HTTPConnectionPool(host, port, maxsize=1)
    bounded = _HTTPPool(host, port, maxsize=1)
    retries = retry_policy()
    session = new_session()
    url = f"http://{host}:{port}{path}"
    client = RegistryClient(Keychain.anonymous())
    ref = Reference.parse(image)

    def raw() -> None:
        plain.request("GET", path, headers=ACCEPT)
        plain.getresponse().read()

    def urllib3_pool() -> None:
        pool.urlopen("GET", path, headers=ACCEPT, retries=False).data  # noqa: B018

    def urllib3_bounded() -> None:
        resp = bounded.urlopen(
            "GET",
            path,
            headers=ACCEPT,
            retries=retries,
            redirect=False,
            preload_content=False,
            decode_content=False,
        )
        resp.read()
        resp.release_conn()

    def requests_session() -> None:
        session.request("GET", url, headers=ACCEPT, stream=True).content  # noqa: B018

    def registry_client() -> None:
        client.pull_manifest(ref)

    return {
        "http.client": raw,
        "urllib3": urllib3_pool,
        "urllib3 + deadlines + retries": urllib3_bounded,
        "requests session": requests_session,
        "registry client (pull_manifest)": registry_client,
    }


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500, help="requests per layer per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="opk-http-floor-") as tmp,
        olareg(Path(tmp) / "olareg") as registry,
    ):
        with RegistryClient(Keychain.anonymous()) as setup:
            pushed = push_sample_image(
                setup, registry.ref("floor/app", "v1"), ("linux/amd64",), index=False
            )
        host, port = registry.host.rsplit(":", 1)
        image = f"{registry.host}/floor/app@{pushed.digest}"
        path = f"/v2/floor/app/manifests/{pushed.digest}"
        calls = layers(host, int(port), path, image)
        for call in calls.values():  # connections open, first-use costs paid
            for _ in range(50):
                call()
        cpu: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.rounds):
            for name, call in calls.items():
                started = time.process_time()
                for _ in range(args.requests):
                    call()
                cpu[name].append((time.process_time() - started) / args.requests)
    floor = statistics.median(cpu["http.client"])
    lines = [
        f"One manifest GET from a loopback olareg, kept-alive, {args.requests} requests x "
        f"{args.rounds} rounds per layer, CPU of this process per request (median of rounds)",
        "",
        "| layer | CPU per request | x http.client |",
        "| --- | ---: | ---: |",
    ]
    for name, values in cpu.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median * 1000:.3f} ms | {median / floor:.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
    sys.stdout.flush()
