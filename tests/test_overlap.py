"""Runs that overlap, crash or are stopped: real `storage-calc` processes, a real PostgreSQL,
and an S3 proxy that holds a listing so a process can be caught in the middle of a customer."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.conftest import STORAGE, THUMBS, read_events
from tests.s3_proxy import S3Proxy

Spawn = Callable[..., subprocess.Popen[str]]
SPACE_5 = "prefix=2%2F5%2F"


def figures(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        'SELECT "Customer", "Space", "NumberOfStoredImages", "TotalSizeOfStoredImages",'
        ' "TotalSizeOfThumbnails" FROM "CustomerStorage" ORDER BY 1, 2'
    ).fetchall()


def flags(conn: psycopg.Connection[Any]) -> set[bool]:
    return {row[0] for row in conn.execute('SELECT "CheckingInProgress" FROM "ImageStorage"')}


@pytest.fixture
def customer_2(register: Callable[..., None], server_put: Callable[..., None]) -> None:
    register("2/5/foo", "2/6/bar")
    server_put(STORAGE, {"2/5/foo": 100, "2/5/foo/original": 1000, "2/6/bar": 300})
    server_put(THUMBS, {"2/5/foo/open/100.jpg": 5})


def finish(process: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def wait_for_event(process: subprocess.Popen[str], event: str, timeout: float = 30) -> None:
    read_events(process, lambda events: event in events, timeout)


def test_a_second_run_skips_a_customer_being_computed_and_exits_75(
    customer_2: None, s3_proxy: S3Proxy, spawn: Spawn, conn: psycopg.Connection[Any]
) -> None:
    held = s3_proxy.hold(SPACE_5)
    first = spawn("run", "--customer", "2")
    assert held.reached.wait(30), "the first run never listed space 5"

    code, _, stderr = finish(spawn("run", "--customer", "2"))
    assert code == 75
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["customer_locked", "run_finished"]
    assert events[-1]["outcome"] == "locked"

    held.hold.set()
    assert finish(first)[0] == 0
    assert figures(conn) == [(2, 0, 2, 1400, 5), (2, 5, 1, 1100, 5), (2, 6, 1, 300, 0)]


def test_a_run_over_everything_computes_the_customers_that_are_free(
    customer_2: None, register: Callable[..., None], s3_proxy: S3Proxy, spawn: Spawn,
    conn: psycopg.Connection[Any],
) -> None:  # fmt: skip
    register("3/1/baz")
    held = s3_proxy.hold(SPACE_5)
    first = spawn("run", "--customer", "2")
    assert held.reached.wait(30)

    code, _, stderr = finish(spawn("run"))
    assert code == 0, stderr
    assert figures(conn) == [(3, 0, 1, 0, 0), (3, 1, 1, 0, 0)]
    held.hold.set()
    assert finish(first)[0] == 0


def test_a_customer_slow_to_list_holds_up_no_write_of_the_customers_after_it(
    customer_2: None, register: Callable[..., None], s3_proxy: S3Proxy, spawn: Spawn,
    conn: psycopg.Connection[Any],
) -> None:  # fmt: skip
    register("3/1/baz")
    held = s3_proxy.hold(SPACE_5)
    run = spawn("run")
    assert held.reached.wait(30), "the run never listed space 5 of customer 2"
    deadline = time.monotonic() + 30
    while figures(conn) != [(3, 0, 1, 0, 0), (3, 1, 1, 0, 0)]:
        assert time.monotonic() < deadline, "customer 3 waited for customer 2's listing"
        time.sleep(0.05)
    held.hold.set()
    code, _, stderr = finish(run)
    assert code == 0, stderr
    assert [row[:3] for row in figures(conn)] == [
        (2, 0, 2),
        (2, 5, 1),
        (2, 6, 1),
        (3, 0, 1),
        (3, 1, 1),
    ]


def test_a_killed_run_leaves_the_flag_and_the_next_run_clears_it(
    customer_2: None, s3_proxy: S3Proxy, spawn: Spawn, conn: psycopg.Connection[Any],
    server_put: Callable[..., None],
) -> None:  # fmt: skip
    assert finish(spawn("run"))[0] == 0
    before = figures(conn)
    server_put(STORAGE, {"2/5/foo/more": 10})
    held = s3_proxy.hold(SPACE_5)
    victim = spawn("run", "--customer", "2")
    assert held.reached.wait(30)
    assert flags(conn) == {True}

    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert flags(conn) == {True}
    assert figures(conn) == before

    held.hold.set()
    code, _, stderr = finish(spawn("run", "--customer", "2"))
    assert code == 0, stderr
    assert flags(conn) == {False}
    assert figures(conn) == [(2, 0, 2, 1410, 5), (2, 5, 1, 1110, 5), (2, 6, 1, 300, 0)]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_run_rolls_back_the_customer_and_is_recorded_as_interrupted(
    customer_2: None, s3_proxy: S3Proxy, spawn: Spawn, conn: psycopg.Connection[Any],
    server_put: Callable[..., None], stop_signal: signal.Signals,
) -> None:  # fmt: skip
    assert finish(spawn("run"))[0] == 0
    before = figures(conn)
    server_put(STORAGE, {"2/5/foo/more": 10})
    held = s3_proxy.hold(SPACE_5)
    stopped = spawn("run")
    assert held.reached.wait(30)

    stopped.send_signal(stop_signal)
    wait_for_event(stopped, "stop_requested")  # only then may the held page come back
    held.hold.set()
    code, _, stderr = finish(stopped, timeout=10)
    assert code == 1
    assert stderr.splitlines()[-1] == (
        "Error: interrupted: customers not computed keep their previous figures"
    )
    assert figures(conn) == before
    assert flags(conn) == {False}
    outcomes = conn.execute("SELECT outcome FROM storage_calc.runs ORDER BY id").fetchall()
    assert outcomes == [("done",), ("interrupted",)]


def test_the_next_run_records_a_killed_run_as_abandoned(
    customer_2: None, s3_proxy: S3Proxy, spawn: Spawn, conn: psycopg.Connection[Any]
) -> None:
    held = s3_proxy.hold(SPACE_5)
    victim = spawn("run", "--customer", "2")
    assert held.reached.wait(30)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert conn.execute("SELECT outcome FROM storage_calc.runs").fetchall() == [("running",)]

    held.hold.set()
    assert finish(spawn("run", "--customer", "2"))[0] == 0
    assert conn.execute("SELECT outcome, error FROM storage_calc.runs ORDER BY id").fetchall() == [
        ("abandoned", "the process running it ended before recording its outcome"),
        ("done", None),
    ]
