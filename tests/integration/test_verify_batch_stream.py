"""`opk-sign verify` batches (issue 12): each image's outcome is printed as soon as it is decided,
through a pipe, while later images are still being verified; a list naming images several times
(and several ways) costs the registry the distinct images once, and every line is reported."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.cli.main import main
from opk_sign.errors import EXIT_NO_SIGNATURES, EXIT_OK
from opk_sign.oci.reference import image_key
from tests.integration.test_verify_cli import REPO, _client, _sign
from tests.integration.test_verify_costs import requests_of
from tests.services.faultproxy import Fault, FaultProxy
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, olareg

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("verify-batch-stream")]

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "verify.schema.json"
#: Image lines in the duplicates list.
LINES = 300
#: Where the slow image's requests are held.
SLOW = "octo-org/slow"


class GatedProxy(FaultProxy):
    """The counting proxy, which can also hold every request for ``held`` (a path regex) until
    released: a registry as slow as the test needs, without a timing guess."""

    def __init__(self, upstream: str, held: str) -> None:
        super().__init__(upstream)
        self.held = held
        self.open = threading.Event()
        self.open.set()
        self.waiting = threading.Event()  # a held request is waiting

    def _fault_for(self, method: str, path: str) -> Fault | None:
        if re.search(self.held, path) and not self.open.is_set():
            self.waiting.set()
            self.open.wait(timeout=120)
        return super()._fault_for(method, path)


@dataclass(frozen=True)
class Fleet:
    registry: Registry
    proxy: GatedProxy
    issuer: str
    fast: str  # signed, straight from the registry
    slow: str  # signed, through the proxy (held when the test says so)
    app: str  # signed, tag latest, through the proxy: written several ways in the list
    pinned: str  # signed, by digest, through the proxy
    unsigned: str  # through the proxy


@pytest.fixture(scope="module")
def emulator() -> Iterator[GitHubOIDCEmulator]:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as running:
        running.set_claims(ref="refs/tags/v1", repository=REPO)
        yield running


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, emulator: GitHubOIDCEmulator
) -> Iterator[Fleet]:
    with olareg(tmp_path_factory.mktemp("olareg")) as registry, _client() as c:
        proxy = GatedProxy(registry.host, rf"/v2/{SLOW}/")
        proxy.start()
        try:
            pushed = {}
            for name in ("fast", "slow", "app", "pinned", "unsigned"):
                ref = registry.ref(f"octo-org/{name}", "latest" if name == "app" else "v1")
                pushed[name] = push_sample_image(c, ref, ("linux/amd64",), index=False).digest
            # A signature names the repository as the signer saw it: the images verified
            # through the proxy are signed through it.
            through = f"{proxy.host}/octo-org"
            fleet = Fleet(
                registry,
                proxy,
                emulator.issuer,
                fast=registry.ref("octo-org/fast", "v1"),
                slow=f"{through}/slow:v1",
                app=f"{through}/app",
                pinned=f"{through}/pinned@{pushed['pinned']}",
                unsigned=f"{through}/unsigned:v1",
            )
            for image in (fleet.fast, fleet.slow, fleet.app, fleet.pinned):
                _sign(emulator, image)
            yield fleet
        finally:
            proxy.open.set()
            proxy.stop()


def verify_args(fleet: Fleet, *args: str) -> list[str]:
    policy = ["--issuer", fleet.issuer, "--repository", REPO, "--no-trust-repo"]
    return ["verify", *policy, *args]


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))


# --- streaming -----------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["text", "json"])
def test_each_outcome_is_printed_while_later_images_are_still_verified(
    fleet: Fleet, tmp_path: Path, output: str
) -> None:
    """A fast image first, a slow one second (its registry requests held): the fast image's report
    comes through a pipe (block-buffered stdout, no PYTHONUNBUFFERED) while the run is still
    waiting on the slow one; then the slow one's, and in text the summary last."""
    listing = tmp_path / "images.txt"
    listing.write_text(f"{fleet.fast}\n{fleet.slow}\n")
    command = [sys.executable, "-m", "opk_sign.cli"]
    command += verify_args(fleet, "--images-from", str(listing), "-o", output, "--timeout", "30")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["DOCKER_CONFIG"] = str(tmp_path)  # no stray credentials
    fleet.proxy.waiting.clear()
    fleet.proxy.open.clear()  # the slow image's requests wait from now on
    try:
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        ) as proc:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            still_running = proc.poll() is None
            slow_was_held = fleet.proxy.waiting.is_set()
            fleet.proxy.open.set()
            rest, err = proc.communicate(timeout=120)
    finally:
        fleet.proxy.open.set()
    # The fast image's report, while the run still waited on the slow image.
    if output == "json":
        assert json.loads(first)["image"] == fleet.fast, first
    else:
        assert first.startswith("OK ") and "octo-org/fast@sha256:" in first, first
    assert still_running and slow_was_held, (first, err)
    assert proc.returncode == EXIT_OK, err
    if output == "json":
        docs = [json.loads(line) for line in [first, *rest.splitlines()]]
        assert [d["image"] for d in docs] == [fleet.fast, fleet.slow]
        assert all(d["verified"] for d in docs)
        return
    slow_report, summary = rest.split("\nIMAGE ", 1)
    assert f"{SLOW}@sha256:" in slow_report and "OK " in slow_report
    assert summary.rstrip().endswith("2 of 2 images verified")  # the summary last


