"""The platform's three layouts (LAYOUTS.md): read from the catalog, written as the platform
writes them, rendered as its API renders them, and never altered by `db migrate`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from storage_calc import calculator, db
from storage_calc.api import create_app
from storage_calc.cli import cli
from storage_calc.config import Settings, parse_destination
from storage_calc.keys import parse_asset_id
from storage_calc.model import Layout, Scope
from storage_calc.sources.listing import S3Client
from tests.conftest import INVENTORY, STORAGE, THUMBS
from tests.inventories import report_of_bucket

RECENT = datetime.now(UTC) - timedelta(hours=1)

Conn = psycopg.Connection[Any]
Invoke = Callable[..., Result]

LAYOUTS = {
    "seed": Layout(),
    "seed with adjuncts": Layout(asset_adjuncts=True),
    "current": Layout(customer_row_at_null=True, asset_adjuncts=True, space_adjuncts=True),
}

OBJECTS = {
    STORAGE: {
        "2/5/a": 100,
        "2/5/a/original": 1000,
        "2/5/a/adjuncts/alto.xml": 30,
        "2/5/b": 200,
        "2/0/stub/adjuncts/annotations.json": 40,
        "2/0/gone/original": 9,
    },
    THUMBS: {"2/5/a/open/100.jpg": 5, "2/0/stub/open/100.jpg": 4},
}


@pytest.fixture
def layout(layout_url: str) -> Layout:
    with db.connect(layout_url) as conn:
        return db.detect_layout(conn)


@pytest.fixture
def conn(layout_url: str) -> Iterator[Conn]:
    with psycopg.connect(layout_url, autocommit=True) as connection:
        yield connection


def has_table(conn: Conn, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{name}"',)).fetchone() == (True,)


def has_column(conn: Conn, table: str, column: str) -> bool:
    found = conn.execute(
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = %s AND column_name = %s",
        (table, column),
    ).fetchone()
    return found == (1,)


def add_adjunct(conn: Conn, adjunct: str, asset: str, origin: str | None, optimised: bool) -> None:
    """An "Adjuncts" row as the platform's API writes it for an adjunct of `asset`."""
    optional = has_column(conn, "Adjuncts", "Optimised")
    conn.execute(
        'INSERT INTO "Adjuncts" ("Id", "AssetId", "MediaType", "IIIFLink", "Type", "Origin"'
        + (', "Optimised"' if optional else "")
        + ") VALUES (%s, %s, 'application/xml', '', 'Text', %s"
        + (", %s" if optional else "")
        + ")",
        (adjunct, asset, origin, optimised) if optional else (adjunct, asset, origin),
    )


@pytest.fixture
def platform(conn: Conn, layout: Layout, s3: S3Client) -> None:
    """Customer 2: assets a (with an adjunct object) and b in space 5; where the layout has a
    stub space, a stub asset in space 0 holding an adjunct. Where "Adjuncts" exists, a has two
    hosted adjuncts (one optimised), b one that is not hosted, the stub asset one."""
    assets = ["2/5/a", "2/5/b"] + (["2/0/stub"] if layout.customer_row_at_null else [])
    db.register_assets(conn, assets)
    if has_table(conn, "Adjuncts"):
        add_adjunct(conn, "alto", "2/5/a", "https://origin.example/alto.xml", False)
        add_adjunct(conn, "pdf", "2/5/a", "https://origin.example/a.pdf", True)
        add_adjunct(conn, "draft", "2/5/b", None, False)
        if layout.customer_row_at_null:
            add_adjunct(conn, "annotations", "2/0/stub", "https://origin.example/a.json", False)
    for bucket, objects in OBJECTS.items():
        for key, size in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=b"\0" * size)


def settings(layout_url: str) -> Settings:
    return Settings(database_url=layout_url, workers=4)


def run(layout_url: str, s3: S3Client, **kwargs: Any) -> Any:
    return calculator.run(settings(layout_url), s3, **kwargs)


