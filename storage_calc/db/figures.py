"""The figures a run writes: staged in a temporary table, then written into `"ImageStorage"`
and `"CustomerStorage"` in one transaction per scope, with the billable bytes of
`storage_calc.billable_storage` (the job's own table, never the platform's)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from storage_calc.billable import in_scope
from storage_calc.db.connection import (
    Connection,
    execute,
    queries,
    query,
    translated,
)
from storage_calc.db.sessions import (
    COMMIT_LOCK_NAMESPACE,
    LOCK_NAMESPACE,
)
from storage_calc.errors import LockLost
from storage_calc.model import (
    Billable,
    CustomerStorageRow,
    Figures,
    Layout,
    ScopeChange,
    Spaces,
)

# Bytes per write of a file copied into PostgreSQL.
COPY_CHUNK = 1 << 20


def _customer_rows(
    conn: Connection, layout: Layout, customer: int
) -> dict[int | None, CustomerStorageRow]:
    with conn.cursor(row_factory=class_row(CustomerStorageRow)) as cur:
        cur.execute(query("customer_rows", layout), {"customer": customer})
        return {row.space: row for row in cur}


def start_staging(conn: Connection) -> None:
    """Makes the connection's staging table ready, and empty, for a customer's figures."""
    with translated("preparing the staging table failed"):
        execute(conn, "create_figures")
        execute(conn, "clear_figures")


def clear_staging(conn: Connection) -> None:
    with translated("emptying the staging table failed"):
        execute(conn, "clear_figures")


def stage_figures(conn: Connection, asset_rows: Iterable[tuple[str, int, int, int, int]]) -> int:
    """Copies (id, space, size, thumbnail size, adjunct size) rows into the staging table;
    returns how many."""
    staged = 0
    with (
        translated("staging figures failed"),
        conn.cursor().copy(queries()["copy_figures"]) as copy,
    ):
        copy.set_types(["varchar", "int4", "int8", "int8", "int8"])
        for row in asset_rows:
            copy.write_row(row)
            staged += 1
    return staged


def stage_csv(conn: Connection, path: Path) -> int:
    """Copies the CSV file `path` of (id, space, size, thumbnail size, adjunct size) rows into
    the staging table; returns how many."""
    with (
        translated("staging figures failed"),
        path.open("rb") as source,
        conn.cursor() as cursor,
    ):
        with cursor.copy(queries()["copy_figures_csv"]) as copy:
            while chunk := source.read(COPY_CHUNK):
                copy.write(chunk)
        return cursor.rowcount


def write_staged(
    conn: Connection,
    layout: Layout,
    customer: int,
    spaces: Spaces,
    asset: str | None,
    staged: int,
    checked: datetime,
    dry_run: bool,
    lock_holder: int | None = None,
    billable: Sequence[Billable] | None = None,
    run_id: int | None = None,
) -> tuple[ScopeChange, ...]:
    """Writes a scope's staged figures (`staged` rows) in one transaction and returns the rows
    whose figures changed.

    ImageStorage, the space rows and the customer-level row are rewritten with set-based
    statements written for `layout`, so a reader sees the customer before or after, never
    half-written: existing rows updated, new ones inserted, rows of assets no longer registered
    deleted. With `lock_holder`, the backend pid of the session that locked the customer, the
    write first checks, in its transaction, that this session still holds the lock. It then
    takes the customer's commit lock, so that the shards writing different spaces of one
    customer refresh its customer-level row one after the other. `billable` rows, where the run
    computed them, replace the scope's in the same transaction, and the scope's spaces are
    stepped (`step_figures`, recording `run_id`) last. A dry run does all of it and rolls back.
    """
    params = {
        "customer": customer,
        **spaces.params(),
        "asset": asset,
        "checked": checked,
        "first_space": layout.first_space,
        "customer_space": layout.customer_space,
    }
    with (
        translated(f"writing the figures of customer {customer} failed"),
        conn.transaction(force_rollback=dry_run),
    ):
        if lock_holder is not None:
            held = execute(
                conn,
                "customer_lock_held",
                namespace=LOCK_NAMESPACE,
                customer=customer,
                holder=lock_holder,
            ).fetchone()
            if not held or not held[0]:
                raise LockLost(
                    f"customer {customer} is no longer locked by this run: its figures are "
                    "left for the run that holds it"
                )
        execute(conn, "lock_customer_commit", namespace=COMMIT_LOCK_NAMESPACE, customer=customer)
        execute(conn, "write_settings")
        before = _customer_rows(conn, layout, customer)
        execute(conn, "analyze_figures")
        updated = execute(conn, "update_image_storage", layout, **params).rowcount
        if updated < staged:
            insert_image_storage(conn, layout, params)
        for name in ("delete_unregistered", "upsert_space_rows", "upsert_customer_row"):
            execute(conn, name, layout, **params)
        if billable is not None:
            write_billable(conn, customer, spaces, billable, checked)
        step_figures(conn, layout, customer, spaces, run_id, billable=billable is not None)
        after = _customer_rows(conn, layout, customer)
    return tuple(
        ScopeChange(
            customer,
            s,
            before[s].figures if s in before else _empty(layout),
            row.figures,
            customer_row=s == layout.customer_space,
        )
        for s, row in after.items()
        if s not in before or before[s].figures != row.figures
    )


def step_figures(
    conn: Connection,
    layout: Layout,
    customer: int,
    spaces: Spaces,
    run_id: int | None,
    billable: bool,
) -> datetime:
    """Records a commit of the customer's `spaces` and gives each of them whose figures changed
    a step from then on (storage_calc.space_figures), inside the caller's transaction: the
    figures it has just written, and the billable ones where `billable` (else carried over).
    Returns the commit's time."""
    params = {
        "customer": customer,
        "run_id": run_id,
        **spaces.params(),
        "whole": spaces.whole,
        "first_space": layout.first_space,
        "billable": billable,
    }
    commit = execute(conn, "insert_figure_commit", **params).fetchone()
    assert commit is not None  # an INSERT ... RETURNING of one row
    commit_id, committed_at = commit
    execute(conn, "insert_figure_spaces", **params)
    execute(
        conn, "step_space_figures", layout, **params, commit_id=commit_id, committed_at=committed_at
    )
    return committed_at  # type: ignore[no-any-return]  # psycopg's rows are tuples of Any


