"""The fallback-index update's rounds, on a scripted last-writer-wins registry with a fake clock.

What each writer waits and when it reads back (docs/registry.md, "The fallback index under
concurrency"): a lone writer reads, writes, waits the quiet settle and confirms; a writer that sees
another writer's change of the index waits the longer contended settle, counted from its own last
write, and reads twice, a settle apart; one whose entries were dropped merges them back and
writes again.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from opk_sign.errors import RegistryError
from opk_sign.oci import client as client_module
from opk_sign.oci import mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.digest import sha256_digest
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.reference import Reference
from opk_sign.oci.referrers import SettlePolicy, merge_referrers_index, parse_referrers_index
from opk_sign.urls import InsecureRegistries

REF = Reference.parse("127.0.0.1:5000/octo-org/app:v1")
SUBJECT = "sha256:" + "ab" * 32
TYPE = "application/vnd.example.sig"
QUIET = 0.2
CONTENDED = 1.0


def entry(n: int) -> Descriptor:
    return Descriptor(mediatypes.OCI_MANIFEST, f"sha256:{n:064x}", 100 + n, artifact_type=TYPE)


MINE = entry(1)
THEIRS = entry(2)


class Clock:
    """time.monotonic and time.sleep; ``during_sleep`` runs one action per sleep, in order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.during_sleep: list[Callable[[], None]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.during_sleep:
            self.during_sleep.pop(0)()


class Registry:
    """One fallback tag; the last write wins and If-Match is ignored, as with distribution."""

    def __init__(self, clock: Clock, read_time: float = 0.002) -> None:
        self.clock = clock
        self.read_time = read_time
        self.index: bytes | None = None
        self.log: list[tuple[str, float, int]] = []  # (method, time it reached us, status)
        self.put_statuses: list[int] = []

    def read(self, ref: Reference, tag: str) -> tuple[bytes | None, str | None]:
        self.log.append(("GET", self.clock.now, 200 if self.index else 404))
        self.clock.now += self.read_time
        etag = f'"{sha256_digest(self.index)}"' if self.index else None
        return self.index, etag

    def request(self, method: str, ref: Reference, path: str, **kwargs: Any) -> requests.Response:
        assert method == "PUT" and path.startswith("manifests/sha256-")
        assert kwargs["retry"] is False
        self.clock.now += 0.003
        status = self.put_statuses.pop(0) if self.put_statuses else 201
        self.log.append(("PUT", self.clock.now, status))
        if status == 201:
            self.index = kwargs["data"]
        response = requests.Response()
        response.status_code = status
        response.raw = io.BytesIO(b"")
        return response

    def foreign_write(self, based_on: bytes | None, added: Descriptor) -> None:
        """Another writer's write of what it merged into ``based_on`` (maybe a stale read)."""
        self.index = merge_referrers_index(based_on, [added]) or based_on

    def listed(self) -> set[str]:
        assert self.index is not None
        return {d.digest for d in parse_referrers_index(self.index)}

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.log]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(client_module, "time", fake)
    return fake


@pytest.fixture
def registry(clock: Clock) -> Registry:
    return Registry(clock)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, registry: Registry) -> Iterator[RegistryClient]:
    with RegistryClient(
        Keychain.anonymous(),
        fallback_settle=QUIET,
        fallback_contended_settle=CONTENDED,
        insecure_registries=InsecureRegistries(),
    ) as made:
        made.settle_policy = SettlePolicy(quiet=QUIET, contended=CONTENDED, jitter=0.0)
        monkeypatch.setattr(made, "has_referrers_api", lambda *args: False)
        monkeypatch.setattr(made, "_read_fallback", registry.read)
        monkeypatch.setattr(made.transport, "request", registry.request)
        yield made


def put_time(registry: Registry, n: int = -1) -> float:
    return [at for method, at, _ in registry.log if method == "PUT"][n]


def test_a_lone_writer_waits_the_quiet_settle_once(
    client: RegistryClient, registry: Registry, clock: Clock
) -> None:
    pending = client.write_referrers(REF, SUBJECT, [MINE])
    assert registry.methods() == ["GET", "PUT"]
    assert clock.sleeps == []  # the write returns at once: the caller may do other work
    assert not pending.confirmed
    pending.confirm()
    assert pending.confirmed
    assert registry.methods() == ["GET", "PUT", "GET"]
    assert clock.sleeps == [pytest.approx(QUIET)]
    confirm_read = registry.log[-1][1]
    assert confirm_read >= put_time(registry) + QUIET
    assert registry.listed() == {MINE.digest}
    assert pending.index_writes == 1


