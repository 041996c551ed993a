from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from storage_calc import db, sqlfiles
from storage_calc.errors import DatabaseError
from storage_calc.model import (
    CustomerResult,
    Figures,
    Layout,
    Outcome,
    Scope,
    ScopeChange,
    SpaceOrphans,
    Spaces,
)
from tests.databases import write_customer

SEED = Layout()

COLUMNS = """
SELECT column_name, data_type, character_maximum_length
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = %s
ORDER BY ordinal_position
"""

PRIMARY_KEY = """
SELECT a.attname
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %s::regclass AND i.indisprimary
ORDER BY array_position(i.indkey, a.attnum)
"""


def columns(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, str, int | None]]:
    return conn.execute(COLUMNS, (table,)).fetchall()


def primary_key(conn: psycopg.Connection[Any], table: str) -> list[str]:
    return [row[0] for row in conn.execute(PRIMARY_KEY, (f'"{table}"',))]


INDEXES = """
SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s ORDER BY 1
"""


def indexes(conn: psycopg.Connection[Any], table: str) -> list[str]:
    return [row[0] for row in conn.execute(INDEXES, (table,))]


def test_image_storage_is_the_platforms_with_its_key_and_index(
    conn: psycopg.Connection[Any],
) -> None:
    assert columns(conn, "ImageStorage") == [
        ("Id", "character varying", 500),
        ("Customer", "integer", None),
        ("Space", "integer", None),
        ("ThumbnailSize", "bigint", None),
        ("Size", "bigint", None),
        ("LastChecked", "timestamp with time zone", None),
        ("CheckingInProgress", "boolean", None),
    ]
    assert primary_key(conn, "ImageStorage") == ["Id", "Customer", "Space"]
    assert indexes(conn, "ImageStorage") == ["IX_ImageStorageByCustomerSpace", "PK_ImageStorage"]


def test_customer_storage_is_the_seed_layouts_with_its_key(conn: psycopg.Connection[Any]) -> None:
    assert columns(conn, "CustomerStorage") == [
        ("Customer", "integer", None),
        ("Space", "integer", None),
        ("StoragePolicy", "character varying", 500),
        ("NumberOfStoredImages", "bigint", None),
        ("TotalSizeOfStoredImages", "bigint", None),
        ("TotalSizeOfThumbnails", "bigint", None),
        ("LastCalculated", "timestamp with time zone", None),
    ]
    assert primary_key(conn, "CustomerStorage") == ["Customer", "Space"]
    assert indexes(conn, "CustomerStorage") == ["PK_CustomerStorage"]


def test_images_and_policies_are_the_platforms(conn: psycopg.Connection[Any]) -> None:
    assert len(columns(conn, "Images")) == 29
    assert columns(conn, "Images")[:3] == [
        ("Id", "character varying", 500),
        ("Customer", "integer", None),
        ("Space", "integer", None),
    ]
    assert "IX_ImagesBySpace" in indexes(conn, "Images")
    assert columns(conn, "StoragePolicies") == [
        ("Id", "character varying", 500),
        ("MaximumNumberOfStoredImages", "bigint", None),
        ("MaximumTotalSizeOfStoredImages", "bigint", None),
    ]


def test_the_default_policy_is_seeded(conn: psycopg.Connection[Any]) -> None:
    assert conn.execute('SELECT * FROM "StoragePolicies"').fetchall() == [
        ("default", 1_000_000_000, 1_125_899_906_842_624)
    ]


