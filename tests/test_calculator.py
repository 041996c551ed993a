"""The calculator end to end: moto S3, a real PostgreSQL, the figures of CONTRACT §3."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from storage_calc import calculator, db
from storage_calc.config import Settings
from storage_calc.model import AssetKey, Figures, Outcome, Scope, ScopeChange, Shard, SpaceOrphans
from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE, THUMBS, settings_with_prefixes

Conn = psycopg.Connection[Any]


def image_storage(conn: Conn) -> dict[str, tuple[int, int, bool]]:
    """Id -> (Size, ThumbnailSize, CheckingInProgress)."""
    rows = conn.execute(
        'SELECT "Id", "Size", "ThumbnailSize", "CheckingInProgress" FROM "ImageStorage"'
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def customer_storage(conn: Conn) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(Customer, Space) -> (images, artefact bytes, thumbnail bytes)."""
    rows = conn.execute(
        'SELECT "Customer", "Space", "NumberOfStoredImages", "TotalSizeOfStoredImages",'
        ' "TotalSizeOfThumbnails" FROM "CustomerStorage"'
    )
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}


def run(settings: Settings, s3: S3Client, **kwargs: Any) -> Any:
    return calculator.run(settings, s3, **kwargs)


@pytest.fixture
def layout(register: Callable[..., None], put: Callable[..., None]) -> None:
    """Customer 2: foo and foo-2 in space 5 (a prefix collision), bar in space 6, an empty
    asset, an orphan and an unattributed key."""
    register("2/5/foo", "2/5/foo-2", "2/6/bar", "2/6/empty")
    put(
        STORAGE,
        {
            "2/5/foo": 100,
            "2/5/foo/original": 1000,
            "2/5/foo/info/v3/info.json": 10,
            "2/5/foo-2": 200,
            "2/5/foobar/original": 7,
            "2/6/bar/full/max/default.mp3": 300,
            "2/pdf/report.pdf": 50,
        },
    )
    put(THUMBS, {"2/5/foo/open/100.jpg": 5, "2/5/foo-2/s.json": 2, "2/6/bar/low.jpg": 3})