def customer_storage(conn: Conn) -> dict[int | None, tuple[int, ...]]:
    """Space -> (images, size, thumbnails[, adjuncts, adjunct size]) of customer 2."""
    adjuncts = has_column(conn, "CustomerStorage", "NumberOfStoredAdjuncts")
    rows = conn.execute(
        'SELECT "Space", "NumberOfStoredImages", "TotalSizeOfStoredImages", "TotalSizeOfThumbnails"'
        + (', "NumberOfStoredAdjuncts", "TotalSizeOfStoredAdjuncts"' if adjuncts else "")
        + ' FROM "CustomerStorage" WHERE "Customer" = 2'
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def image_storage(conn: Conn) -> dict[str, tuple[int, ...]]:
    """Id -> (Size, ThumbnailSize[, AdjunctSize])."""
    adjuncts = has_column(conn, "ImageStorage", "AdjunctSize")
    rows = conn.execute(
        'SELECT "Id", "Size", "ThumbnailSize"'
        + (', "AdjunctSize"' if adjuncts else "")
        + ' FROM "ImageStorage"'
    )
    return {row[0]: tuple(row[1:]) for row in rows}


# What a run over customer 2 writes, layout by layout.
EXPECTED_ROWS = {
    "seed": {0: (2, 1330, 5), 5: (2, 1330, 5)},
    "seed with adjuncts": {0: (2, 1300, 5), 5: (2, 1300, 5)},
    "current": {None: (3, 1300, 9, 3, 70), 0: (1, 0, 4, 1, 40), 5: (2, 1300, 5, 2, 30)},
}
EXPECTED_ASSETS = {
    "seed": {"2/5/a": (1130, 5), "2/5/b": (200, 0)},
    "seed with adjuncts": {"2/5/a": (1100, 5, 30), "2/5/b": (200, 0, 0)},
    "current": {"2/5/a": (1100, 5, 30), "2/5/b": (200, 0, 0), "2/0/stub": (0, 4, 40)},
}


def test_the_layout_is_read_from_the_catalog(
    request: pytest.FixtureRequest, layout: Layout
) -> None:
    # The layout the database was built with, not the name of the one detected.
    assert layout == LAYOUTS[request.node.callspec.params["layout_url"]]


def test_a_run_writes_each_layout_as_the_platform_does(
    platform: None, layout: Layout, layout_url: str, s3: S3Client, conn: Conn
) -> None:
    report = run(layout_url, s3)
    assert report.outcome == "done"
    assert customer_storage(conn) == EXPECTED_ROWS[layout.name]
    assert image_storage(conn) == EXPECTED_ASSETS[layout.name]


def test_a_rerun_on_unchanged_objects_changes_no_figure(
    platform: None, layout_url: str, s3: S3Client, conn: Conn
) -> None:
    run(layout_url, s3)
    first = (customer_storage(conn), image_storage(conn))
    report = run(layout_url, s3)
    assert (customer_storage(conn), image_storage(conn)) == first
    assert report.changes == ()


def test_the_customer_row_is_the_sum_of_every_space_row(
    platform: None, layout: Layout, layout_url: str, s3: S3Client, conn: Conn
) -> None:
    run(layout_url, s3)
    rows = customer_storage(conn)
    customer = rows.pop(layout.customer_space)
    assert customer == tuple(sum(column) for column in zip(*rows.values(), strict=True))


def test_the_stub_space_counts_where_the_layout_has_one_and_is_unattributed_elsewhere(
    platform: None, layout: Layout, layout_url: str, s3: S3Client
) -> None:
    report = run(layout_url, s3)
    (result,) = report.customers
    if layout.customer_row_at_null:
        assert [(o.space, o.objects, o.bytes) for o in result.orphans] == [(0, 1, 9)]
        assert result.unattributed_objects == 0
    else:
        assert result.orphans == ()
        assert result.unattributed_objects == 3


@pytest.mark.parametrize("layout_url", ["current"], indirect=True)
def test_new_rows_get_the_default_policy_and_the_database_their_id(
    platform: None, layout_url: str, s3: S3Client, conn: Conn
) -> None:
    conn.execute(
        'INSERT INTO "CustomerStorage" ("Customer", "Space", "StoragePolicy",'
        ' "NumberOfStoredImages", "TotalSizeOfStoredImages", "TotalSizeOfThumbnails")'
        " VALUES (2, NULL, 'gold', 0, 0, 0)"
    )
    run(layout_url, s3)
    rows = conn.execute(
        'SELECT "Space", "StoragePolicy", "Id" FROM "CustomerStorage" ORDER BY "Space" NULLS FIRST'
    ).fetchall()
    assert [(space, policy) for space, policy, _ in rows] == [
        (None, "gold"),
        (0, "default"),
        (5, "default"),
    ]
    assert len({row_id for _, _, row_id in rows}) == 3


@pytest.mark.parametrize("layout_url", ["current"], indirect=True)
def test_a_run_of_the_stub_space_refreshes_it_and_the_customer_row(
    platform: None, layout_url: str, s3: S3Client, conn: Conn
) -> None:
    report = run(layout_url, s3, scope=Scope(customer=2, space=0))
    assert report.outcome == "done"
    assert customer_storage(conn) == {None: (1, 0, 4, 1, 40), 0: (1, 0, 4, 1, 40)}


@pytest.mark.parametrize("layout_url", ["current"], indirect=True)
def test_an_asset_run_keeps_the_adjunct_totals_exact(
    platform: None, layout_url: str, s3: S3Client, conn: Conn
) -> None:
    run(layout_url, s3)
    s3.put_object(Bucket=STORAGE, Key="2/5/a/adjuncts/alto.xml", Body=b"\0" * 50)
    add_adjunct(conn, "ocr", "2/5/a", "https://origin.example/ocr.txt", False)
    db.register_assets(conn, ["2/0/stub-2"])
    s3.put_object(Bucket=STORAGE, Key="2/0/stub-2/adjuncts/x.json", Body=b"\0" * 6)
    for asset in ("2/5/a", "2/0/stub-2"):
        asset_run = run(layout_url, s3, scope=Scope(asset=parse_asset_id(asset)))
        assert asset_run.outcome == "done"
    by_asset = customer_storage(conn)
    run(layout_url, s3)
    assert customer_storage(conn) == by_asset
    assert by_asset[5] == (2, 1300, 5, 3, 50)
    assert by_asset[None] == (4, 1300, 9, 4, 96)


@pytest.fixture
def invoke(layout_url: str, s3: S3Client, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """The CLI in-process against the layout's database and moto S3."""
    monkeypatch.setenv("STORAGE_CALC_DATABASE_URL", layout_url)
    monkeypatch.setattr("storage_calc.cli.compute.make_s3_client", lambda workers: s3)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args))

    return invoke