def _empty(layout: Layout) -> Figures:
    """The figures of a row that did not exist: zero, adjunct figures included where the
    layout has them."""
    return Figures(0, 0, 0, 0, 0) if layout.space_adjuncts else Figures()


def insert_image_storage(conn: Connection, layout: Layout, params: dict[str, Any]) -> None:
    """Inserts the rows of newly staged assets with a plain INSERT, and only when ingest
    inserted one of them meanwhile pays for the upsert's conflict handling.

    Called only when the update left staged rows without a row: on a rerun every staged asset
    has one, and the anti-join over all of them would find nothing."""
    try:
        with conn.transaction():
            execute(conn, "insert_image_storage", layout, **params)
    except psycopg.errors.UniqueViolation:
        execute(conn, "upsert_image_storage", layout, **params)


def write_billable(
    conn: Connection, customer: int, spaces: Spaces, rows: Sequence[Billable], checked: datetime
) -> None:
    """Replaces, in one transaction, the customer's billable rows of `spaces` with those of
    `rows` in them; computing the whole customer (every space, none excluded) also replaces its
    row outside any space. `checked` is when its listing started."""
    with (
        translated(f"writing the billable bytes of customer {customer} failed"),
        conn.transaction(),
    ):
        execute(conn, "delete_billable", customer=customer, whole=spaces.whole, **spaces.params())
        kept = [row for row in rows if in_scope(row, customer, spaces)]
        with conn.cursor() as cur:
            cur.executemany(
                query("insert_billable"),
                [
                    asdict(row)
                    | {"by_storage_class": Jsonb(dict(row.by_storage_class)), "checked": checked}
                    for row in kept
                ],
            )
