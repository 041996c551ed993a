"""`run --source inventory` end to end: reports of moto's buckets, a real PostgreSQL, the
same figures as a listing of the same objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from storage_calc import calculator
from storage_calc.config import Settings, parse_destination
from storage_calc.errors import ConfigError, InventoryError
from storage_calc.model import AssetKey, RunReport, Scope, Shard
from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE, THUMBS
from tests.inventories import INVENTORY, report_of_bucket

Conn = psycopg.Connection[Any]
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def objects(
    register: Callable[..., None], put: Callable[..., None], inventory_s3: S3Client
) -> None:
    """Customer 2 with a prefix collision, awkward ids, an asset of adjuncts, orphans of several
    keys, unattributed keys; customer 3 on S3 only; keys outside every customer."""
    register("2/5/foo", "2/5/foo-2", "2/5/foo bar", "2/5/a+b", "2/5/é", "2/6/bar", "2/6/empty")
    put(
        STORAGE,
        {
            "2/5/foo": 100,
            "2/5/foo/original": 1000,
            "2/5/foo/adjuncts/transcript.vtt": 40,
            "2/5/foo-2": 200,
            "2/5/foo bar/original": 11,
            "2/5/a+b/original": 12,
            "2/5/é/original": 13,
            "2/5/gone/a": 7,
            "2/5/gone/b": 8,
            "2/5/lost": 9,
            "2/6/bar/full/max/default.mp3": 300,
            "2/pdf/report.pdf": 50,
            "2/5/": 1,
            "3/1/x/original": 60,
            "readme.txt": 70,
            "transient/2/5/foo": 80,
        },
    )
    put(THUMBS, {"2/5/foo/open/100.jpg": 5, "2/5/foo-2/s.json": 2, "2/6/bar/low.jpg": 3})


def inventory_settings(settings: Settings, s3: S3Client, file_format: str = "CSV") -> Settings:
    """`settings` reading reports of both buckets as they hold now, created an hour ago."""
    return replace(
        settings,
        source="inventory",
        storage_inventory=parse_destination(report_of_bucket(s3, STORAGE, file_format, NOW)),
        thumbs_inventory=parse_destination(report_of_bucket(s3, THUMBS, file_format, NOW)),
    )


def figures(conn: Conn) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every ImageStorage and CustomerStorage row's figures."""
    assets = conn.execute(
        'SELECT "Id", "Size", "ThumbnailSize", "CheckingInProgress" FROM "ImageStorage" '
        'ORDER BY "Id"'
    ).fetchall()
    spaces = conn.execute(
        'SELECT "Customer", "Space", "NumberOfStoredImages", "TotalSizeOfStoredImages", '
        '"TotalSizeOfThumbnails" FROM "CustomerStorage" ORDER BY 1, 2'
    ).fetchall()
    return assets, spaces


def results(report: RunReport) -> list[tuple[Any, ...]]:
    """What each customer's objects added up to, as the run recorded it."""
    return [
        (r.customer, r.outcome, r.objects, r.bytes, r.assets, r.unattributed_objects,
         r.unattributed_bytes, r.orphans)
        for r in report.customers
    ]  # fmt: skip


@pytest.mark.parametrize("file_format", ["CSV", "Parquet", "ORC"])
def test_figures_equal_a_listing_of_the_same_objects(
    objects: None, settings: Settings, inventory_s3: S3Client, conn: Conn, file_format: str
) -> None:
    listed = calculator.run(settings, inventory_s3)
    listed_figures = figures(conn)
    read = calculator.run(inventory_settings(settings, inventory_s3, file_format), inventory_s3)
    assert read.error is None
    assert figures(conn) == listed_figures
    assert results(read) == results(listed)
    assert (read.unattributed_objects, read.unattributed_bytes) == (2, 150)
    assert (listed.unattributed_objects, listed.unattributed_bytes) == (2, 150)


@pytest.mark.parametrize(
    "scope",
    [Scope(customer=2), Scope(customer=2, space=5), Scope(asset=AssetKey(2, 5, "foo"))],
    ids=str,
)
def test_scopes_add_up_as_a_listing_does(
    objects: None, settings: Settings, inventory_s3: S3Client, conn: Conn, scope: Scope
) -> None:
    listed = calculator.run(settings, inventory_s3, scope)
    listed_figures = figures(conn)
    read = calculator.run(inventory_settings(settings, inventory_s3), inventory_s3, scope)
    assert figures(conn) == listed_figures
    assert results(read) == results(listed)


def test_shards_compute_every_asset_once(
    objects: None, settings: Settings, inventory_s3: S3Client, conn: Conn
) -> None:
    calculator.run(settings, inventory_s3)
    listed_figures = figures(conn)
    conn.execute('DELETE FROM "ImageStorage"')
    conn.execute('DELETE FROM "CustomerStorage"')
    inventory = inventory_settings(settings, inventory_s3)
    computed = [
        (r.customer, r.assets)
        for index in range(2)
        for r in calculator.run(inventory, inventory_s3, shard=Shard(index, 2)).customers
    ]
    assert sum(assets for _, assets in computed) == 7
    assert figures(conn) == listed_figures


def test_last_checked_is_the_reports_creation_time(
    objects: None, settings: Settings, inventory_s3: S3Client, conn: Conn
) -> None:
    calculator.run(inventory_settings(settings, inventory_s3), inventory_s3)
    checked = conn.execute('SELECT DISTINCT "LastChecked" FROM "ImageStorage"').fetchall()
    assert checked == [(NOW,)]


def test_a_dry_run_writes_nothing(
    objects: None, settings: Settings, inventory_s3: S3Client, conn: Conn
) -> None:
    report = calculator.run(inventory_settings(settings, inventory_s3), inventory_s3, dry_run=True)
    assert report.changes
    assert figures(conn) == ([], [])


def test_a_stale_report_is_refused_in_one_line_and_nothing_is_written(
    objects: None, inventory_s3: S3Client, invoke: Callable[..., Any], conn: Conn
) -> None:
    created = NOW - timedelta(hours=72)
    storage = report_of_bucket(inventory_s3, STORAGE, created=created)
    thumbs = report_of_bucket(inventory_s3, THUMBS, created=created)
    result = invoke(
        "run", "--source", "inventory", "--storage-inventory", storage,
        "--thumbs-inventory", thumbs,
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.output.startswith("Error: the newest inventory report of 'dlcs-storage'")
    assert "ago, more than the 48.0 hours allowed" in result.output
    assert result.output.count("\n") == 1
    assert figures(conn) == ([], [])
    assert conn.execute("SELECT count(*) FROM storage_calc.runs").fetchone() == (0,)


def test_a_report_of_another_bucket_is_refused_before_anything_is_written(
    objects: None, settings: Settings, inventory_s3: S3Client, conn: Conn
) -> None:
    foreign = replace(
        inventory_settings(settings, inventory_s3),
        thumbs_inventory=parse_destination(f"s3://{INVENTORY}/reports/{STORAGE}/nightly/"),
    )
    with pytest.raises(InventoryError, match=r"is of bucket 'dlcs-storage', not 'dlcs-thumbs'$"):
        calculator.run(foreign, inventory_s3)
    assert figures(conn) == ([], [])


def test_a_missing_destination_is_a_config_error_naming_its_option(
    settings: Settings, inventory_s3: S3Client
) -> None:
    missing = replace(inventory_settings(settings, inventory_s3), thumbs_inventory=None)
    with pytest.raises(ConfigError, match=r"^--source inventory needs --thumbs-inventory: the S3"):
        calculator.run(missing, inventory_s3)
