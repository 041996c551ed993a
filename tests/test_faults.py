"""Faults and bad input that must not lose or corrupt a figure (moto S3, a real PostgreSQL)."""

from __future__ import annotations

import threading
import time
import tracemalloc
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from storage_calc import calculator, db
from storage_calc.config import Settings
from storage_calc.errors import DatabaseError
from storage_calc.model import LocationKind, Outcome, Spaces
from storage_calc.rollup import Tally
from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE, THUMBS
from tests.databases import write_customer

Conn = psycopg.Connection[Any]


def run(settings: Settings, s3: S3Client, **kwargs: Any) -> Any:
    return calculator.run(settings, s3, **kwargs)


def image_storage(conn: Conn) -> dict[str, tuple[int, int]]:
    rows = conn.execute('SELECT "Id", "Size", "ThumbnailSize" FROM "ImageStorage"')
    return {r[0]: (r[1], r[2]) for r in rows}


def customer_storage(conn: Conn) -> dict[tuple[int, int], tuple[int, int, int]]:
    rows = conn.execute(
        'SELECT "Customer", "Space", "NumberOfStoredImages", "TotalSizeOfStoredImages",'
        ' "TotalSizeOfThumbnails" FROM "CustomerStorage"'
    )
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}


def run_with_its_write_killed(
    settings: Settings, s3: S3Client, conn: Conn, database_url: str, times: int = 1
) -> Any:
    """A run whose write of customer 2 is killed `times` times: its rows are held so the write
    waits on them, then the waiting backend is terminated. Returns the run's report."""
    with psycopg.connect(database_url) as blocker:
        blocker.execute('SELECT * FROM "CustomerStorage" WHERE "Customer" = 2 FOR UPDATE')
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(run(settings, s3)))
        thread.start()
        spared: set[int] = set()
        killed = [wait_and_terminate(conn, spared) for _ in range(times)]
        blocker.rollback()
        thread.join(30)
    assert all(killed), f"the write waited on the held rows {sum(killed)} times, not {times}"
    return result[0]


@pytest.fixture
def grown(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> tuple[Any, Any]:  # fmt: skip
    """Asset 2/5/a computed at 10 bytes, then grown to 15 on S3; its figures as computed."""
    register("2/5/a")
    put(STORAGE, {"2/5/a": 10})
    run(settings, s3)
    put(STORAGE, {"2/5/a/more": 5})
    return image_storage(conn), customer_storage(conn)


def test_a_connection_killed_mid_write_is_computed_again_on_a_new_one(
    grown: tuple[Any, Any], settings: Settings, s3: S3Client, conn: Conn, database_url: str
) -> None:
    report = run_with_its_write_killed(
        replace(settings, reconnect_delays=(0.05,)), s3, conn, database_url
    )
    (customer,) = report.customers
    assert (customer.outcome, report.reconnections) == (Outcome.DONE, 1)
    assert image_storage(conn) == {"2/5/a": (15, 0)}
    assert customer_storage(conn) == {(2, 0): (1, 15, 0), (2, 5): (1, 15, 0)}


def test_a_write_killed_at_every_attempt_fails_the_customer_with_its_figures_kept(
    grown: tuple[Any, Any], settings: Settings, s3: S3Client, conn: Conn, database_url: str
) -> None:
    retrying = replace(settings, reconnect_delays=(0.05, 0.05))
    report = run_with_its_write_killed(retrying, s3, conn, database_url, times=3)
    (customer,) = report.customers
    assert customer.outcome is Outcome.FAILED
    assert "terminating connection due to administrator command" in (customer.error or "")
    assert (image_storage(conn), customer_storage(conn)) == grown
    flags = conn.execute('SELECT DISTINCT "CheckingInProgress" FROM "ImageStorage"').fetchall()
    assert flags == [(False,)]
    assert run(settings, s3).outcome == "done"
    assert image_storage(conn) == {"2/5/a": (15, 0)}


def wait_and_terminate(conn: Conn, spared: set[int] | None = None) -> bool:
    """Terminates the first backend of the job found waiting on a lock, within 20 s; one
    already terminated (in `spared`, which grows by the one terminated) may still show while it
    exits, and is not taken again."""
    spared = set() if spared is None else spared
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'storage-calc' AND wait_event_type = 'Lock'"
            " AND pid <> ALL(%s) LIMIT 1",
            (list(spared),),
        ).fetchone()
        if row is not None and row[1]:
            spared.add(row[0])
            return True
        time.sleep(0.05)
    return False


