"""SIGINT and SIGTERM as interrupts the CLI can defer for a moment: a batch reports each image
whole (its line, its VSA) or not at all, then stops with 130 or 143 (docs/adr/0002)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as an interrupt: decided work is reported, the exit code is 143."""


class _State:
    deferring = 0
    pending: int | None = None


_state = _State()


def _interrupt(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.deferring:
        _state.pending = signum
        return
    raise _interrupt(signum)


def install() -> None:
    """Handle SIGINT and SIGTERM (only the main thread can)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a signal that arrives inside the block until it ends (the main thread's blocks)."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
        if not _state.deferring and _state.pending is not None:
            signum, _state.pending = _state.pending, None
            raise _interrupt(signum)