def test_the_projects_own_tables_are_in_their_own_schema(conn: psycopg.Connection[Any]) -> None:
    tables = conn.execute(
        "SELECT table_name, table_type FROM information_schema.tables"
        " WHERE table_schema = 'storage_calc' ORDER BY 1"
    ).fetchall()
    assert tables == [
        ("billable_storage", "BASE TABLE"),
        ("changes", "BASE TABLE"),
        ("customer_orphans", "VIEW"),
        ("customer_runs", "BASE TABLE"),
        ("customer_usage", "VIEW"),
        ("figure_commits", "BASE TABLE"),
        ("figure_spaces", "BASE TABLE"),
        ("largest_spaces", "VIEW"),
        ("migrations", "BASE TABLE"),
        ("monthly_gb_months", "VIEW"),
        ("orphans", "BASE TABLE"),
        ("run_drift", "VIEW"),
        ("runs", "BASE TABLE"),
        ("runs_per_day", "VIEW"),
        ("space_figures", "BASE TABLE"),
    ]


def test_migrating_again_keeps_data_and_changed_policies(
    database_url: str, register: Callable[..., None]
) -> None:
    register("2/5/a")
    with db.connect(database_url) as conn:
        conn.execute('UPDATE "StoragePolicies" SET "MaximumNumberOfStoredImages" = 7')
        db.migrate(conn)
        db.migrate(conn)
        assert conn.execute('SELECT "Id" FROM "Images"').fetchall() == [("2/5/a",)]
        assert conn.execute(
            'SELECT "MaximumNumberOfStoredImages" FROM "StoragePolicies"'
        ).fetchall() == [(7,)]


def test_queries_are_all_named_and_parameterised() -> None:
    queries = db.queries()
    assert {"registry", "upsert_image_storage", "upsert_space_rows", "upsert_customer_row"} <= set(
        queries
    )
    for name, sql in queries.items():
        assert "{" not in sql, name


def test_feature_lines_are_kept_only_where_the_feature_is_as_they_say() -> None:
    statement = "SELECT a -- with: adjuncts\n, b -- without: adjuncts\nFROM t"
    assert sqlfiles.for_features(statement, lambda feature: True) == "SELECT a\nFROM t"
    assert sqlfiles.for_features(statement, lambda feature: False) == ", b\nFROM t"
    with pytest.raises(ValueError, match="depends on adjuncts"):
        sqlfiles.for_features(statement, None)


def test_fragments_fill_their_names_and_leave_other_braces() -> None:
    statement = "SELECT {column} FROM t WHERE regexp_matches(x, '[0-9]{1,18}') AND y = {'a': 1}"
    assert sqlfiles.filled(statement, column="size") == (
        "SELECT size FROM t WHERE regexp_matches(x, '[0-9]{1,18}') AND y = {'a': 1}"
    )
    with pytest.raises(KeyError):
        sqlfiles.filled("SELECT {column}")


def test_a_statement_named_in_two_files_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"a.sql": "-- name: total\nSELECT 1;\n", "b.sql": "-- name: total\nSELECT 2;\n"}
    monkeypatch.setattr(sqlfiles, "read", files.__getitem__)
    assert sqlfiles.named_statements("a.sql") == {"total": "SELECT 1;"}
    with pytest.raises(ValueError, match="statement total is named twice"):
        sqlfiles.named_statements("a.sql", "b.sql")


def test_a_row_ingest_inserts_during_the_write_is_overwritten_not_a_failure(
    database_url: str, conn: psycopg.Connection[Any], register: Callable[..., None]
) -> None:
    register("2/5/a", "2/5/b")
    ingest = psycopg.connect(database_url)  # its INSERT stays uncommitted until told
    ingest.execute(
        'INSERT INTO "ImageStorage" ("Id", "Customer", "Space", "ThumbnailSize", "Size",'
        ' "LastChecked", "CheckingInProgress") VALUES (\'2/5/a\', 2, 5, 0, 1, now(), false)'
    )
    rows = [("2/5/a", 5, 100, 7, 0), ("2/5/b", 5, 200, 0, 0)]
    with db.connect(database_url) as writer, ThreadPoolExecutor(1) as pool:
        write = pool.submit(
            write_customer, writer, SEED, 2, Spaces(), None, rows, datetime.now(UTC), False
        )
        deadline = time.monotonic() + 10
        while not conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:
            assert time.monotonic() < deadline, "the write never waited for the ingest's row"
            time.sleep(0.02)
        ingest.commit()
        write.result(timeout=10)
    ingest.close()
    assert conn.execute(
        'SELECT "Id", "Size", "ThumbnailSize" FROM "ImageStorage" ORDER BY 1'
    ).fetchall() == [("2/5/a", 100, 7), ("2/5/b", 200, 0)]


