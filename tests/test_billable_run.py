"""`run --billable`: what S3 bills beyond current versions, computed by a run from listings or
from an inventory of all versions, written in the customer's transaction."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from storage_calc import calculator
from storage_calc.config import Settings, parse_destination
from storage_calc.model import Scope
from storage_calc.progress import RunProgress
from storage_calc.sources.listing import S3Client
from tests.conftest import FIRST_PART, SECOND_PART, STORAGE, THUMBS
from tests.databases import billable_rows
from tests.inventories import versions_report_of_bucket

Conn = psycopg.Connection[Any]
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def billable(settings: Settings) -> Settings:
    return replace(settings, billable=True)


def figures(conn: Conn, customer: int | None = None) -> list[tuple[Any, ...]]:
    """Each billable row but its upload time, which moto does not keep."""
    return [
        (r.customer, r.space, r.current_objects, r.current_bytes, r.billed_bytes,
         r.noncurrent_versions, r.noncurrent_bytes, r.delete_markers, r.incomplete_uploads,
         r.incomplete_upload_bytes, dict(r.by_storage_class))
        for r in billable_rows(conn, customer)
    ]  # fmt: skip


def test_a_run_writes_what_s3_bills_per_customer_and_space(
    versioned: None, billable: Settings, s3: S3Client, conn: Conn
) -> None:
    report = calculator.run(billable, s3)
    assert report.error is None
    uploads = FIRST_PART + SECOND_PART
    assert figures(conn) == [
        (2, None, 1, 7, 7, 0, 0, 0, 0, 0, {"STANDARD": 7}),
        (2, 5, 3, 315, 305 + 128 * 1024 + 150 + uploads, 2, 150, 1, 1, uploads,
         {"STANDARD": 305, "STANDARD_IA": 10}),
        (3, 1, 1, 9, 9, 0, 0, 0, 0, 0, {"STANDARD": 9}),
    ]  # fmt: skip
    assert [len(c.billable or ()) for c in report.customers] == [2, 1]


def test_without_billable_or_in_a_dry_run_no_billable_row_is_written(
    versioned: None, settings: Settings, billable: Settings, s3: S3Client, conn: Conn
) -> None:
    calculator.run(settings, s3)
    calculator.run(billable, s3, dry_run=True)
    assert figures(conn) == []


def test_a_space_run_replaces_only_its_space(
    versioned: None, billable: Settings, s3: S3Client, conn: Conn
) -> None:
    calculator.run(billable, s3)
    before = figures(conn, 2)
    s3.put_object(Bucket=STORAGE, Key="2/5/c", Body=b"\0" * 4)
    s3.put_object(Bucket=STORAGE, Key="2/pdf/y", Body=b"\0" * 4)
    calculator.run(billable, s3, Scope(customer=2, space=5))
    after = figures(conn, 2)
    assert after[0] == before[0]
    assert (after[1][3], after[1][4] - before[1][4]) == (319, 4)


@pytest.mark.parametrize("file_format", ["CSV", "Parquet"])
def test_an_inventory_of_all_versions_gives_the_figures_of_a_listing(
    versioned: None, billable: Settings, inventory_s3: S3Client, conn: Conn, file_format: str
) -> None:
    calculator.run(billable, inventory_s3)
    listed = figures(conn)
    inventory = replace(
        billable,
        source="inventory",
        storage_inventory=parse_destination(
            versions_report_of_bucket(inventory_s3, STORAGE, file_format, NOW)
        ),
        thumbs_inventory=parse_destination(
            versions_report_of_bucket(inventory_s3, THUMBS, file_format, NOW)
        ),
    )
    report = calculator.run(inventory, inventory_s3)
    assert report.error is None
    assert figures(conn) == listed


def test_report_billable_shows_a_versioned_bucket_with_an_unfinished_upload(
    versioned: None, s3: S3Client, invoke: Callable[..., Any]
) -> None:
    assert invoke("run", "--billable").exit_code == 0
    result = invoke("report", "billable", "--customer", "2")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["customer", "space", "objects", "current"]
    assert lines[2].split()[:2] == ["2", "5"] and "STANDARD_IA 10 B" in lines[2]


def test_the_versions_listed_count_in_the_runs_progress(
    versioned: None, settings: Settings, billable: Settings, s3: S3Client
) -> None:
    without, listed = RunProgress(), RunProgress()
    calculator.run(settings, s3, progress=without)
    report = calculator.run(billable, s3, progress=listed)
    entries = 0
    for bucket in (STORAGE, THUMBS):
        for customer in {c.customer for c in report.customers}:
            versions = s3.list_object_versions(Bucket=bucket, Prefix=f"{customer}/")
            uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=f"{customer}/")
            entries += sum(len(versions.get(k, [])) for k in ("Versions", "DeleteMarkers"))
            entries += len(uploads.get("Uploads", []))
    assert entries > 0
    assert listed.objects - without.objects == entries


def test_a_stop_while_versions_are_listed_ends_their_listing_and_the_run(
    versioned: None, billable: Settings, s3: S3Client, conn: Conn
) -> None:
    stop = threading.Event()
    asked: list[str] = []
    s3.meta.events.register("before-send.s3.ListObjectVersions", lambda **_: stop.set())
    s3.meta.events.register(
        "before-send.s3.ListMultipartUploads", lambda request, **_: asked.append(request.url)
    )
    report = calculator.run(billable, s3, stop=stop)
    assert report.interrupted
    assert asked == []
    assert all(c.outcome.value == "failed" for c in report.customers), report.customers
    assert figures(conn) == []