def test_a_database_that_refuses_is_one_line(server_url: str) -> None:
    url = psycopg.conninfo.make_conninfo(server_url, dbname="no_such_database")
    with pytest.raises(DatabaseError) as raised:
        db.connect(url)
    assert str(raised.value).startswith("cannot connect to the database: ")
    assert "no_such_database" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_statements_and_connections_have_timeouts(database_url: str) -> None:
    with db.connect(database_url) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("15min",)
        assert conn.info.get_parameters()["connect_timeout"] == "10"


@pytest.mark.parametrize(
    "asset",
    [
        "it's", 'say "cheese"', "a;b", "back\\slash", "100%", "%41", "a+b", "a b", "(1)",
        "x" * 490, "🎨", "$$", "'); DROP TABLE \"ImageStorage\";--",
    ],
)  # fmt: skip
def test_awkward_asset_ids_get_exactly_their_bytes(
    asset: str, register: Callable[..., None], put: Callable[..., None], settings: Settings,
    s3: S3Client, conn: Conn,
) -> None:  # fmt: skip
    asset_id = f"2/5/{asset}"
    register(asset_id, "2/5/x")
    put(STORAGE, {asset_id: 3, f"{asset_id}/original": 4, "2/5/x": 1})
    put(THUMBS, {f"{asset_id}/open/100.jpg": 2})
    run(settings, s3)
    assert image_storage(conn) == {asset_id: (7, 2), "2/5/x": (1, 0)}