@pytest.mark.parametrize("layout_url", ["seed", "seed with adjuncts"], indirect=True)
@pytest.mark.parametrize(
    "args", [("--customer", "2", "--space", "0"), ("--asset", "2/0/stub")], ids=["space", "asset"]
)
def test_space_zero_is_refused_where_it_is_the_customer_row(
    platform: None, layout: Layout, invoke: Invoke, conn: Conn, args: tuple[str, ...]
) -> None:
    result = invoke("run", *args)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: space 0 is the customer-level row in this database's layout ({layout.name}),"
        " not a space that holds assets\n"
    )
    assert conn.execute("SELECT count(*) FROM storage_calc.runs").fetchone() == (0,)


@pytest.mark.parametrize("layout_url", ["current"], indirect=True)
def test_an_asset_of_the_stub_space_is_computed_and_shown(platform: None, invoke: Invoke) -> None:
    assert invoke("run", "--asset", "2/0/stub").exit_code == 0
    shown = json.loads(invoke("show", "asset", "2/0/stub").stdout)
    assert shown["@id"] == "https://api.dlcs.example/customers/2/spaces/0/images/stub/storage"
    assert list(shown)[3:6] == ["thumbnailSize", "size", "adjunctSize"]
    assert (shown["size"], shown["adjunctSize"], shown["thumbnailSize"]) == (0, 40, 4)


def test_dry_run_names_the_customer_row_as_the_layout_stores_it(
    platform: None, layout: Layout, invoke: Invoke
) -> None:
    result = invoke("run", "--customer", "2", "--dry-run")
    assert result.exit_code == 0, result.stderr
    changes = [json.loads(line) for line in result.stdout.splitlines()]
    customer = next(c for c in changes if c["space"] == layout.customer_space)
    after = {
        "seed": {
            "numberOfStoredImages": 2,
            "totalSizeOfStoredImages": 1330,
            "totalSizeOfThumbnails": 5,
        },
        "seed with adjuncts": {
            "numberOfStoredImages": 2,
            "totalSizeOfStoredImages": 1300,
            "totalSizeOfThumbnails": 5,
        },
        "current": {
            "numberOfStoredImages": 3,
            "totalSizeOfStoredImages": 1300,
            "totalSizeOfThumbnails": 9,
            "numberOfStoredAdjuncts": 3,
            "totalSizeOfStoredAdjuncts": 70,
        },
    }[layout.name]
    assert customer["after"] == after == customer["delta"]
    assert len(changes) == len(EXPECTED_ROWS[layout.name])


