"""The progress of a run: counted by the calculator, drawn only on a terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import threading
import time
from collections.abc import Callable

from click.testing import Result

from storage_calc import calculator
from storage_calc.config import Settings
from storage_calc.progress import RunProgress, live_line
from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE, storage_calc
from tests.s3_proxy import S3Proxy


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_run_counts_its_customers_and_listed_objects(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client
) -> None:
    register("2/5/a", "3/1/b")
    put(STORAGE, {"2/5/a": 1, "2/5/a/x": 1, "3/1/b": 1})
    progress = RunProgress()
    report = calculator.run(settings, s3, progress=progress)
    assert (progress.customers_done, progress.customers, progress.objects) == (2, 2, 3)
    assert report.objects == 3


def test_the_line_says_customers_objects_rate_and_time() -> None:
    now = [1000.0]
    progress = RunProgress(clock=lambda: now[0])
    progress.customers_found(20)
    progress.customer_done()
    progress.listed(45_210)
    now[0] += 65
    assert progress.line() == "customers 1/20 · 45,210 objects · 696 objects/s · 1:05"


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def test_a_terminal_gets_the_line_redrawn_under_the_log_lines() -> None:
    terminal, progress = Terminal(), RunProgress()
    progress.customers_found(1)
    with live_line(terminal, progress) as stream:
        wait_until(lambda: "customers 0/1" in terminal.getvalue())
        stream.write("an event\n")
        wait_until(lambda: "an event\n\r\x1b[Kcustomers 0/1" in terminal.getvalue())
    shown = terminal.getvalue()
    assert shown.startswith("\r\x1b[Kcustomers 0/1")
    assert "\r\x1b[Kan event\n\r\x1b[Kcustomers 0/1" in shown
    assert shown.endswith("\r\x1b[K")  # the line is gone when the run ends


def test_elsewhere_nothing_is_drawn() -> None:
    pipe, progress = io.StringIO(), RunProgress()
    with live_line(pipe, progress) as stream:
        assert stream is pipe
        # No thread that could draw the line later.
        assert "progress" not in {thread.name for thread in threading.enumerate()}
    assert pipe.getvalue() == ""


def test_run_off_a_terminal_writes_only_json_events(
    register: Callable[..., None], invoke: Callable[..., Result]
) -> None:
    register("2/5/a")
    result = invoke("run")
    assert [json.loads(line)["event"] for line in result.stderr.splitlines()] == [
        "customer_calculated",
        "run_finished",
    ]


def read_until(fd: int, text: str, timeout: float = 30) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        readable, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        assert readable, f"{text!r} not shown within {timeout} s: {seen!r}"
        seen += os.read(fd, 4096).decode(errors="replace")
    return seen


def test_an_interactive_run_shows_the_progress_line(
    register: Callable[..., None],
    server_put: Callable[..., None],
    s3_proxy: S3Proxy,
    process_env: dict[str, str],
) -> None:
    register("2/5/a")
    server_put(STORAGE, {"2/5/a": 1})
    held = s3_proxy.hold("prefix=2%2F5%2F")
    terminal, stderr = pty.openpty()
    process = subprocess.Popen(
        storage_calc("run"), env=process_env, stdout=subprocess.DEVNULL, stderr=stderr
    )
    os.close(stderr)
    try:
        shown = read_until(terminal, "customers 0/1 · ")
        assert "objects/s · 0:0" in read_until(terminal, "objects/s")
        held.hold.set()
        assert process.wait(30) == 0
        shown += read_until(terminal, "run_finished")
        finished = next(line for line in shown.splitlines() if "run_finished" in line)
        assert not finished.split("\x1b[K")[-1].startswith("{")  # for people, not JSON
    finally:
        process.kill()
        os.close(terminal)
