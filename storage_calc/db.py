"""PostgreSQL: the only module that imports psycopg. Queries live in sql/*.sql."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg.rows import class_row

from storage_calc.errors import DatabaseError
from storage_calc.model import (
    CustomerResult,
    CustomerStorageRow,
    Figures,
    ImageStorageRow,
    Outcome,
    RunReport,
    Scope,
    ScopeChange,
    StoragePolicyRow,
)

Connection = psycopg.Connection[Any]
T = TypeVar("T")

# The first key of every advisory lock the job takes: the platform's own locks, if any, use
# other namespaces, so a customer or run id can never collide with them.
LOCK_NAMESPACE = 0x7374636C  # "stcl": customers, and the schema's migration
RUN_LOCK_NAMESPACE = 0x7374726E  # "strn": runs in progress

STATEMENT_TIMEOUT_MS = 15 * 60 * 1000
CONNECT_TIMEOUT_S = 10


@cache
def queries() -> dict[str, str]:
    """The named queries of sql/queries.sql, by name."""
    text = resources.files("storage_calc").joinpath("sql/queries.sql").read_text("utf-8")
    blocks = re.split(r"^-- name: (\w+)\n", text, flags=re.MULTILINE)[1:]
    return {name: body.strip() for name, body in zip(blocks[::2], blocks[1::2], strict=True)}


def schema_sql() -> str:
    return resources.files("storage_calc").joinpath("sql/schema.sql").read_text("utf-8")


@contextlib.contextmanager
def translated(action: str) -> Iterator[None]:
    """Turns psycopg's errors into a one-line DatabaseError saying what was being done."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        raise DatabaseError(
            f"{action}: {_first_line(exc)}; run 'storage-calc db migrate' first"
        ) from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"{action}: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def connection_options(application_name: str = "storage-calc") -> dict[str, Any]:
    """The options of every connection the job or its API opens: autocommit, so that every
    write runs in an explicit `transaction()` block, and timeouts, so that neither an
    unreachable server nor a lock held by someone else can make it hang forever."""
    return {
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT_S,
        "application_name": application_name,
        "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
    }


def connect(url: str) -> Connection:
    """A connection with `connection_options()`."""
    with translated("cannot connect to the database"):
        return psycopg.connect(url, **connection_options())


def execute(conn: Connection, name: str, **params: Any) -> psycopg.Cursor[Any]:
    return conn.execute(queries()[name], params)


def migrate(conn: Connection) -> None:
    """Creates whatever of the schema is missing; safe to run again and concurrently."""
    with translated("migrating the schema failed"), conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_NAMESPACE,))
        conn.execute(schema_sql())


def server_now(conn: Connection) -> datetime:
    with translated("reading the database clock failed"):
        row = execute(conn, "server_now").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def all_customers(conn: Connection) -> list[int]:
    with translated("reading the customers failed"):
        return [row[0] for row in execute(conn, "all_customers")]


def read_registry(
    conn: Connection, customer: int, space: int | None = None, asset: str | None = None
) -> dict[str, int]:
    """The registered assets of a scope: id -> space."""
    with translated(f"reading the assets of customer {customer} failed"):
        rows = execute(conn, "registry", customer=customer, space=space, asset=asset)
        return {asset_id: asset_space for asset_id, asset_space in rows}


def try_lock_customer(conn: Connection, customer: int) -> bool:
    with translated(f"locking customer {customer} failed"):
        row = execute(conn, "try_lock_customer", namespace=LOCK_NAMESPACE, customer=customer)
        return bool(row.fetchone()[0])  # type: ignore[index]


def unlock_customer(conn: Connection, customer: int) -> None:
    with translated(f"unlocking customer {customer} failed"):
        execute(conn, "unlock_customer", namespace=LOCK_NAMESPACE, customer=customer)


def set_in_progress(
    conn: Connection, in_progress: bool, customer: int, space: int | None, asset: str | None
) -> None:
    """Sets `CheckingInProgress` of a scope's assets, committed at once so readers see it."""
    with translated(f"flagging customer {customer} failed"), conn.transaction():
        execute(
            conn,
            "set_in_progress",
            in_progress=in_progress,
            customer=customer,
            space=space,
            asset=asset,
        )


