"""Databases of the test server: each test's own, copied from a template or empty; and the
reads and writes only tests and benchmarks make of them."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import class_row

from storage_calc import db
from storage_calc.model import Billable, Layout, ScopeChange, Spaces

_numbers = itertools.count()


def admin_connection(server_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(server_url, autocommit=True)


@contextlib.contextmanager
def created_database(server_url: str, template: str | None = None) -> Iterator[str]:
    """A new database, a copy of `template` or empty, dropped when the block ends."""
    name = f"storage_calc_test_{os.getpid()}_{next(_numbers)}"
    with admin_connection(server_url) as admin:
        if template is None:
            admin.execute(f'CREATE DATABASE "{name}"')
        else:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with admin_connection(server_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BILLABLE_ROWS = """
SELECT customer, space, current_objects, current_bytes, billed_bytes, noncurrent_versions,
       noncurrent_bytes, delete_markers, incomplete_uploads, incomplete_upload_bytes,
       oldest_upload, by_storage_class
FROM storage_calc.billable_storage
WHERE %(customer)s::int IS NULL OR customer = %(customer)s
ORDER BY customer, space NULLS FIRST
"""


def billable_rows(conn: psycopg.Connection[Any], customer: int | None) -> list[Billable]:
    """The billable rows of `customer` (None: of every customer), by customer, then space with
    none first."""
    with conn.cursor(row_factory=class_row(Billable)) as cur:
        return cur.execute(BILLABLE_ROWS, {"customer": customer}).fetchall()


def write_customer(
    conn: psycopg.Connection[Any],
    layout: Layout,
    customer: int,
    spaces: Spaces,
    asset: str | None,
    asset_rows: Iterable[tuple[str, int, int, int, int]],
    checked: datetime,
    dry_run: bool,
) -> tuple[ScopeChange, ...]:
    """Writes a scope's figures as a run does, from `asset_rows` (id, space, size, thumbnail
    size, adjunct size) instead of a listing: staged, then `db.write_staged`, on a connection
    that holds the customer's lock or needs none."""
    db.start_staging(conn)
    staged = db.stage_figures(conn, asset_rows)
    try:
        return db.write_staged(conn, layout, customer, spaces, asset, staged, checked, dry_run)
    finally:
        db.clear_staging(conn)
