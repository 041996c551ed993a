"""Reads of the platform's registry, `"Images"`: the customers, the assets of a scope, and the
rows filed under the wrong scope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg

from storage_calc.db.connection import (
    Connection,
    execute,
    query,
    translated,
)
from storage_calc.model import (
    Layout,
    Misfiled,
    Spaces,
)


def all_customers(conn: Connection) -> list[int]:
    with translated("reading the customers failed"):
        return [row[0] for row in execute(conn, "all_customers")]


def read_registry(
    conn: Connection,
    layout: Layout,
    customer: int,
    spaces: Spaces,
    asset: str | None = None,
) -> dict[str, int]:
    """The registered assets of a scope: id -> space."""
    with translated(f"reading the assets of customer {customer} failed"):
        rows = execute(
            conn,
            "registry",
            customer=customer,
            asset=asset,
            first_space=layout.first_space,
            **spaces.params(),
        )
        return {asset_id: asset_space for asset_id, asset_space in rows}


def asset_counts(conn: Connection, layout: Layout) -> dict[tuple[int, int], int]:
    """The registered assets of every (customer, space)."""
    with translated('counting the assets in "Images" failed'):
        rows = execute(conn, "asset_counts", first_space=layout.first_space)
        return {(customer, space): count for customer, space, count in rows}


def stream_registry(
    conn: Connection, layout: Layout, customer: int, spaces: Spaces, batch: int
) -> Iterator[tuple[str, int]]:
    """The registered assets of a customer or space as (id, space), sorted by space and then
    by id in UTF-8 byte order, fetched `batch` at a time.

    The cursor is declared WITH HOLD: the server sorts and keeps the whole result when the
    declaring statement commits, so no transaction, and no snapshot holding back the platform's
    vacuum, stays open while the customer is listed.
    """
    cursor = conn.cursor("storage_calc_registry", withhold=True)
    try:
        with translated(f"reading the assets of customer {customer} failed"):
            cursor.itersize = batch
            cursor.execute(
                query("registry_sorted"),
                {"customer": customer, "first_space": layout.first_space, **spaces.params()},
            )
            yield from cursor
    finally:
        try:
            cursor.close()
        except psycopg.OperationalError:
            # A session that ended cannot close its cursor; closing the connection ends both.
            conn.close()
            cursor.close()


def export_registry(
    conn: Connection, layout: Layout, customer: int, spaces: Spaces, asset: str | None, path: Path
) -> None:
    """Writes the registered assets of a scope (as `read_registry`) to `path` as CSV (id,
    space), streamed: no row is held in memory."""
    statement = f"COPY ({query('registry').rstrip(';')}) TO STDOUT (FORMAT csv)"
    params = {
        "customer": customer,
        "asset": asset,
        "first_space": layout.first_space,
        **spaces.params(),
    }
    with (
        translated(f"reading the assets of customer {customer} failed"),
        path.open("wb") as out,
        conn.cursor().copy(statement, params) as copy,
    ):
        for chunk in copy:
            out.write(chunk)


def misfiled(
    conn: Connection,
    layout: Layout,
    customer: int,
    spaces: Spaces,
    asset: str | None = None,
) -> Misfiled:
    """The misfiled "Images" rows of a scope (see `Misfiled`)."""
    with translated(f"reading the assets of customer {customer} failed"):
        count, examples = execute(
            conn,
            "misfiled",
            customer=customer,
            asset=asset,
            first_space=layout.first_space,
            **spaces.params(),
        ).fetchone()  # type: ignore[misc]  # an aggregate: always one row
    return Misfiled(count, tuple(examples))