def test_a_rewrite_also_inserts_the_rows_of_assets_registered_since_the_last_write(
    conn: psycopg.Connection[Any], register: Callable[..., None]
) -> None:
    register("2/5/a")
    first = [("2/5/a", 5, 100, 7, 0)]
    write_customer(conn, SEED, 2, Spaces(), None, first, datetime.now(UTC), False)
    register("2/5/b")
    rows = [("2/5/a", 5, 110, 7, 0), ("2/5/b", 5, 200, 0, 0)]
    write_customer(conn, SEED, 2, Spaces(), None, rows, datetime.now(UTC), False)
    assert conn.execute(
        'SELECT "Id", "Size", "ThumbnailSize" FROM "ImageStorage" ORDER BY 1'
    ).fetchall() == [("2/5/a", 110, 7), ("2/5/b", 200, 0)]


def outcomes(conn: psycopg.Connection[Any]) -> list[tuple[int, str]]:
    return conn.execute("SELECT id, outcome FROM storage_calc.runs ORDER BY id").fetchall()


def test_a_running_run_is_not_taken_for_abandoned(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    with db.connect(database_url) as first, db.connect(database_url) as second:
        one = db.start_run(first, datetime.now(UTC), "all", None)
        two = db.start_run(second, datetime.now(UTC), "all", None)
        assert outcomes(conn) == [(one, "running"), (two, "running")]
        pids = [first.info.backend_pid, second.info.backend_pid]
    # A backend releases its locks as it exits, a moment after its client closed the connection.
    deadline = time.monotonic() + 10
    while conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]
    ).fetchone()[0]:
        assert time.monotonic() < deadline, "the closed sessions' backends never exited"
        time.sleep(0.02)
    with db.connect(database_url) as third:
        three = db.start_run(third, datetime.now(UTC), "all", None)
    assert outcomes(conn) == [(one, "abandoned"), (two, "abandoned"), (three, "running")]


@pytest.fixture
def database(database_url: str) -> Iterator[db.Database]:
    """A run's connection, as the calculator holds it."""
    database = db.Database(database_url)
    yield database
    database.close()


