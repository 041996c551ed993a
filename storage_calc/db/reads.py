"""Reads for `show`, `serve` and the reports: rows as dataclasses."""

from __future__ import annotations

from typing import Any, TypeVar

from psycopg.rows import class_row

from storage_calc.db.connection import (
    Connection,
    queries,
    query,
    translated,
)
from storage_calc.model import (
    CustomerStorageRow,
    ImageStorageRow,
    Layout,
    StoragePolicyRow,
)

T = TypeVar("T")


def fetch(conn: Connection, name: str, row: type[T], what: str, **params: Any) -> list[T]:
    """The rows of the named query as `row` instances (the query's columns are its fields)."""
    with translated(f"reading {what} failed"), conn.cursor(row_factory=class_row(row)) as cur:
        return cur.execute(queries()[name], params).fetchall()


def customer_storage(
    conn: Connection, layout: Layout, customer: int, space: int | None
) -> CustomerStorageRow | None:
    """A space's row, or with `space` None the customer-level row wherever the layout keeps it."""
    with (
        translated("reading CustomerStorage failed"),
        conn.cursor(row_factory=class_row(CustomerStorageRow)) as cur,
    ):
        return cur.execute(
            query("customer_storage", layout),
            {"customer": customer, "space": layout.customer_space if space is None else space},
        ).fetchone()


def image_storage(
    conn: Connection, layout: Layout, customer: int, space: int, asset_id: str
) -> ImageStorageRow | None:
    with (
        translated("reading ImageStorage failed"),
        conn.cursor(row_factory=class_row(ImageStorageRow)) as cur,
    ):
        return cur.execute(
            query("image_storage", layout), {"id": asset_id, "customer": customer, "space": space}
        ).fetchone()


def storage_policy(conn: Connection, policy: str) -> StoragePolicyRow | None:
    with (
        translated("reading StoragePolicies failed"),
        conn.cursor(row_factory=class_row(StoragePolicyRow)) as cur,
    ):
        return cur.execute(queries()["storage_policy"], {"id": policy}).fetchone()