def test_nfc_and_nfd_ids_are_different_assets(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    register(f"2/5/{nfc}", f"2/5/{nfd}")
    put(STORAGE, {f"2/5/{nfc}": 10, f"2/5/{nfd}": 20})
    run(settings, s3)
    assert image_storage(conn) == {f"2/5/{nfc}": (10, 0), f"2/5/{nfd}": (20, 0)}


def test_keys_with_double_slashes_and_empty_objects(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register("2/5/a")
    put(STORAGE, {"2/5/a//original": 6, "2/5/a/": 0, "2/5//a": 9, "2//5/a": 9, "2/5/a/empty": 0})
    report = run(settings, s3)
    assert image_storage(conn) == {"2/5/a": (6, 0)}
    assert report.unattributed == 2


def test_a_key_with_nul_is_skipped_as_unattributed(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register("2/5/a")
    put(STORAGE, {"2/5/a": 1, "2/5/b\x00c": 5, "2/5/a/x\x00y": 7})
    report = run(settings, s3)
    assert report.outcome == "done"
    assert image_storage(conn) == {"2/5/a": (1, 0)}
    assert report.unattributed == 2 and report.orphan_objects == 0


def delete_images(conn: Conn, condition: str, value: object) -> None:
    """Deletes registered assets from inside a listing (a hook must return None)."""
    conn.execute(f'DELETE FROM "Images" WHERE {condition}', (value,))


def test_an_asset_deleted_between_listing_and_writing_loses_its_row(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register("2/5/a", "2/5/b")
    put(STORAGE, {"2/5/a": 1, "2/5/b": 2})
    run(settings, s3)
    s3.meta.events.register(
        "before-call.s3.ListObjectsV2",
        lambda **_: delete_images(conn, '"Id" = %s', "2/5/b"),
    )
    run(settings, s3)
    assert image_storage(conn) == {"2/5/a": (1, 0)}
    assert customer_storage(conn)[(2, 0)] == (1, 1, 0)


def test_a_customer_deleted_between_listing_and_writing_is_zeroed_not_resurrected(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register("2/5/a")
    put(STORAGE, {"2/5/a": 1})
    run(settings, s3)
    s3.meta.events.register(
        "before-call.s3.ListObjectsV2",
        lambda **_: delete_images(conn, '"Customer" = %s', 2),
    )
    run(settings, s3)
    assert image_storage(conn) == {}
    assert customer_storage(conn) == {(2, 0): (0, 0, 0), (2, 5): (0, 0, 0)}


def test_a_new_customer_deleted_between_listing_and_writing_gets_no_rows(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register("2/5/a")
    put(STORAGE, {"2/5/a": 1})
    s3.meta.events.register(
        "before-call.s3.ListObjectsV2",
        lambda **_: delete_images(conn, '"Customer" = %s', 2),
    )
    run(settings, s3)
    assert image_storage(conn) == {}
    assert customer_storage(conn) == {}


def test_a_space_only_on_s3_is_orphans_and_gets_no_row(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register("2/5/a")
    put(STORAGE, {"2/5/a": 1, "2/9/x": 4, "2/9/y/original": 5})
    report = run(settings, s3)
    assert set(customer_storage(conn)) == {(2, 0), (2, 5)}
    (orphans,) = report.customers[0].orphans
    assert (orphans.space, orphans.objects, orphans.bytes, orphans.assets) == (9, 2, 9, 2)


def test_a_versioned_bucket_counts_current_versions_only(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    s3.put_bucket_versioning(Bucket=STORAGE, VersioningConfiguration={"Status": "Enabled"})
    register("2/5/a")
    put(STORAGE, {"2/5/a": 100, "2/5/a/original": 7, "2/5/a/old": 50})
    put(STORAGE, {"2/5/a": 10})
    s3.delete_object(Bucket=STORAGE, Key="2/5/a/old")
    run(settings, s3)
    assert image_storage(conn) == {"2/5/a": (17, 0)}


def test_sizes_beyond_5_gib_and_totals_beyond_2_to_the_32_stay_exact(
    register: Callable[..., None], conn: Conn, database_url: str
) -> None:
    register("2/5/a", "2/5/b", "2/6/c")
    huge = 5 * 2**30 + 1
    rows = [
        ("2/5/a", 5, huge, 2**33 + 3, 0),
        ("2/5/b", 5, 2**40, 1, 0),
        ("2/6/c", 6, 2**32, 0, 0),
    ]
    with db.connect(database_url) as write:
        layout = db.detect_layout(write)
        write_customer(write, layout, 2, Spaces(), None, rows, datetime.now(UTC), dry_run=False)
    assert customer_storage(conn)[(2, 0)] == (3, huge + 2**40 + 2**32, 2**33 + 4)


def test_attribution_memory_grows_with_assets_not_objects() -> None:
    registry = {f"2/5/asset-{n}": 5 for n in range(100)}
    # Pages of 200 keys: the page held is small beside the tally, so that anything kept per key,
    # or even an int kept per page (2,000 pages against 100), shows in the peak; with pages of
    # 1,000 keys an int kept per page did not, and the test took ten times as long.
    keys_per_page = 200

    def peak(pages_per_asset: int) -> int:
        tally = Tally(registry)
        tracemalloc.start()
        for n in range(100):
            for p in range(pages_per_asset):
                page = [(f"2/5/asset-{n}/tile/{p}/{i}", 1) for i in range(keys_per_page)]
                tally.add(LocationKind.ARTEFACT, "s", "", page)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        total = sum(size for size, _, _ in tally.sizes.values())
        assert total == 100 * keys_per_page * pages_per_asset
        return top

    one_page, twenty_pages = peak(1), peak(20)
    assert twenty_pages < 1.2 * one_page, (one_page, twenty_pages)


def test_an_unexpected_exception_fails_only_its_customer_with_its_flags_cleared(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    register("2/5/a", "3/1/b")
    put(STORAGE, {"2/5/a": 10, "3/1/b": 20})
    run(settings, s3)
    before = customer_storage(conn)
    put(STORAGE, {"2/5/a/more": 5, "3/1/b/more": 5})
    add = Tally.add

    def add_failing_for_customer_2(
        self: Tally, kind: Any, bucket: str, prefix: str, objects: Any
    ) -> None:
        objects = list(objects)
        if any(key.startswith("2/") for key, _ in objects):
            raise KeyError("a bug")
        add(self, kind, bucket, prefix, objects)

    monkeypatch.setattr(Tally, "add", add_failing_for_customer_2)
    report = run(settings, s3)
    failed, done = report.customers
    assert (failed.customer, failed.outcome) == (2, Outcome.FAILED)
    assert failed.error == "unexpected error: KeyError: 'a bug'"
    assert (done.customer, done.outcome) == (3, Outcome.DONE)
    after = customer_storage(conn)
    assert {k: v for k, v in after.items() if k[0] == 2} == {
        k: v for k, v in before.items() if k[0] == 2
    }
    assert after[(3, 0)] == (1, 25, 0)
    flags = conn.execute('SELECT DISTINCT "CheckingInProgress" FROM "ImageStorage"').fetchall()
    assert flags == [(False,)]