def _figures(row: CustomerStorageRow) -> Figures:
    return Figures(
        row.number_of_stored_images, row.total_size_of_stored_images, row.total_size_of_thumbnails
    )


def _customer_rows(conn: Connection, customer: int) -> dict[int, Figures]:
    with conn.cursor(row_factory=class_row(CustomerStorageRow)) as cur:
        cur.execute(queries()["customer_rows"], {"customer": customer})
        return {row.space: _figures(row) for row in cur}


def write_customer(
    conn: Connection,
    customer: int,
    space: int | None,
    asset: str | None,
    asset_rows: Iterable[tuple[str, int, int, int]],
    checked: datetime,
    dry_run: bool,
) -> tuple[ScopeChange, ...]:
    """Writes a scope's figures in one transaction and returns the rows whose figures changed.

    `asset_rows` are (id, space, size, thumbnail size). The assets are staged with COPY, then
    ImageStorage, the space rows and the customer row are rewritten with set-based statements,
    so a reader sees the customer before or after, never half-written: existing rows updated,
    new ones inserted, rows of assets no longer registered deleted. A dry run does all of it and
    rolls back.
    """
    params = {"customer": customer, "space": space, "asset": asset, "checked": checked}
    with (
        translated(f"writing the figures of customer {customer} failed"),
        conn.transaction(force_rollback=dry_run),
    ):
        execute(conn, "write_settings")
        before = _customer_rows(conn, customer)
        execute(conn, "create_figures")
        staged = stage_figures(conn, asset_rows)
        execute(conn, "analyze_figures")
        updated = execute(conn, "update_image_storage", **params).rowcount
        if updated < staged:
            insert_image_storage(conn, params)
        for name in ("delete_unregistered", "upsert_space_rows", "upsert_customer_row"):
            execute(conn, name, **params)
        after = _customer_rows(conn, customer)
    return tuple(
        ScopeChange(customer, s, before.get(s, Figures()), figures)
        for s, figures in sorted(after.items())
        if before.get(s) != figures
    )


def stage_figures(conn: Connection, asset_rows: Iterable[tuple[str, int, int, int]]) -> int:
    """Copies (id, space, size, thumbnail size) rows into the staging table; returns how many."""
    staged = 0
    with conn.cursor().copy(queries()["copy_figures"]) as copy:
        copy.set_types(["varchar", "int4", "int8", "int8"])
        for row in asset_rows:
            copy.write_row(row)
            staged += 1
    return staged


def insert_image_storage(conn: Connection, params: dict[str, Any]) -> None:
    """Inserts the rows of newly staged assets with a plain INSERT, and only when ingest
    inserted one of them meanwhile pays for the upsert's conflict handling.

    Called only when the update left staged rows without a row: on a rerun every staged asset
    has one, and the anti-join over all of them would find nothing."""
    try:
        with conn.transaction():
            execute(conn, "insert_image_storage", **params)
    except psycopg.errors.UniqueViolation:
        execute(conn, "upsert_image_storage", **params)


def start_run(conn: Connection, started: datetime, scope: str, shard: str | None) -> int:
    """Records a new run, held by `conn`'s session until it ends, and closes the runs whose
    process died as `abandoned`. The run is locked before it is visible, so that no other run
    can take it for abandoned."""
    with translated("recording the run failed"), conn.transaction():
        execute(conn, "close_abandoned_runs", namespace=RUN_LOCK_NAMESPACE)
        row = execute(conn, "insert_run", started=started, scope=scope, shard=shard).fetchone()
        assert row is not None
        lock_run(conn, row[0])
    return row[0]  # type: ignore[no-any-return]


def lock_run(conn: Connection, run_id: int) -> None:
    """Holds the run for `conn`'s session (again, after a reconnection)."""
    with translated("locking the run failed"):
        execute(conn, "lock_run", namespace=RUN_LOCK_NAMESPACE, run_id=run_id)


