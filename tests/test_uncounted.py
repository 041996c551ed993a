"""A prefix outside every customer that cannot be listed fails no customer: every customer is
computed and written, and the run names the prefix, marks its unattributed figures incomplete
and exits 1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import Result

from storage_calc import calculator
from storage_calc.config import Settings
from storage_calc.model import Outcome
from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE

Conn = psycopg.Connection[Any]


@pytest.fixture
def stray(
    register: Callable[..., None], put: Callable[..., None], fail_listing: Callable[..., None]
) -> None:
    """Customers 2 and 3, a stray `+30/` prefix that cannot be listed and a `transient/` one
    that can."""
    register("2/5/a", "3/1/b")
    put(STORAGE, {"2/5/a": 10, "3/1/b": 20, "+30/4/x": 4, "transient/y": 5})
    fail_listing("prefix=%2B30%2F")


def test_every_customer_is_computed_and_written(
    stray: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    report = calculator.run(settings, s3)
    assert [(c.customer, c.outcome, c.bytes) for c in report.customers] == [
        (2, Outcome.DONE, 10), (3, Outcome.DONE, 20)
    ]  # fmt: skip
    rows = conn.execute(
        'SELECT "Customer", "Space", "TotalSizeOfStoredImages" FROM "CustomerStorage" ORDER BY 1, 2'
    ).fetchall()
    assert rows == [(2, 0, 10), (2, 5, 10), (3, 0, 20), (3, 1, 20)]


def test_the_run_names_the_prefix_it_could_not_count_and_fails(
    stray: None, settings: Settings, s3: S3Client
) -> None:
    report = calculator.run(settings, s3)
    assert report.outcome == "failed"
    assert [u.prefix for u in report.uncounted] == ["s3://dlcs-storage/+30/"]
    assert (report.unattributed_objects, report.unattributed_bytes) == (1, 5)


def test_the_history_marks_the_unattributed_figures_incomplete(
    stray: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    calculator.run(settings, s3)
    row = conn.execute(
        "SELECT outcome, unattributed, uncounted, error FROM storage_calc.runs"
    ).fetchone()
    assert row is not None
    outcome, unattributed, uncounted, error = row
    assert (outcome, unattributed, uncounted) == ("failed", 1, ["s3://dlcs-storage/+30/"])
    assert error.startswith(
        "the unattributed figures are incomplete: access denied listing s3://dlcs-storage/+30/"
    )


def test_a_complete_count_records_no_uncounted_prefix(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register("2/5/a")
    put(STORAGE, {"2/5/a": 10, "+30/4/x": 4})
    assert calculator.run(settings, s3).outcome == "done"
    assert conn.execute("SELECT uncounted FROM storage_calc.runs").fetchone() == ([],)


def test_the_command_says_it_in_one_error_line_and_exits_1(
    stray: None, invoke: Callable[..., Result]
) -> None:
    result = invoke("run")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert errors[0].startswith(
        "Error: the unattributed figures are incomplete: access denied listing s3://dlcs-storage/+30/"
    )
