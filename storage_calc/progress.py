"""How far a run has got, and the live line that shows it on a terminal.

The calculator counts; `live_line` draws. Off a terminal nothing is drawn: the structured log
events are the record there.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO, cast

REDRAW_SECONDS = 0.25


class RunProgress:
    """Counters updated by the run's threads. `clock` is there so that tests can set the time
    the line shows instead of waiting for it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.began = clock()
        self.customers = 0
        self.customers_done = 0
        self.objects = 0

    def customers_found(self, count: int) -> None:
        with self._lock:
            self.customers = count

    def customer_done(self) -> None:
        with self._lock:
            self.customers_done += 1

    def listed(self, objects: int) -> None:
        with self._lock:
            self.objects += objects

    def line(self) -> str:
        """`customers 3/20 · 45,210 objects · 12,300 objects/s · 0:04`"""
        elapsed = self._clock() - self.began
        rate = self.objects / elapsed if elapsed > 0 else 0.0
        minutes, seconds = divmod(int(elapsed), 60)
        return (
            f"customers {self.customers_done}/{self.customers} · {self.objects:,} objects · "
            f"{rate:,.0f} objects/s · {minutes}:{seconds:02d}"
        )


class TerminalLine(io.TextIOBase):
    """A text stream for log lines that keeps one progress line at the bottom of a terminal.

    Every write first erases the progress line, so log lines never run into it, and the next
    redraw puts it back under them.
    """

    def __init__(self, stream: TextIO, progress: RunProgress) -> None:
        super().__init__()
        self.stream = stream
        self.progress = progress
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.stream.write("\r\x1b[K" + text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return True

    def redraw(self) -> None:
        with self._lock:
            self.stream.write("\r\x1b[K" + self.progress.line())
            self.stream.flush()

    def clear(self) -> None:
        with self._lock:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


@contextlib.contextmanager
def live_line(stream: TextIO, progress: RunProgress) -> Iterator[TextIO]:
    """On a terminal, redraws the progress line until the block ends and yields the stream log
    lines must go to; elsewhere yields `stream` unchanged and draws nothing."""
    if not stream.isatty():
        yield stream
        return
    line = TerminalLine(stream, progress)
    done = threading.Event()

    def redraw() -> None:
        while not done.wait(REDRAW_SECONDS):
            line.redraw()

    drawer = threading.Thread(target=redraw, name="progress", daemon=True)
    drawer.start()
    try:
        yield cast(TextIO, line)
    finally:
        done.set()
        drawer.join()
        line.clear()