def broken(database: db.Database, conn: psycopg.Connection[Any]) -> None:
    """Terminates the run's backend and lets the run notice, as a failed statement does."""
    conn.execute("SELECT pg_terminate_backend(%s)", (database.conn.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        database.conn.execute("SELECT 1")


def test_a_run_whose_connection_was_broken_holds_its_run_again(
    database: db.Database, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    database.run_id = db.start_run(database.conn, datetime.now(UTC), "all", None)
    broken(database, conn)
    database.conn.execute("SELECT 1")
    with db.connect(database_url) as other:
        other_id = db.start_run(other, datetime.now(UTC), "all", None)
        assert outcomes(conn) == [(database.run_id, "running"), (other_id, "running")]


def customer_lock_holder(conn: psycopg.Connection[Any], customer: int) -> int | None:
    row = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = %s::int::oid AND objid = %s::int::oid AND objsubid = 2",
        (db.LOCK_NAMESPACE, customer),
    ).fetchone()
    return row[0] if row else None


def test_a_broken_connection_takes_the_customers_in_progress_again(
    database: db.Database, conn: psycopg.Connection[Any]
) -> None:
    assert database.lock_customer(2)
    broken(database, conn)
    reconnected = database.conn
    assert customer_lock_holder(conn, 2) == reconnected.info.backend_pid
    assert database.lost == set()


def test_a_customer_another_run_took_while_the_connection_was_broken_is_lost(
    database: db.Database, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    assert database.lock_customer(2)
    broken(database, conn)
    with db.connect(database_url) as other_run:
        assert db.try_lock_customer(other_run, 2)
        database.conn.execute("SELECT 1")
        assert database.lost == {2}
        assert customer_lock_holder(conn, 2) == other_run.info.backend_pid


def test_a_customer_recorded_again_after_its_commit_answer_was_lost_is_recorded_once(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    database = db.Database(database_url, delays=(0.01,))
    database.run_id = db.start_run(database.conn, datetime.now(UTC), "all", None)
    orphan = SpaceOrphans(customer=2, space=5, objects=1, bytes=3, assets=1, examples=("2/5/x",))
    result = CustomerResult(
        customer=2,
        outcome=Outcome.DONE,
        objects=1,
        changes=(ScopeChange(2, 5, Figures(), Figures(1, 10, 0)),),
        orphans=(orphan,),
    )
    attempts = []

    def committed_then_lost(connection: psycopg.Connection[Any]) -> None:
        db.record_customer(connection, database.run_id, Scope(), result)
        attempts.append(connection.info.backend_pid)
        if len(attempts) == 1:
            broken(database, conn)
            db.server_now(connection)

    database.retried(committed_then_lost)
    database.close()
    assert len(attempts) == 2
    recorded = "SELECT count(*) FROM storage_calc.{} WHERE run_id = %s"
    counts = [
        conn.execute(recorded.format(table), (database.run_id,)).fetchone()[0]
        for table in ("customer_runs", "changes", "orphans")
    ]
    assert counts == [1, 1, 1]


def test_a_customer_is_written_only_while_the_run_holding_its_lock_still_does(
    database_url: str, conn: psycopg.Connection[Any], register: Callable[..., None]
) -> None:
    register("2/5/a")

    def write(holder: int) -> None:
        with db.connect(database_url) as writer:
            db.start_staging(writer)
            staged = db.stage_figures(writer, [("2/5/a", 5, 1, 0, 0)])
            db.write_staged(
                writer, SEED, 2, Spaces(), None, staged, datetime.now(UTC), False, holder
            )

    run = conn.info.backend_pid
    with pytest.raises(DatabaseError, match="customer 2 is no longer locked by this run"):
        write(run)
    assert conn.execute('SELECT count(*) FROM "ImageStorage"').fetchone() == (0,)
    assert db.try_lock_customer(conn, 2)
    write(run)
    assert conn.execute('SELECT "Size" FROM "ImageStorage"').fetchall() == [(1,)]


def test_a_write_joins_by_hashing_whatever_the_statistics_say(
    conn: psycopg.Connection[Any], register: Callable[..., None]
) -> None:
    # The statistics say customer 2 has no ImageStorage row, as they do before its first write
    # is analyzed. A merge join on "Space" alone would then compare every row of a space with
    # every registered asset of it: 126 s for a customer of 26,824 assets.
    register(*(f"3/1/{n}" for n in range(2000)), *(f"2/5/{n}" for n in range(50_000)))
    write_customer(
        conn, SEED, 3, Spaces(), None,
        [(f"3/1/{n}", 1, 1, 0, 0) for n in range(2000)], datetime.now(UTC), False,
    )  # fmt: skip
    conn.execute('ANALYZE "ImageStorage"')
    conn.execute('ANALYZE "Images"')
    params = {
        "customer": 2, **Spaces().params(), "asset": None,
        "first_space": SEED.first_space, "customer_space": SEED.customer_space,
    }  # fmt: skip
    with conn.transaction(force_rollback=True):
        db.execute(conn, "write_settings")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN " + db.query("delete_unregistered", SEED), params
            ).fetchall()
        )
    assert "Merge" not in plan and "Hash" in plan, plan