def test_each_asset_gets_exactly_its_own_bytes(
    layout: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    run(settings, s3)
    assert image_storage(conn) == {
        "2/5/foo": (1110, 5, False),
        "2/5/foo-2": (200, 2, False),
        "2/6/bar": (300, 3, False),
        "2/6/empty": (0, 0, False),
    }


def test_spaces_and_the_customer_are_rolled_up(
    layout: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    run(settings, s3)
    assert customer_storage(conn) == {
        (2, 5): (2, 1310, 7),
        (2, 6): (2, 300, 3),
        (2, 0): (4, 1610, 10),
    }


def test_orphans_and_unattributed_keys_are_reported_not_totalled(
    layout: None, settings: Settings, s3: S3Client
) -> None:
    report = run(settings, s3)
    (result,) = report.customers
    foobar = ("s3://dlcs-storage/2/5/foobar",)
    assert result.orphans == (
        SpaceOrphans(customer=2, space=5, objects=1, bytes=7, assets=1, examples=foobar),
    )
    assert (result.unattributed_objects, result.unattributed_bytes) == (1, 50)
    assert (report.objects, report.bytes, report.assets) == (10, 1677, 4)


def test_timestamps_come_from_the_database(
    layout: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    # The database's clock is set back to 2001 for the job's sessions: a now() of its own,
    # found before pg_catalog's on their search_path. The host's clock shows today.
    clock = datetime(2001, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
    conn.execute("CREATE SCHEMA test_clock")
    conn.execute(
        "CREATE FUNCTION test_clock.now() RETURNS timestamptz LANGUAGE sql"
        f" AS $$ SELECT '{clock.isoformat()}'::timestamptz $$"
    )
    name = conn.info.dbname
    conn.execute(f'ALTER DATABASE "{name}" SET search_path = test_clock, pg_catalog, public')
    run(settings, s3)
    checked = conn.execute('SELECT DISTINCT "LastChecked" FROM "ImageStorage"').fetchall()
    calculated = conn.execute('SELECT DISTINCT "LastCalculated" FROM "CustomerStorage"')
    finished = conn.execute("SELECT finished FROM storage_calc.runs").fetchall()
    assert checked == calculated.fetchall() == finished == [(clock,)]


def test_a_second_run_gives_identical_figures(
    layout: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    run(settings, s3)
    first = (image_storage(conn), customer_storage(conn))
    report = run(settings, s3)
    assert (image_storage(conn), customer_storage(conn)) == first
    assert report.changes == ()


def test_a_run_reports_what_it_changed(
    layout: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    report = run(settings, s3)
    assert report.changes[0] == ScopeChange(
        2, 0, Figures(), Figures(4, 1610, 10), customer_row=True
    )
    assert {(c.customer, c.space) for c in report.changes} == {(2, 0), (2, 5), (2, 6)}


def test_a_dry_run_writes_nothing_and_reports_the_changes(
    layout: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    report = run(settings, s3, dry_run=True)
    assert image_storage(conn) == {}
    assert customer_storage(conn) == {}
    assert conn.execute("SELECT count(*) FROM storage_calc.runs").fetchone() == (0,)
    assert report.changes[0] == ScopeChange(
        2, 0, Figures(), Figures(4, 1610, 10), customer_row=True
    )


def test_a_dry_run_leaves_flags_and_timestamps_alone(
    layout: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    run(settings, s3)
    conn.execute('UPDATE "ImageStorage" SET "Size" = 1')
    stamps = conn.execute('SELECT "LastChecked" FROM "ImageStorage" ORDER BY "Id"').fetchall()
    report = run(settings, s3, dry_run=True)
    assert (
        conn.execute('SELECT "LastChecked" FROM "ImageStorage" ORDER BY "Id"').fetchall() == stamps
    )
    assert set(image_storage(conn).values()) <= {
        (1, 5, False),
        (1, 2, False),
        (1, 3, False),
        (1, 0, False),
    }
    assert report.changes == ()


def test_a_registered_asset_with_no_objects_counts(
    register: Callable[..., None], settings: Settings, s3: S3Client, conn: Conn
) -> None:
    register("3/1/nothing")
    run(settings, s3)
    assert image_storage(conn) == {"3/1/nothing": (0, 0, False)}
    assert customer_storage(conn) == {(3, 1): (1, 0, 0), (3, 0): (1, 0, 0)}


def test_an_asset_with_more_than_a_page_of_objects(
    register: Callable[..., None],
    put: Callable[..., None],
    settings: Settings,
    s3: S3Client,
    conn: Conn,
) -> None:
    register("2/5/big")
    put(STORAGE, {f"2/5/big/tile/{n:04d}": 2 for n in range(1500)})
    run(settings, s3)
    assert image_storage(conn) == {"2/5/big": (3000, 0, False)}


def test_locations_with_a_prefix(
    register: Callable[..., None],
    put: Callable[..., None],
    database_url: str,
    s3: S3Client,
    conn: Conn,
) -> None:
    register("2/5/foo")
    put(STORAGE, {"shared/dlcs/2/5/foo": 10, "shared/other/2/5/foo": 99, "2/5/foo": 99})
    put(THUMBS, {"thumbs/2/5/foo/open/100.jpg": 4})
    settings = settings_with_prefixes(database_url, f"{STORAGE}/shared/dlcs/", f"{THUMBS}/thumbs")
    run(settings, s3)
    assert image_storage(conn) == {"2/5/foo": (10, 4, False)}


def test_an_emptied_space_is_zeroed_and_unregistered_assets_lose_their_rows(
    layout: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    run(settings, s3)
    conn.execute('DELETE FROM "Images" WHERE "Space" = 6')
    run(settings, s3)
    assert set(image_storage(conn)) == {"2/5/foo", "2/5/foo-2"}
    assert customer_storage(conn)[(2, 6)] == (0, 0, 0)
    assert customer_storage(conn)[(2, 0)] == (2, 1310, 7)


def test_a_customer_whose_assets_are_all_gone_is_zeroed(
    layout: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    run(settings, s3)
    conn.execute('DELETE FROM "Images"')
    run(settings, s3)
    assert image_storage(conn) == {}
    assert customer_storage(conn) == {(2, 0): (0, 0, 0), (2, 5): (0, 0, 0), (2, 6): (0, 0, 0)}


def test_a_storage_policy_set_by_an_operator_is_kept(
    layout: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    conn.execute("INSERT INTO \"StoragePolicies\" VALUES ('gold', 1, 1)")
    conn.execute(
        'INSERT INTO "CustomerStorage" ("Customer", "Space", "StoragePolicy",'
        ' "NumberOfStoredImages", "TotalSizeOfStoredImages", "TotalSizeOfThumbnails")'
        " VALUES (2, 0, 'gold', 0, 0, 0)"
    )
    run(settings, s3)
    policies = dict(
        conn.execute('SELECT "Space", "StoragePolicy" FROM "CustomerStorage"').fetchall()
    )
    assert policies == {0: "gold", 5: "default", 6: "default"}


def test_a_customer_only_on_s3_gets_no_rows(
    put: Callable[..., None], settings: Settings, s3: S3Client, conn: Conn
) -> None:
    put(STORAGE, {"9/1/unknown": 5})
    report = run(settings, s3)
    assert customer_storage(conn) == {}
    assert report.orphan_bytes == 5


def test_keys_outside_every_customer_are_counted_in_a_full_run(
    put: Callable[..., None], settings: Settings, s3: S3Client
) -> None:
    put(STORAGE, {"transient/2/5/foo": 5, "readme.txt": 6, "2/pdf/x": 7})
    report = run(settings, s3)
    assert report.unattributed == 3
    assert report.bytes == 18


def test_a_space_run_computes_only_that_space(
    layout: None, settings: Settings, s3: S3Client, conn: Conn, put: Callable[..., None]
) -> None:
    run(settings, s3)
    put(STORAGE, {"2/5/foo/extra": 1, "2/6/bar/extra": 1})
    run(settings, s3, scope=Scope(customer=2, space=5))
    rows = customer_storage(conn)
    assert rows[(2, 5)] == (2, 1311, 7)
    assert rows[(2, 6)] == (2, 300, 3)
    assert rows[(2, 0)] == (4, 1611, 10)


def test_an_asset_run_lists_only_that_asset(
    layout: None, settings: Settings, s3: S3Client, conn: Conn, put: Callable[..., None]
) -> None:
    run(settings, s3)
    put(STORAGE, {"2/5/foo/extra": 1, "2/5/foo-2/extra": 1})
    listed: list[tuple[str, str]] = []
    s3.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2",
        lambda params, **_: listed.append((params["Bucket"], params["Prefix"])),
    )
    report = run(settings, s3, scope=Scope(asset=AssetKey(2, 5, "foo")))
    assert image_storage(conn)["2/5/foo"] == (1111, 5, False)
    assert image_storage(conn)["2/5/foo-2"] == (200, 2, False)
    assert customer_storage(conn)[(2, 5)] == (2, 1311, 7)
    assert customer_storage(conn)[(2, 0)] == (4, 1611, 10)
    assert sorted(listed) == [
        (STORAGE, "2/5/foo"),
        (STORAGE, "2/5/foo/"),
        (THUMBS, "2/5/foo"),
        (THUMBS, "2/5/foo/"),
    ]
    assert report.customers[0].orphans == ()


def test_an_unregistered_asset_run_fails_for_that_asset(settings: Settings, s3: S3Client) -> None:
    report = run(settings, s3, scope=Scope(asset=AssetKey(2, 5, "nope")))
    assert report.customers[0].outcome is Outcome.FAILED
    assert report.customers[0].error == 'asset 2/5/nope is not registered in "Images"'


def test_shards_together_compute_every_asset_once(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register("1/1/a", "2/1/a", "3/1/a", "4/1/a")
    put(STORAGE, {"1/1/a": 1, "2/1/a": 2, "3/1/a": 3, "4/1/a": 4})
    first = run(settings, s3, shard=Shard(0, 2))
    second = run(settings, s3, shard=Shard(1, 2))
    assert sum(c.assets for c in first.customers) == 2
    assert sum(c.assets for c in second.customers) == 2
    assert first.bytes + second.bytes == 10
    assert {a: f[0] for a, f in image_storage(conn).items()} == {
        "1/1/a": 1, "2/1/a": 2, "3/1/a": 3, "4/1/a": 4
    }  # fmt: skip


def test_shards_that_split_a_customer_leave_its_row_the_sum_of_its_spaces(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register(*[f"2/{space}/a{n}" for space in (1, 2) for n in range(3)], "2/3/b")
    put(STORAGE, {"2/1/a0": 1, "2/2/a0": 10, "2/3/b": 100, "2/4/orphan": 1000})
    first = run(settings, s3, shard=Shard(0, 2))
    rows = customer_storage(conn)
    assert rows[(2, 0)] == tuple(map(sum, zip(*(f for k, f in rows.items() if k[1]), strict=True)))
    second = run(settings, s3, shard=Shard(1, 2))
    assert {c.customer for c in first.customers} == {c.customer for c in second.customers} == {2}
    assert customer_storage(conn) == {
        (2, 0): (7, 111, 0), (2, 1): (3, 1, 0), (2, 2): (3, 10, 0), (2, 3): (1, 100, 0)
    }  # fmt: skip
    assert first.orphan_bytes + second.orphan_bytes == 1000


def advisory_locks(database_url: str, customer: int) -> list[tuple[str, str, bool]]:
    """The advisory locks on `customer`, held or awaited: (which lock, mode, granted)."""
    names = {db.LOCK_NAMESPACE: "customer", db.COMMIT_LOCK_NAMESPACE: "commit"}
    with psycopg.connect(database_url, autocommit=True) as watcher:
        rows = watcher.execute(
            "SELECT classid::bigint, mode, granted FROM pg_locks WHERE locktype = 'advisory'"
            " AND classid::bigint = ANY(%s) AND objid::bigint = %s ORDER BY 1, 2, 3",
            (list(names), customer),
        ).fetchall()
    return [(names[namespace], mode, granted) for namespace, mode, granted in rows]


def test_shards_of_one_customer_compute_it_at_once_and_commit_one_after_the_other(
    register: Callable[..., None],
    put: Callable[..., None],
    settings: Settings,
    s3: S3Client,
    conn: Conn,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register(*[f"2/{space}/a{n}" for space in (1, 2) for n in range(3)], "2/3/b")
    put(STORAGE, {"2/1/a0": 1, "2/2/a0": 10, "2/3/b": 100})
    steps: list[tuple[int, str]] = []  # (backend of the write, step), in the order they happen
    during_first_write: list[tuple[str, str, bool]] = []
    execute, step_figures = db.figures.execute, db.figures.step_figures

    def first_write_waits_for_the_second(
        connection: Conn, name: str, *args: Any, **kwargs: Any
    ) -> Any:
        cursor = execute(connection, name, *args, **kwargs)
        if name == "write_settings":  # the statement after the commit lock
            steps.append((connection.info.backend_pid, "writing"))
            if len(steps) == 1:
                # Inside the first write, until the second write waits for the commit lock.
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    during_first_write[:] = advisory_locks(database_url, 2)
                    if ("commit", "ExclusiveLock", False) in during_first_write:
                        break
                    time.sleep(0.02)
        return cursor

    def last_step_of_the_write(connection: Conn, *args: Any, **kwargs: Any) -> None:
        # The write's last statements, before its commit: recorded after the commit, this step
        # could come after the next write's first, which the commit lets in.
        step_figures(connection, *args, **kwargs)
        steps.append((connection.info.backend_pid, "stepped"))

    monkeypatch.setattr(db.figures, "execute", first_write_waits_for_the_second)
    monkeypatch.setattr(db.figures, "step_figures", last_step_of_the_write)
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda i: run(settings, s3, shard=Shard(i, 2)), (0, 1)))
    assert [c.outcome for r in reports for c in r.customers] == [Outcome.DONE, Outcome.DONE]
    # While the first shard wrote, both shards held the customer (in shared mode) and the
    # second's write waited for the commit lock the first held.
    assert during_first_write == [
        ("customer", "ShareLock", True),
        ("customer", "ShareLock", True),
        ("commit", "ExclusiveLock", False),
        ("commit", "ExclusiveLock", True),
    ]
    first, second = steps[0][0], steps[2][0]
    assert first != second
    assert steps == [
        (first, "writing"),
        (first, "stepped"),
        (second, "writing"),
        (second, "stepped"),
    ]
    assert customer_storage(conn)[(2, 0)] == (7, 111, 0)


def test_a_run_of_a_whole_customer_skips_it_while_a_shard_computes_part_of_it(
    register: Callable[..., None], settings: Settings, s3: S3Client, database_url: str
) -> None:
    register("2/1/a")
    with psycopg.connect(database_url, autocommit=True) as shard:
        assert db.try_lock_customer(shard, 2, shared=True)
        report = run(settings, s3, scope=Scope(customer=2))
    assert report.customers[0].outcome is Outcome.LOCKED


def test_checking_in_progress_is_visible_while_the_customer_is_computed(
    layout: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    run(settings, s3)
    seen: list[set[bool]] = []
    s3.meta.events.register(
        "before-call.s3.ListObjectsV2",
        lambda **_: seen.append({row[2] for row in image_storage(conn).values()}),
    )
    run(settings, s3, scope=Scope(customer=2))
    assert seen and all(flags == {True} for flags in seen)
    assert {row[2] for row in image_storage(conn).values()} == {False}


def test_a_failure_mid_customer_keeps_previous_figures_and_clears_flags(
    layout: None,
    settings: Settings,
    s3: S3Client,
    conn: Conn,
    put: Callable[..., None],
    fail_listing: Callable[..., None],
) -> None:
    run(settings, s3)
    before = (image_storage(conn), customer_storage(conn))
    put(STORAGE, {"2/5/foo/more": 1000})
    fail_listing("prefix=2%2F6%2F")
    report = run(settings, s3)
    assert report.customers[0].outcome is Outcome.FAILED
    assert "access denied listing s3://dlcs-storage/2/6/" in report.customers[0].error
    assert (image_storage(conn), customer_storage(conn)) == before


def test_a_failed_customer_does_not_stop_the_others(
    register: Callable[..., None],
    put: Callable[..., None],
    settings: Settings,
    s3: S3Client,
    conn: Conn,
    fail_listing: Callable[..., None],
) -> None:
    register("1/1/a", "2/1/a", "3/1/a")
    put(STORAGE, {"1/1/a": 1, "2/1/a": 2, "3/1/a": 3})
    fail_listing("prefix=2%2F")
    report = run(settings, s3)
    assert [(c.customer, c.outcome) for c in report.customers] == [
        (1, Outcome.DONE),
        (2, Outcome.FAILED),
        (3, Outcome.DONE),
    ]
    assert image_storage(conn) == {"1/1/a": (1, 0, False), "3/1/a": (3, 0, False)}


def test_a_missing_bucket_fails_the_run_with_its_name(
    register: Callable[..., None], settings: Settings, s3: S3Client
) -> None:
    s3.delete_bucket(Bucket=THUMBS)
    report = run(settings, s3)
    assert (
        report.error
        == "bucket 'dlcs-thumbs' does not exist (check --storage-bucket / --thumbs-bucket)"
    )


def test_a_run_is_recorded(layout: None, settings: Settings, s3: S3Client, conn: Conn) -> None:
    run(settings, s3)
    runs = conn.execute(
        "SELECT scope, outcome, objects, bytes, assets, orphans, unattributed, finished IS NOT NULL"
        " FROM storage_calc.runs"
    ).fetchall()
    assert runs == [("all", "done", 10, 1677, 4, 1, 1, True)]
    assert conn.execute("SELECT count(*) FROM storage_calc.changes").fetchone() == (3,)
    assert conn.execute(
        "SELECT space, objects, bytes, assets FROM storage_calc.orphans"
    ).fetchall() == [(5, 1, 7, 1)]


def test_asset_ids_that_look_like_sql_round_trip(
    register: Callable[..., None],
    put: Callable[..., None],
    settings: Settings,
    s3: S3Client,
    conn: Conn,
) -> None:
    asset = 'x\'); DROP TABLE "CustomerStorage";--$$\\'
    register(f"2/5/{asset}")
    put(STORAGE, {f"2/5/{asset}": 11})
    run(settings, s3)
    assert image_storage(conn) == {f"2/5/{asset}": (11, 0, False)}
    assert customer_storage(conn)[(2, 0)] == (1, 11, 0)