def test_the_quiet_settle_grows_with_the_measured_read_to_write_time(
    client: RegistryClient, registry: Registry, clock: Clock
) -> None:
    registry.read_time = 0.1  # a registry far away: reads take 100 ms
    client.register_referrers(REF, SUBJECT, [MINE])
    read_to_write = 0.1 + 0.003
    assert clock.sleeps == [pytest.approx(4 * read_to_write)]


def test_another_writers_change_that_kept_ours_means_the_contended_settle(
    client: RegistryClient, registry: Registry, clock: Clock
) -> None:
    # During our quiet settle, a writer that read after our write adds its entry (ours kept).
    clock.during_sleep.append(lambda: registry.foreign_write(registry.index, THEIRS))
    client.register_referrers(REF, SUBJECT, [MINE])
    # The confirming read sees a digest we did not write: wait on, from our write, then read
    # twice, a contended settle apart.
    assert registry.methods() == ["GET", "PUT", "GET", "GET", "GET"]
    write = put_time(registry)
    assert registry.log[-2][1] >= write + CONTENDED
    assert registry.log[-1][1] >= write + 2 * CONTENDED
    assert registry.listed() == {MINE.digest, THEIRS.digest}


def test_a_write_held_past_the_first_contended_check_is_caught_by_the_second(
    client: RegistryClient, registry: Registry, clock: Clock
) -> None:
    stale = registry.index  # what a writer whose PUT the registry holds for long had read
    clock.during_sleep.extend(
        [
            lambda: registry.foreign_write(registry.index, THEIRS),  # contention seen
            lambda: None,  # the first contended check finds our entries
            lambda: registry.foreign_write(stale, entry(3)),  # the held write lands
        ]
    )
    client.register_referrers(REF, SUBJECT, [MINE])
    assert registry.methods() == ["GET", "PUT", "GET", "GET", "GET", "PUT", "GET", "GET"]
    assert MINE.digest in registry.listed()


def test_a_stale_write_that_dropped_ours_is_merged_back_then_contended(
    client: RegistryClient, registry: Registry, clock: Clock
) -> None:
    # A writer that read the index before our write (there was none) writes after it.
    clock.during_sleep.append(lambda: registry.foreign_write(None, THEIRS))
    client.register_referrers(REF, SUBJECT, [MINE])
    assert registry.methods() == ["GET", "PUT", "GET", "PUT", "GET", "GET"]
    assert registry.listed() == {MINE.digest, THEIRS.digest}
    assert registry.log[-1][1] >= put_time(registry) + 2 * CONTENDED


def test_a_412_means_read_merge_write_again_and_is_not_contention(
    client: RegistryClient, registry: Registry, clock: Clock
) -> None:
    """A registry that answers 412 checks If-Match: it turns away the stale writes the longer
    wait is there for."""
    registry.index = merge_referrers_index(None, [THEIRS])
    registry.put_statuses = [412]
    client.register_referrers(REF, SUBJECT, [MINE])
    assert [(m, s) for m, _, s in registry.log] == [
        ("GET", 200),
        ("PUT", 412),
        ("GET", 200),
        ("PUT", 201),
        ("GET", 200),
    ]
    assert clock.sleeps[-1] == pytest.approx(QUIET)


def test_entries_already_listed_are_neither_written_nor_waited_for(
    client: RegistryClient, registry: Registry, clock: Clock
) -> None:
    registry.index = merge_referrers_index(None, [THEIRS, MINE])
    pending = client.write_referrers(REF, SUBJECT, [MINE])
    assert pending.confirmed
    pending.confirm()
    assert registry.methods() == ["GET"]
    assert clock.sleeps == []


def test_with_the_referrers_api_there_is_nothing_to_write(
    client: RegistryClient, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "has_referrers_api", lambda *args: True)
    pending = client.write_referrers(REF, SUBJECT, [MINE])
    pending.confirm()
    assert pending.confirmed
    assert registry.log == []


def test_a_write_that_keeps_being_dropped_gives_up_naming_the_referrers(
    client: RegistryClient, registry: Registry, clock: Clock
) -> None:
    clock.during_sleep.extend(lambda: registry.foreign_write(None, THEIRS) for _ in range(40))
    with pytest.raises(RegistryError) as caught:
        client.register_referrers(REF, SUBJECT, [MINE])
    assert MINE.digest in caught.value.message
    assert "may not be listed" in caught.value.message
