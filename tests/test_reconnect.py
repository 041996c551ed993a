"""A lost database connection costs an attempt, not the run: the job's backends terminated while
customers are listed or written, every customer still gets its exact figures, no flag is left,
and the run logs how many connections it replaced."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from storage_calc import calculator, db
from storage_calc.config import Settings
from storage_calc.errors import DatabaseError
from storage_calc.model import Outcome, RunReport
from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE
from tests.odd_names import flags_left
from tests.test_faults import wait_and_terminate

Conn = psycopg.Connection[Any]
CUSTOMERS = range(2, 10)
# The customers listed at once with 4 workers (calculator.customers_in_flight).
IN_FLIGHT = 3


@pytest.fixture
def customers(register: Callable[..., None], put: Callable[..., None]) -> None:
    """Customers 2 to 9, customer C with one asset of C bytes in space 1."""
    register(*(f"{c}/1/a" for c in CUSTOMERS))
    put(STORAGE, {f"{c}/1/a": c for c in CUSTOMERS})


@pytest.fixture
def retrying(settings: Settings) -> Settings:
    return replace(settings, reconnect_delays=(0.05, 0.05))


def figures(conn: Conn) -> dict[tuple[int, int], tuple[int, int]]:
    rows = conn.execute(
        'SELECT "Customer", "Space", "NumberOfStoredImages", "TotalSizeOfStoredImages"'
        ' FROM "CustomerStorage"'
    )
    return {(c, s): (n, size) for c, s, n, size in rows}


EXACT = {(c, s): (1, c) for c in CUSTOMERS for s in (0, 1)}


def terminate(conn: Conn, pids: list[int]) -> int:
    rows = conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (pids,))
    return sum(1 for (done,) in rows if done)


def job_backends(conn: Conn) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'storage-calc'"
    ).fetchall()
    return [pid for (pid,) in rows]


def run_backend(conn: Conn) -> int:
    """The backend of the run's own connection: the one holding the run's lock."""
    row = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = %s::int::oid AND objsubid = 2",
        (db.RUN_LOCK_NAMESPACE,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def customer_level(url: str) -> bool:
    """Whether `url` lists the level under a customer's prefix in the storage bucket, the first
    listing of a customer."""
    return url.startswith(f"https://{STORAGE}.") and re.search("prefix=[0-9]+%2F&", url) is not None


@pytest.fixture
def killed_while_listing(s3: S3Client, database_url: str) -> Iterator[list[int]]:
    """Terminates every backend of the job once the first customers in flight are all listing:
    their first listings wait for one another, and the last one to arrive terminates the run's
    connection and the connection of each of them before any of them goes on (the barrier's
    action). Yields the number of backends terminated."""
    terminated: list[int] = []

    def kill() -> None:
        with psycopg.connect(database_url, autocommit=True) as killer:
            terminated.append(terminate(killer, job_backends(killer)))

    barrier = threading.Barrier(IN_FLIGHT, action=kill, timeout=20)
    listing: set[str] = set()
    lock = threading.Lock()

    def hold(request: Any, **_: Any) -> None:
        if not customer_level(request.url) or terminated:
            return
        with lock:
            first = request.url not in listing
            listing.add(request.url)
        if first:
            barrier.wait()

    s3.meta.events.register("before-send.s3.ListObjectsV2", hold)
    yield terminated
    s3.meta.events.unregister("before-send.s3.ListObjectsV2", hold)


def run_finished(logs: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of the last run logged."""
    return [e for e in logs if e["event"] == "run_finished"][-1]


