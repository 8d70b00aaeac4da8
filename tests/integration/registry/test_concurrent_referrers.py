"""Concurrent writers of one fallback referrers index (issue 3, item 3) and lost-update repair.

On a registry without the referrers API, the ``sha256-<hex>`` index is read-modify-written by
every signer; distribution ignores ``If-Match``, so only re-reading after the write (and merging
again) keeps concurrent writers from dropping each other's entries.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from opk_sign.oci import mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.referrers import fallback_tag
from tests.integration.registry.attach_worker import ARTIFACT_TYPE, BUNDLE_TYPE
from tests.integration.registry.conftest import FAST_HTTP, new_client, unique
from tests.services.faultproxy import Fault, fault_proxy
from tests.services.images import push_sample_image
from tests.services.registries import Registry

pytestmark = pytest.mark.integration

WRITERS = 16
REPETITIONS = 5
ROOT = Path(__file__).resolve().parents[3]


def _run_writers(ref: str, subject: Descriptor) -> list[str]:
    argv = [sys.executable, "-m", "tests.integration.registry.attach_worker", ref]
    subject_json = json.dumps(subject.to_dict())
    writers = [
        subprocess.Popen(
            [*argv, subject_json, str(n)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready", writer.stderr
        for writer in writers:  # all at once: every writer races for the same index
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        digests = []
        for writer in writers:
            out, err = writer.communicate(timeout=120)
            assert writer.returncode == 0, err
            digests.append(json.loads(out)["digest"])
        return digests
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()


def test_sixteen_concurrent_processes_keep_all_referrers(distribution_registry: Registry) -> None:
    """16 processes attach to one subject at once; all 16 are listed, 5 times out of 5."""
    with fault_proxy(distribution_registry.host) as counter, new_client() as client:
        for repetition in range(REPETITIONS):
            ref = f"{counter.host}/{unique('concurrent')}:v1"
            subject = push_sample_image(client, ref, ("linux/amd64",), index=False)
            counter.reset_counts()
            started = time.monotonic()
            digests = _run_writers(ref, subject)
            elapsed = time.monotonic() - started
            with new_client() as fresh:
                listed = fresh.list_referrers(ref, subject.digest, ARTIFACT_TYPE)
            index_writes = counter.count("PUT", f"/manifests/{fallback_tag(subject.digest)}$")
            print(
                f"repetition {repetition + 1}: {len(set(digests))} writers, {len(listed)} listed,"
                f" {index_writes} index writes, {elapsed:.1f} s"
            )
            assert len(set(digests)) == WRITERS
            assert sorted(d.digest for d in listed) == sorted(digests)
            assert all(d.artifact_type == ARTIFACT_TYPE for d in listed)
            assert {d.annotations["writer"] for d in listed} == {str(n) for n in range(WRITERS)}


def _stalled_writer_race(registry: Registry, settle: float) -> tuple[list[str], list[str]]:
    """Writer A's index PUT is held 0.6 s in a proxy, based on a read from before B wrote.

    B writes and confirms after ``settle`` seconds; A's stale write then lands and drops B's
    entry. Returns (digests written, digests listed afterwards).
    """
    with fault_proxy(registry.host) as stall, new_client() as setup:
        ref = registry.ref(unique("race"), "v1")
        subject = push_sample_image(setup, ref, ("linux/amd64",), index=False)
        setup.attach_artifact(ref, subject, ARTIFACT_TYPE, b"first", BUNDLE_TYPE, {})
        tag = fallback_tag(subject.digest)
        stall.add(Fault("delay_request", method="PUT", path=f"/manifests/{tag}$", delay=0.6))
        stalled_ref = ref.replace(registry.host, stall.host)
        written: dict[str, str] = {}

        def writer_a() -> None:
            with new_client() as a:
                written["a"] = a.attach_artifact(
                    stalled_ref, subject, ARTIFACT_TYPE, b"a", BUNDLE_TYPE, {}
                ).digest

        thread = threading.Thread(target=writer_a)
        thread.start()
        deadline = time.monotonic() + 10
        while not stall.count("GET", f"/manifests/{tag}$") and time.monotonic() < deadline:
            time.sleep(0.01)  # A has read the index and is about to write
        time.sleep(0.1)
        with RegistryClient(setup.keychain, FAST_HTTP, fallback_settle=settle) as b:
            written["b"] = b.attach_artifact(
                ref, subject, ARTIFACT_TYPE, b"b", BUNDLE_TYPE, {}
            ).digest
        thread.join(timeout=30)
        listed = [d.digest for d in setup.list_referrers(ref, subject.digest)]
        return [written["a"], written["b"]], listed


def test_a_lost_update_is_detected_and_merged_back(distribution_registry: Registry) -> None:
    written, listed = _stalled_writer_race(distribution_registry, settle=1.5)
    assert set(written) <= set(listed)
    assert len(listed) == 3


def test_without_waiting_a_stalled_writer_drops_entries(distribution_registry: Registry) -> None:
    """The control: if B confirms before A's stale write lands, B's entry is lost. This is why
    the client waits before its confirming read (and why the test above can fail)."""
    written, listed = _stalled_writer_race(distribution_registry, settle=0.0)
    assert written[0] in listed
    assert written[1] not in listed


def test_if_match_is_sent_and_412_means_read_merge_write_again(
    distribution_registry: Registry,
) -> None:
    with fault_proxy(distribution_registry.host) as proxy, new_client() as client:
        ref = f"{proxy.host}/{unique()}:v1"
        subject = push_sample_image(client, ref, ("linux/amd64",), index=False)
        first = client.attach_artifact(ref, subject, ARTIFACT_TYPE, b"1", BUNDLE_TYPE, {})
        tag = fallback_tag(subject.digest)
        proxy.reset_counts()
        proxy.add(Fault("status", method="PUT", path=f"/manifests/{tag}$", status=412))
        second = client.attach_artifact(ref, subject, ARTIFACT_TYPE, b"2", BUNDLE_TYPE, {})
        index_requests = [s for s in proxy.requests if s.path.endswith(f"/manifests/{tag}")]
        assert [(s.method, s.status) for s in index_requests] == [
            ("GET", 200),
            ("PUT", 412),
            ("GET", 200),
            ("PUT", 201),
            ("GET", 200),
        ]
        etag = index_requests[0].response_headers["etag"]
        assert index_requests[1].headers["if-match"] == etag
        assert index_requests[1].headers["content-type"] == mediatypes.OCI_INDEX
        listed = {d.digest for d in client.list_referrers(ref, subject.digest)}
        assert listed == {first.digest, second.digest}
