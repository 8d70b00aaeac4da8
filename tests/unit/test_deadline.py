"""opk_sign.deadline: nesting never extends, threads do not share deadlines, expiry is reported
with what was slow, and the error is a network failure (exit 13)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from opk_sign import deadline
from opk_sign.deadline import Deadline, DeadlineExceeded, within
from opk_sign.errors import EXIT_REGISTRY, NetworkError


def test_unbounded_by_default() -> None:
    assert deadline.current() is None
    assert deadline.remaining() is None
    deadline.check()  # nothing to exceed
    deadline.sleep(0)


def test_within_bounds_the_block_and_restores_after() -> None:
    with within(5, "the work") as bound:
        assert bound is not None and bound.what == "the work"
        left = deadline.remaining()
        assert left is not None and 4.5 < left <= 5
        assert deadline.activity() == "the work"
    assert deadline.current() is None
    assert deadline.activity() is None


def test_nesting_narrows_but_never_extends() -> None:
    with within(0.5, "outer") as outer:
        with within(60, "inner") as inner:
            assert inner is outer  # a longer inner budget does not get more time
            left = deadline.remaining()
            assert left is not None and left <= 0.5
            assert deadline.activity() == "inner"
        with within(0.1, "short") as short:
            assert short is not None and short.what == "short"
            assert short.at < outer.at  # type: ignore[union-attr]
        assert deadline.current() is outer


def test_within_none_only_names_the_work() -> None:
    with within(5, "the run") as run, within(None, "GET /v2/x") as bound:
        assert bound is run
        assert deadline.activity() == "GET /v2/x"
    with within(None, "GET /v2/y") as bound:
        assert bound is None
        assert deadline.activity() == "GET /v2/y"


def test_expiry_raises_a_network_error_naming_the_work() -> None:
    with within(0.05, "verifying registry.example/app:v1"):
        deadline.check()
        time.sleep(0.06)
        with pytest.raises(DeadlineExceeded) as caught:
            deadline.check()
    err = caught.value
    assert isinstance(err, NetworkError)
    assert err.exit_code == EXIT_REGISTRY
    assert str(err) == "verifying registry.example/app:v1 did not finish within 0.05 s"
    assert not err.outer
    assert err.hint and "--timeout" in err.hint


def test_an_enclosing_deadline_names_what_was_under_way() -> None:
    with within(0.05, "the run"), within(None, "registry r: GET /v2/x"):
        time.sleep(0.06)
        with pytest.raises(DeadlineExceeded) as caught:
            deadline.check()
    assert caught.value.outer
    assert str(caught.value) == (
        "the run did not finish within 0.05 s (registry r: GET /v2/x was under way)"
    )


def test_message_with_bytes_received() -> None:
    bound = Deadline(0.0, 60, "registry 127.0.0.1:5000: GET /v2/o/app/manifests/v1")
    assert str(DeadlineExceeded(bound, received=12)) == (
        "registry 127.0.0.1:5000: GET /v2/o/app/manifests/v1 did not finish within 60 s "
        "(the server sent 12 bytes)"
    )
    assert "no answer had begun" in str(DeadlineExceeded(bound, received=0))


def test_recast_keeps_the_failure() -> None:
    class Mine(DeadlineExceeded):
        pass

    err = DeadlineExceeded(Deadline(0.0, 2, "x"), "y", received=3, detail="z")
    again = err.recast(Mine, hint="other")
    assert isinstance(again, Mine)
    assert (again.message, again.hint, again.outer) == (err.message, "other", True)


def test_sleep_that_would_pass_the_deadline_fails_at_once() -> None:
    with within(0.5, "retrying"):
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="a wait of 5 s would pass it"):
            deadline.sleep(5)
        assert time.monotonic() - started < 0.1
        deadline.sleep(0.01)


def test_a_deadline_after_it_passed_and_bad_durations() -> None:
    with within(0, "nothing"):
        assert deadline.remaining() == 0.0
        with pytest.raises(DeadlineExceeded):
            deadline.check()
    with pytest.raises(ValueError):
        Deadline.after(-1, "negative")
    with pytest.raises(ValueError):
        Deadline.after(float("nan"), "nan")


def test_threads_do_not_inherit_or_share_deadlines() -> None:
    seen: list[Deadline | None] = []
    with within(5, "main"):
        thread = threading.Thread(target=lambda: seen.append(deadline.current()))
        thread.start()
        thread.join()
        with ThreadPoolExecutor(1) as pool:
            seen.append(pool.submit(deadline.current).result())
    assert seen == [None, None]  # hence: set the deadline inside the worker


def test_concurrent_workers_keep_their_own_deadlines() -> None:
    barrier = threading.Barrier(4)

    def work(seconds: float) -> tuple[float, str | None]:
        with within(seconds, f"image {seconds}"):
            barrier.wait()  # all four deadlines are set at once
            bound = deadline.current()
            assert bound is not None
            return bound.seconds, deadline.activity()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, [1.0, 2.0, 3.0, 4.0]))
    assert results == [(s, f"image {s}") for s in (1.0, 2.0, 3.0, 4.0)]


def test_carry_runs_workers_under_the_submitters_deadline() -> None:
    def work(_: int) -> tuple[Deadline | None, str | None]:
        return deadline.current(), deadline.activity()

    with within(5, "the run") as run, ThreadPoolExecutor(3) as pool:
        results = list(pool.map(deadline.carry(work), range(6)))
    assert results == [(run, "the run")] * 6
    assert deadline.current() is None


def test_a_captured_deadline_is_entered_in_a_worker() -> None:
    with within(5, "the run") as run:
        captured = deadline.current()

    def work() -> Deadline | None:
        with within(captured), within(60, "an image"):
            return deadline.current()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(work).result() is run  # the image's 60 s do not extend the run's 5