def test_backends_terminated_while_customers_are_listed_cost_one_more_attempt(
    customers: None, retrying: Settings, s3: S3Client, conn: Conn,
    killed_while_listing: list[int],
) -> None:  # fmt: skip
    with capture_logs() as logs:
        report = calculator.run(retrying, s3)
    assert killed_while_listing == [1 + IN_FLIGHT]
    assert report.outcome == "done", report.error_summary
    assert figures(conn) == EXACT
    assert flags_left(conn) == 0
    assert run_finished(logs)["reconnections"] == 1 + IN_FLIGHT
    retried = sorted(e["customer"] for e in logs if e["event"] == "customer_retried")
    assert retried == list(CUSTOMERS[:IN_FLIGHT])


def run_with_a_write_killed(
    settings: Settings, s3: S3Client, conn: Conn, database_url: str
) -> RunReport:
    """A second run whose write of customer 3 waits on rows held elsewhere; the waiting backend
    and the run's own are terminated, then the rows are let go."""
    calculator.run(settings, s3)
    conn.execute('UPDATE "CustomerStorage" SET "TotalSizeOfStoredImages" = 0')
    with psycopg.connect(database_url) as blocker:
        blocker.execute('SELECT * FROM "CustomerStorage" WHERE "Customer" = 3 FOR UPDATE')
        result: list[RunReport] = []
        thread = threading.Thread(target=lambda: result.append(calculator.run(settings, s3)))
        thread.start()
        run_pid = None
        try:
            assert wait_and_terminate(conn), "the write never waited on the held rows"
            run_pid = run_backend(conn)
            terminate(conn, [run_pid])
        finally:
            blocker.rollback()
            thread.join(30)
    return result[0]


def test_backends_terminated_while_a_customer_is_written_cost_one_more_attempt(
    customers: None, retrying: Settings, s3: S3Client, conn: Conn, database_url: str
) -> None:
    with capture_logs() as logs:
        report = run_with_a_write_killed(retrying, s3, conn, database_url)
    assert report.outcome == "done", report.error_summary
    assert [c.customer for c in report.customers if c.outcome is Outcome.DONE] == list(CUSTOMERS)
    assert figures(conn) == EXACT
    assert flags_left(conn) == 0
    assert run_finished(logs)["reconnections"] == 2
    assert [e["customer"] for e in logs if e["event"] == "customer_retried"] == [3]


def test_a_database_that_stays_unreachable_ends_the_run_after_its_attempts(
    customers: None, retrying: Settings, s3: S3Client, conn: Conn, database_url: str,
    put: Callable[..., None],
) -> None:  # fmt: skip
    """From the first listing of customer 4 on, the database refuses connections and the job's
    backends are terminated: the run gives up once its attempts are spent and starts no other
    customer, each customer keeps its old figures or has its new ones, never a mix, and the next
    run, with the database back, clears every flag."""
    calculator.run(retrying, s3)
    before = figures(conn)
    put(STORAGE, {f"{c}/1/a/more": 100 for c in CUSTOMERS})
    name = conn.info.dbname
    elsewhere = psycopg.conninfo.make_conninfo(database_url, dbname="postgres")

    def refuse(request: Any, **_: Any) -> None:
        if customer_level(request.url) and "prefix=4%2F&" in request.url:
            with psycopg.connect(elsewhere, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                terminate(admin, job_backends(admin))

    s3.meta.events.register("before-send.s3.ListObjectsV2", refuse)
    try:
        with capture_logs() as logs, pytest.raises(DatabaseError, match="cannot connect"):
            calculator.run(retrying, s3)
    finally:
        s3.meta.events.unregister("before-send.s3.ListObjectsV2", refuse)
        with psycopg.connect(elsewhere, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    after = figures(conn)
    new = {(c, s): (1, c + 100) for c in CUSTOMERS for s in (0, 1)}
    assert all(after[key] in (before[key], new[key]) for key in after)
    assert {key: after[key] for key in after if key[0] >= 7} == {
        key: before[key] for key in before if key[0] >= 7
    }
    assert not [e for e in logs if e.get("customer", 0) >= 7]
    assert calculator.run(retrying, s3).outcome == "done"
    assert flags_left(conn) == 0
    assert figures(conn) == new
