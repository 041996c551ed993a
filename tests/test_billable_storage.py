"""Billable bytes in the job's own table: replaced per scope of a customer, read back, and shown
by `storage-calc report billable`, on a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from click.testing import Result

from storage_calc import db
from storage_calc.billable import BillableTally
from storage_calc.model import Location, LocationKind, Spaces
from storage_calc.sources.listing import S3Client
from storage_calc.sources.versions import billable_of
from tests.conftest import FIRST_PART, SECOND_PART, STORAGE, THUMBS
from tests.conftest import billable_row as row
from tests.databases import billable_rows, created_database

Conn = psycopg.Connection[Any]
Invoke = Callable[..., Result]
CHECKED = datetime(2026, 11, 29, 9, 15, tzinfo=UTC)
LOCATIONS = (
    Location(STORAGE, "", LocationKind.ARTEFACT),
    Location(THUMBS, "", LocationKind.THUMBNAIL),
)


def spaces_of(conn: Conn) -> list[tuple[int, int | None, int]]:
    return [(r.customer, r.space, r.current_bytes) for r in billable_rows(conn, None)]


@pytest.fixture
def written(conn: Conn) -> None:
    """Customer 2 with its keys outside any space and spaces 5 and 6; customer 3 with space 1."""
    rows = [row(2, None, current_bytes=1), row(2, 5, current_bytes=2), row(2, 6, current_bytes=3)]
    db.write_billable(conn, 2, Spaces(), rows, CHECKED)
    db.write_billable(conn, 3, Spaces(), [row(3, 1, current_bytes=4)], CHECKED)


@pytest.fixture
def billed_customer(conn: Conn, s3: S3Client, versioned: None) -> None:
    """Customer 2 of the versioned buckets, listed and written."""
    tally = BillableTally()
    billable_of(s3, LOCATIONS, "2/", tally)
    db.write_billable(conn, 2, Spaces(), tally.rows(), CHECKED)


def test_rows_read_back_as_written(conn: Conn) -> None:
    rows = [
        row(2, None, current_objects=1, current_bytes=7, by_storage_class={"STANDARD": 7}),
        row(2, 5, incomplete_uploads=1, oldest_upload=CHECKED, by_storage_class={}),
    ]
    db.write_billable(conn, 2, Spaces(), rows, CHECKED)
    assert billable_rows(conn, 2) == rows


def test_a_whole_customer_replaces_all_its_rows_and_no_other_customers(
    conn: Conn, written: None
) -> None:
    db.write_billable(conn, 2, Spaces(), [row(2, 7, current_bytes=9)], CHECKED)
    assert spaces_of(conn) == [(2, 7, 9), (3, 1, 4)]


def test_some_spaces_replace_only_theirs_and_keep_the_row_outside_spaces(
    conn: Conn, written: None
) -> None:
    rows = [row(2, None, current_bytes=90), row(2, 5, current_bytes=20)]
    db.write_billable(conn, 2, Spaces(only=frozenset({5})), rows, CHECKED)
    assert spaces_of(conn) == [(2, None, 1), (2, 5, 20), (2, 6, 3), (3, 1, 4)]


def test_excluded_spaces_and_the_row_outside_spaces_are_left_to_others(
    conn: Conn, written: None
) -> None:
    db.write_billable(conn, 2, Spaces(excluded=frozenset({6})), [], CHECKED)
    assert spaces_of(conn) == [(2, None, 1), (2, 6, 3), (3, 1, 4)]


def test_report_billable_json_has_exact_figures_per_space(
    billed_customer: None, invoke: Invoke
) -> None:
    result = invoke("report", "billable", "--customer", "2", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r.pop("last_calculated") is not None for r in rows] == [True, True]
    assert rows == [
        {
            "customer": 2, "space": None, "current_objects": 1, "current_bytes": 7,
            "billed_bytes": 7, "noncurrent_versions": 0, "noncurrent_bytes": 0,
            "delete_markers": 0, "incomplete_uploads": 0, "incomplete_upload_bytes": 0,
            "oldest_upload": None, "by_storage_class": {"STANDARD": 7},
            "last_checked": "2026-11-29T09:15:00+00:00",
        },
        {
            "customer": 2, "space": 5, "current_objects": 3, "current_bytes": 315,
            "billed_bytes": 315 - 10 + 128 * 1024 + 150 + FIRST_PART + SECOND_PART,
            "noncurrent_versions": 2, "noncurrent_bytes": 150, "delete_markers": 1,
            "incomplete_uploads": 1, "incomplete_upload_bytes": FIRST_PART + SECOND_PART,
            "oldest_upload": "2010-11-10T20:48:33+00:00",
            "by_storage_class": {"STANDARD": 305, "STANDARD_IA": 10},
            "last_checked": "2026-11-29T09:15:00+00:00",
        },
    ]  # fmt: skip


def test_report_billable_prints_a_table_in_binary_units(
    billed_customer: None, invoke: Invoke
) -> None:
    result = invoke("report", "billable")
    assert result.exit_code == 0, result.stderr
    header, outside, space = result.stdout.splitlines()
    assert header.split()[:5] == ["customer", "space", "objects", "current", "billed"]
    assert outside.split()[:5] == ["2", "none", "1", "7", "B"]
    assert "5.1 MiB" in space and "2010-11-10 20:48:33" in space
    assert "STANDARD 305 B, STANDARD_IA 10 B" in space


def test_report_billable_says_when_nothing_is_recorded(invoke: Invoke) -> None:
    result = invoke("report", "billable", "--customer", "2")
    assert (result.exit_code, result.stdout) == (0, "no billable bytes recorded\n")


def test_report_billable_before_the_migration_says_to_migrate(
    server_url: str, invoke: Invoke
) -> None:
    with created_database(server_url) as empty:
        result = invoke("report", "billable", "--database-url", empty)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: reading the billable bytes failed: relation")
    assert result.stderr.endswith("run 'storage-calc db migrate' first\n")
    assert result.stderr.count("\n") == 1
