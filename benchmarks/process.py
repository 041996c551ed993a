"""Timing commands as processes of their own: wall time, peak RSS and what they logged."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    wall: float
    rss_mib: float
    stderr: str
    returncode: int = 0


def timed(steps: list[list[list[str]]], env: dict[str, str], check: bool = True) -> Sample:
    """Runs each step's commands at once, one step after the other: wall time, the largest
    peak RSS of any process, and the stderr of all of them.

    The peak is read from /proc (VmHWM) while each process runs: the kernel's ru_maxrss would
    also count the memory of the benchmark itself, which the child holds until it execs.
    Stderr goes to a file, not a pipe nobody reads while the process runs, which would stop a
    process that logs more than the pipe holds. A command that fails ends the benchmark, unless
    `check` is false: then the sample holds the first non-zero exit status.
    """
    began = time.perf_counter()
    peak = 0
    logged = []
    returncode = 0
    for commands in steps:
        with tempfile.TemporaryFile() as stderr:
            processes = [
                subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
                for c in commands
            ]
            while any(p.poll() is None for p in processes):
                peak = max([peak, *(high_water_mark_kib(p.pid) for p in processes)])
                time.sleep(0.01)
            stderr.seek(0)
            logged.append(stderr.read().decode(errors="replace"))
        for process, command in zip(processes, commands, strict=True):
            if process.returncode != 0 and check:
                raise SystemExit(f"{command} failed: {logged[-1][-2000:]}")
            returncode = returncode or process.returncode
    return Sample(time.perf_counter() - began, peak / 1024, "".join(logged), returncode)


def high_water_mark_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def progress(message: str) -> None:
    """A line on stderr, so that a run of an hour shows which phase it is in."""
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)