def test_show_gives_the_customer_row_the_id_of_the_layouts_api(
    platform: None, layout: Layout, invoke: Invoke
) -> None:
    invoke("run")
    shown = json.loads(invoke("show", "customer", "2").stdout)
    path = "/spaces/0" if layout.customer_space == 0 else ""
    assert shown["@id"] == f"https://api.dlcs.example/customers/2{path}/storage"
    assert shown["numberOfStoredImages"] == EXPECTED_ROWS[layout.name][layout.customer_space][0]
    keys = ["numberOfStoredImages", "totalSizeOfStoredImages", "totalSizeOfThumbnails"]
    if layout.space_adjuncts:
        keys += ["numberOfStoredAdjuncts", "totalSizeOfStoredAdjuncts"]
    assert list(shown) == ["@context", "@id", "@type", *keys, "lastCalculated", "storagePolicy"]


def test_show_space_zero_is_the_stub_space_or_the_customer_row(
    platform: None, layout: Layout, invoke: Invoke
) -> None:
    invoke("run")
    shown = json.loads(invoke("show", "customer", "2", "--space", "0").stdout)
    assert shown["@id"] == "https://api.dlcs.example/customers/2/spaces/0/storage"
    expected = EXPECTED_ROWS[layout.name][0]
    assert shown["numberOfStoredImages"] == expected[0]
    assert shown["totalSizeOfThumbnails"] == expected[2]


def test_show_asset_carries_the_adjunct_size_where_the_layout_has_it(
    platform: None, layout: Layout, invoke: Invoke
) -> None:
    invoke("run")
    shown = json.loads(invoke("show", "asset", "2/5/a").stdout)
    size_keys = ["thumbnailSize", "size"] + (["adjunctSize"] if layout.asset_adjuncts else [])
    assert list(shown) == [
        "@context", "@id", "@type", *size_keys, "lastChecked", "checkingInProgress",
    ]  # fmt: skip
    assert shown.get("adjunctSize") == (30 if layout.asset_adjuncts else None)


def test_serve_answers_what_show_prints_in_each_layout(
    platform: None, layout: Layout, layout_url: str, invoke: Invoke
) -> None:
    invoke("run")
    with TestClient(create_app(layout_url, "https://api.dlcs.example", None)) as client:
        for path, args in [
            ("/customers/2/storage", ("customer", "2")),
            ("/customers/2/spaces/0/storage", ("customer", "2", "--space", "0")),
            ("/customers/2/spaces/5/images/a/storage", ("asset", "2/5/a")),
        ]:
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert answer.json() == json.loads(invoke("show", *args).stdout), path


def test_reports_read_the_customer_row_where_the_layout_keeps_it(
    platform: None, layout: Layout, invoke: Invoke
) -> None:
    invoke("run")
    usage = json.loads(invoke("report", "usage", "--json").stdout)
    assert [(c["customer"], c["images"]) for c in usage["customers"]] == [
        (2, EXPECTED_ROWS[layout.name][layout.customer_space][0])
    ]
    spaces = {s["space"] for s in usage["spaces"]}
    assert spaces == {s for s in EXPECTED_ROWS[layout.name] if s != layout.customer_space}
    drift = json.loads(invoke("report", "drift", "--json").stdout)
    assert [(d["customer"], d["space"]) for d in drift] == [(2, None)]


PLATFORM_CATALOG = """
SELECT c.relname, c.relkind::text, coalesce(c.reloptions::text, ''),
       coalesce(pg_get_indexdef(i.indexrelid), ''),
       (SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), '; ' ORDER BY conname)
        FROM pg_constraint WHERE conrelid = c.oid),
       (SELECT string_agg(tgname, '; ' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = c.oid),
       (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' '
                          || attnotnull::text, ', ' ORDER BY attnum)
        FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped)
FROM pg_class c
LEFT JOIN pg_index i ON i.indexrelid = c.oid
WHERE c.relnamespace = 'public'::regnamespace
ORDER BY 1
"""


def test_migrate_alters_no_platform_table_and_rewrites_no_platform_row(
    platform: None, layout_url: str, s3: S3Client, conn: Conn
) -> None:
    run(layout_url, s3)
    catalog = conn.execute(PLATFORM_CATALOG).fetchall()
    rows = [conn.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall() for t in db.PLATFORM_TABLES]
    migrated = db.migrate(conn)
    assert migrated == db.Migrated(None, ())
    assert conn.execute(PLATFORM_CATALOG).fetchall() == catalog
    assert [
        conn.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall() for t in db.PLATFORM_TABLES
    ] == rows