# --- duplicates ----------------------------------------------------------------------------------


def duplicates_list(fleet: Fleet) -> tuple[str, list[str]]:
    """300 image lines: the tag-latest image written four ways, the pinned one two ways, the
    unsigned one, interleaved, with comments; and the images as verify reports them."""
    ways = [
        fleet.app,
        f"{fleet.app}:latest",
        f"oci://{fleet.app}",
        f"oci://{fleet.app}:latest",
        fleet.pinned,
        f"oci://{fleet.pinned}",
        fleet.unsigned,
    ]
    images = [ways[(i * 5) % len(ways)] for i in range(LINES)]
    lines = ["# the fleet, as several teams wrote it", ""]
    for i, image in enumerate(images):
        lines.append(f"  {image}   # team {i % 4}" if i % 3 == 0 else image)
    return "\n".join(lines) + "\n", images


def registry_cost(fleet: Fleet, listing: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    fleet.proxy.reset_counts()
    main(verify_args(fleet, "--images-from", str(listing), "-o", "json"))
    capsys.readouterr()
    return requests_of(fleet.proxy)


def test_a_list_with_duplicates_verifies_each_image_once_and_reports_every_line(
    fleet: Fleet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    text, images = duplicates_list(fleet)
    assert len(images) == LINES and len({image_key(i) for i in images}) == 3
    listing = tmp_path / "images.txt"
    listing.write_text(text)
    distinct = tmp_path / "distinct.txt"
    distinct.write_text(f"{fleet.app}\n{fleet.pinned}\n{fleet.unsigned}\n")

    once = registry_cost(fleet, distinct, capsys)
    # The cost of verifying the three once (referrers API): 4 per image signed once, and the
    # unsigned image's manifest and empty referrers list.
    assert len(once) == 4 + 4 + 2, once
    fleet.proxy.reset_counts()
    code = main(verify_args(fleet, "--images-from", str(listing), "-o", "json"))
    out = capsys.readouterr().out
    assert collections.Counter(requests_of(fleet.proxy)) == collections.Counter(once)
    assert code == EXIT_NO_SIGNATURES  # the worst: the unsigned image

    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["image"] for d in docs] == images  # all 300, in order, as written
    check = validator()
    for doc in docs:
        check.validate(doc)
        if image_key(doc["image"]) == image_key(fleet.unsigned):
            assert doc["outcome"] == "no-signatures"
        else:
            assert doc["verified"], doc
    by_key = collections.defaultdict(set)
    for doc in docs:
        by_key[image_key(doc["image"])].add((doc["reference"], doc["digest"]))
    assert all(len(seen) == 1 for seen in by_key.values())  # one verdict per distinct image

    # Text: a report per line, in order, then the summary table with a row per line.
    fleet.proxy.reset_counts()
    assert main(verify_args(fleet, "--images-from", str(listing))) == EXIT_NO_SIGNATURES
    out = capsys.readouterr().out
    assert collections.Counter(requests_of(fleet.proxy)) == collections.Counter(once)
    reports, table = out.split("\nIMAGE ", 1)
    marks = [line[:4] for line in reports.splitlines() if line[:4] in ("OK  ", "FAIL")]
    unsigned = sum(image_key(i) == image_key(fleet.unsigned) for i in images)
    assert marks.count("FAIL") == unsigned and len(marks) == LINES
    assert len(table.strip().splitlines()) == 1 + LINES + 2  # header, rows, blank, tally
    assert table.rstrip().endswith(f"{LINES - unsigned} of {LINES} images verified")
