"""Databases of the test server: each test's own, copied from a template or empty; and the
reads only tests make of them."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from storage_calc import db
from storage_calc.billable import Billable

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


def billable_rows(conn: psycopg.Connection[Any], customer: int | None) -> list[Billable]:
    """The billable rows of `customer` (None: of every customer), by customer and space."""
    return db.fetch(conn, "billable_rows", Billable, "the billable bytes", customer=customer)
