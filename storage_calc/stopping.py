"""Graceful stop: SIGTERM (what Kubernetes and systemd send) or SIGINT set an event that the
calculator checks between two listed pages, and waits short enough to see it."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

import structlog

log = structlog.get_logger("storage_calc")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How often a thread waiting for a listing wakes up. CPython runs signal handlers on the main
# thread only, between two bytecodes, and a wait without a timeout is not interrupted by a
# SIGTERM that the kernel hands to another thread (any thread may take a signal sent to the
# process): without waking, the main thread would see a stop only once the listing it waits for
# has ended, however long its requests take.
WAKE_SECONDS = 0.1

T = TypeVar("T")


def waited(future: Future[T]) -> T:
    """The result of `future`, waited for in steps of `WAKE_SECONDS`, so that a stop requested
    by a signal meanwhile is seen at once (its handler runs between two steps) rather than when
    the future ends."""
    while not wait([future], timeout=WAKE_SECONDS).done:
        pass
    return future.result()


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGTERM or SIGINT; a second one acts as if not caught."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            signal.signal(signum, previous[signal.Signals(signum)])
            os.kill(os.getpid(), signum)
            return
        log.warning("stop_requested", signal=signal.Signals(signum).name)
        stop.set()

    for sig in SIGNALS:
        signal.signal(sig, request_stop)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
