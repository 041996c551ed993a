"""Graceful stop: SIGTERM (what Kubernetes and systemd send) or SIGINT set an event that the
calculator checks between two listed pages."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import structlog

log = structlog.get_logger("storage_calc")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