def record_customer(conn: Connection, run_id: int, scope: Scope, result: CustomerResult) -> None:
    """Records what computing one customer gave: its outcome and, when done, the rows it
    changed and the orphans it found."""
    with (
        translated(f"recording the history of customer {result.customer} failed"),
        conn.transaction(),
    ):
        execute(
            conn,
            "insert_customer_run",
            run_id=run_id,
            customer=result.customer,
            space=scope.asset.space if scope.asset else scope.space,
            asset=scope.asset.id if scope.asset else None,
            outcome=result.outcome.value,
            objects=result.objects,
            bytes=result.bytes,
            assets=result.assets,
            orphans=result.orphan_objects,
            orphan_bytes=result.orphan_bytes,
            unattributed=result.unattributed_objects,
            seconds=result.seconds,
            error=result.error,
        )
        for change in result.changes:
            execute(
                conn,
                "insert_change",
                run_id=run_id,
                customer=change.customer,
                space=change.space,
                images_before=change.before.number_of_stored_images,
                images_after=change.after.number_of_stored_images,
                size_before=change.before.total_size_of_stored_images,
                size_after=change.after.total_size_of_stored_images,
                thumbnails_before=change.before.total_size_of_thumbnails,
                thumbnails_after=change.after.total_size_of_thumbnails,
            )
        for orphan in result.orphans:
            execute(
                conn,
                "insert_orphans",
                run_id=run_id,
                customer=orphan.customer,
                space=orphan.space,
                objects=orphan.objects,
                bytes=orphan.bytes,
                assets=orphan.assets,
                examples=list(orphan.examples),
            )


def finish_run(conn: Connection, run_id: int, report: RunReport) -> None:
    with translated("recording the end of the run failed"):
        execute(
            conn,
            "finish_run",
            run_id=run_id,
            outcome=report.outcome,
            objects=report.objects,
            bytes=report.bytes,
            assets=report.assets,
            orphans=report.orphan_objects,
            orphan_bytes=report.orphan_bytes,
            unattributed=report.unattributed,
            unattributed_bytes=report.unattributed_bytes,
            customers=len(report.customers),
            customers_failed=len(report.with_outcome(Outcome.FAILED)),
            customers_skipped=len(report.with_outcome(Outcome.LOCKED)),
            drift_bytes=report.drift_bytes,
            error=report.error_summary,
        )


def prune_runs(conn: Connection, before: datetime) -> int:
    """Deletes the runs started before `before`, with their changes, orphans and customer
    results; returns how many runs were deleted."""
    with translated("pruning the run history failed"), conn.transaction():
        return execute(conn, "prune_runs", before=before).rowcount


def fetch(conn: Connection, name: str, row: type[T], what: str, **params: Any) -> list[T]:
    """The rows of the named query as `row` instances (the query's columns are its fields)."""
    with translated(f"reading {what} failed"), conn.cursor(row_factory=class_row(row)) as cur:
        return cur.execute(queries()[name], params).fetchall()


def customer_storage(conn: Connection, customer: int, space: int) -> CustomerStorageRow | None:
    with (
        translated("reading CustomerStorage failed"),
        conn.cursor(row_factory=class_row(CustomerStorageRow)) as cur,
    ):
        return cur.execute(
            queries()["customer_storage"], {"customer": customer, "space": space}
        ).fetchone()


def image_storage(
    conn: Connection, customer: int, space: int, asset_id: str
) -> ImageStorageRow | None:
    with (
        translated("reading ImageStorage failed"),
        conn.cursor(row_factory=class_row(ImageStorageRow)) as cur,
    ):
        return cur.execute(
            queries()["image_storage"], {"id": asset_id, "customer": customer, "space": space}
        ).fetchone()


def storage_policy(conn: Connection, policy: str) -> StoragePolicyRow | None:
    with (
        translated("reading StoragePolicies failed"),
        conn.cursor(row_factory=class_row(StoragePolicyRow)) as cur,
    ):
        return cur.execute(queries()["storage_policy"], {"id": policy}).fetchone()
