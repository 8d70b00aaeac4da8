"""Overall deadlines: how long a piece of work (an HTTP exchange, an image's verification, a run)
may take in all, however its time is spent.

Per-read socket timeouts cannot stop a server that trickles a byte every few seconds; a deadline
can. The deadline in force lives in a context variable: ``with within(seconds, what):`` narrows it
for the block (never extends an enclosing one), I/O code asks :func:`remaining` before blocking
and :func:`check` between steps, and :class:`DeadlineExceeded` says what was too slow.

Threads: a context variable is per thread, and threads (those of a ``ThreadPoolExecutor`` too) do
not inherit the context of whoever started or submitted to them. A worker must set its deadline
itself: capture :func:`current` in the submitting thread and enter it in the worker with
``within(deadline)``, or wrap the task with :func:`carry`.

Pure: the standard library and :mod:`opk_sign.errors` only.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from opk_sign.errors import NetworkError

P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E", bound="DeadlineExceeded")

HINT = (
    "the server answered too slowly or kept trickling its answer; if it is only slow, "
    "allow more time (--timeout SECONDS)"
)


@dataclass(frozen=True)
class Deadline:
    """An absolute point on the monotonic clock, the budget it came from, and what it bounds."""

    at: float
    seconds: float
    what: str

    @classmethod
    def after(cls, seconds: float, what: str) -> Deadline:
        """The deadline ``seconds`` from now."""
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(f"a deadline needs a duration of 0 s or more, not {seconds}")
        return cls(time.monotonic() + seconds, seconds, what)

    def remaining(self) -> float:
        """Seconds left, 0.0 once passed."""
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at


class DeadlineExceeded(NetworkError):
    """Work did not finish before its deadline (exit 13, like any network failure: the outcome
    is unknown). Callers fetching trust material turn it into a TrustError (exit 14), as they do
    for other network failures.

    ``bound`` is the deadline that passed; ``doing`` what was under way inside it when that is not
    the bounded thing itself (an exchange inside an image's budget); ``received`` the bytes the
    server had sent, where known.
    """

    def __init__(
        self,
        bound: Deadline,
        doing: str | None = None,
        *,
        received: int | None = None,
        detail: str | None = None,
        hint: str | None = HINT,
    ) -> None:
        self.bound = bound
        self.doing = None if doing == bound.what else doing
        self.received = received
        self.detail = detail
        super().__init__(_message(bound, self.doing, received, detail), hint=hint)

    @property
    def outer(self) -> bool:
        """Whether an enclosing budget passed rather than the work's own."""
        return self.doing is not None

    def recast(self, cls: type[E], *, hint: str | None = None) -> E:
        """The same failure as ``cls`` (a subclass, e.g. a registry's), optionally re-hinted."""
        return cls(
            self.bound,
            self.doing,
            received=self.received,
            detail=self.detail,
            hint=self.hint if hint is None else hint,
        )


def _message(bound: Deadline, doing: str | None, received: int | None, detail: str | None) -> str:
    notes = []
    if doing:
        notes.append(f"{doing} was under way")
    if received == 0:
        notes.append("no answer had begun")
    elif received is not None:
        notes.append(f"the server sent {_amount(received)}")
    if detail:
        notes.append(detail)
    suffix = f" ({'; '.join(notes)})" if notes else ""
    return f"{bound.what} did not finish within {_seconds(bound.seconds)} s{suffix}"


def _seconds(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def _amount(count: int) -> str:
    return "1 byte" if count == 1 else f"{count} bytes"


@dataclass(frozen=True)
class _State:
    bound: Deadline | None = None
    #: The innermost ``within``'s description: what is being done right now.
    activity: str | None = None


_NONE = _State()
_STATE: contextvars.ContextVar[_State | None] = contextvars.ContextVar(
    "opk_sign_deadline", default=None
)


def _state() -> _State:
    return _STATE.get() or _NONE


def current() -> Deadline | None:
    """The deadline in force in this thread (and context), or None: unbounded."""
    return _state().bound


def activity() -> str | None:
    """What the innermost :func:`within` said is being done, or None."""
    return _state().activity


def remaining() -> float | None:
    """Seconds left before the deadline in force (0.0 once passed), or None: unbounded."""
    bound = current()
    return None if bound is None else bound.remaining()


def tightest(*deadlines: Deadline | None) -> Deadline | None:
    """The earliest of ``deadlines`` (None: no deadline at all)."""
    found = [d for d in deadlines if d is not None]
    return min(found, key=lambda d: d.at) if found else None


@contextlib.contextmanager
def within(limit: float | Deadline | None, what: str = "") -> Iterator[Deadline | None]:
    """Run the block under ``limit``: seconds from now, a captured :class:`Deadline` (to carry a
    deadline into another thread), or None to only name what the block does.

    An enclosing deadline that passes earlier stays in force: a block never gets more time than
    its caller has. ``what`` names the work in errors. Yields the deadline now in force.
    """
    state = _state()
    if limit is None:
        new = None
    elif isinstance(limit, Deadline):
        new = limit
    else:
        new = Deadline.after(limit, what or "the operation")
    bound = state.bound
    # Ties keep the enclosing one: its description is the caller's.
    if new is not None and (bound is None or new.at < bound.at):
        bound = new
    label = what or (new.what if new is not None else None) or state.activity
    token = _STATE.set(_State(bound, label))
    try:
        yield bound
    finally:
        _STATE.reset(token)


def check(doing: str | None = None) -> None:
    """Raise :class:`DeadlineExceeded` if the deadline in force has passed.

    ``doing`` (default: the innermost :func:`within`'s description) names what was under way.
    """
    state = _state()
    if state.bound is not None and state.bound.expired:
        raise DeadlineExceeded(state.bound, doing or state.activity)


def sleep(seconds: float, doing: str | None = None) -> None:
    """``time.sleep(seconds)``, unless that would end past the deadline in force: then raise
    :class:`DeadlineExceeded` at once instead of waiting for a certain failure (a retry's
    backoff must not outlive the work it retries)."""
    state = _state()
    bound = state.bound
    if bound is not None and seconds >= bound.remaining():
        raise DeadlineExceeded(
            bound, doing or state.activity, detail=f"a wait of {_seconds(seconds)} s would pass it"
        )
    if seconds > 0:
        time.sleep(seconds)


def carry(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn``, to run in another thread under the deadline (and description) in force here.

    Call it in the submitting thread: ``pool.map(carry(work), items)``. Each call of the result
    enters the captured state afresh, so many workers may run it at once.
    """
    state = _state()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        token = _STATE.set(state)
        try:
            return fn(*args, **kwargs)
        finally:
            _STATE.reset(token)

    return run


__all__ = [
    "Deadline",
    "DeadlineExceeded",
    "activity",
    "carry",
    "check",
    "current",
    "remaining",
    "sleep",
    "tightest",
    "within",
]