@pytest.mark.parametrize("layout_url", ["seed"], indirect=True)
def test_a_customer_storage_without_a_unique_key_is_refused_before_anything_is_written(
    platform: None, invoke: Invoke, conn: Conn
) -> None:
    conn.execute('ALTER TABLE "CustomerStorage" DROP CONSTRAINT "PK_CustomerStorage"')
    result = invoke("run")
    assert result.exit_code == 2
    assert result.stderr == (
        'Error: "CustomerStorage"."Space" is NOT NULL, which needs a unique key on '
        '("Customer", "Space"); found no unique key\n'
    )
    assert conn.execute('SELECT count(*) FROM "ImageStorage"').fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM storage_calc.runs").fetchone() == (0,)


@pytest.mark.parametrize("layout_url", ["current"], indirect=True)
def test_a_nullable_space_without_the_partial_indexes_is_refused(
    invoke: Invoke, conn: Conn
) -> None:
    conn.execute('DROP INDEX "IX_CustomerStorage_Customer_Aggregate"')
    result = invoke("run")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        'Error: "CustomerStorage"."Space" is nullable, which needs unique keys on ("Customer")'
        ' WHERE ("Space" IS NULL) and on ("Customer", "Space") WHERE ("Space" IS NOT NULL);'
        ' found IX_CustomerStorage_Customer_Space ("Customer", "Space") WHERE'
    )


@pytest.mark.parametrize("layout_url", ["current"], indirect=True)
def test_db_status_prints_the_layout_the_schema_version_and_what_migrate_would_do(
    invoke: Invoke,
) -> None:
    result = invoke("db", "status")
    assert result.exit_code == 0, result.stderr
    latest = db.migrations()[-1].version
    assert result.stdout.splitlines() == [
        'platform tables: "CustomerStorage", "ImageStorage", "Images", "StoragePolicies"',
        "layout: current",
        '  customer-level row: "Space" IS NULL',
        "  space 0: the stub space, computed like any other",
        '  "ImageStorage"."AdjunctSize": adjunct bytes, apart from Size',
        '  "CustomerStorage" adjunct totals: counted from hosted "Adjuncts" rows',
        f"storage_calc schema: version {latest} of {latest}",
        "db migrate would: nothing, it is up to date",
    ]


def test_an_inventory_gives_the_figures_of_a_listing_in_every_layout(
    platform: None, layout_url: str, s3: S3Client, conn: Conn
) -> None:
    s3.create_bucket(Bucket=INVENTORY)
    listed = run(layout_url, s3)
    listed_figures = image_storage(conn), customer_storage(conn)
    inventory = replace(
        settings(layout_url),
        source="inventory",
        storage_inventory=parse_destination(report_of_bucket(s3, STORAGE, "Parquet", RECENT)),
        thumbs_inventory=parse_destination(report_of_bucket(s3, THUMBS, "Parquet", RECENT)),
    )
    read = calculator.run(inventory, s3)
    assert (image_storage(conn), customer_storage(conn)) == listed_figures
    assert [(r.objects, r.bytes, r.orphans) for r in read.customers] == [
        (r.objects, r.bytes, r.orphans) for r in listed.customers
    ]


def test_each_space_is_stepped_with_its_adjunct_bytes_where_the_layout_has_them(
    platform: None, layout: Layout, layout_url: str, s3: S3Client, conn: Conn
) -> None:
    run(layout_url, s3)
    run(layout_url, s3)
    steps = conn.execute(
        "SELECT s.space, f.images, f.artefact_bytes, f.thumbnail_bytes, f.adjunct_bytes"
        " FROM storage_calc.space_figures f JOIN storage_calc.figure_spaces s ON s.id = f.space_id"
        " WHERE s.customer = 2 ORDER BY s.space"
    ).fetchall()
    rows = customer_storage(conn)
    del rows[layout.customer_space]
    assert steps == [
        (space, *figures[:3], figures[4] if layout.space_adjuncts else None)
        for space, figures in sorted(rows.items())
    ]
    assert conn.execute("SELECT count(*) FROM storage_calc.figure_commits").fetchone() == (2,)
