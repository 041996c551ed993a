"""Connections and statements: the package's SQL by name, connecting with the job's options,
and psycopg's errors turned into one-line errors that say what was being done."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from typing import Any

import psycopg

from storage_calc import sqlfiles
from storage_calc.errors import ConfigError, ConnectionLost, DatabaseError
from storage_calc.model import (
    Layout,
)

Connection = psycopg.Connection[Any]


STATEMENT_TIMEOUT_MS = 15 * 60 * 1000


CONNECT_TIMEOUT_S = 10


# The SQLSTATEs of a server that ended the session (an operator's pg_terminate_backend, a
# shutdown, a crash, a failover not yet done); class 08 is a connection that failed.
SESSION_ENDED = ("57P01", "57P02", "57P03")


@cache
def queries() -> dict[str, str]:
    """The named queries of sql/queries.sql, sql/access.sql and sql/billing.sql, by name."""
    return sqlfiles.named_statements("queries.sql", "access.sql", "billing.sql")


@cache
def query(name: str, layout: Layout | None = None) -> str:
    """The named query for `layout`: a line ending in `-- with: feature` kept only where the
    layout has the feature, one ending in `-- without: feature` only where it has not."""
    has = None if layout is None else (lambda feature: bool(getattr(layout, feature)))
    try:
        return sqlfiles.for_features(queries()[name], has)
    except ValueError as exc:
        raise ValueError(f"query {name} depends on the layout: pass one") from exc


def sql_file(path: str) -> str:
    return sqlfiles.read(path)


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
        if lost(exc):
            raise ConnectionLost(f"{action}: {_first_line(exc)}") from exc
        raise DatabaseError(f"{action}: {_first_line(exc)}") from exc


def lost(exc: psycopg.Error) -> bool:
    """Whether `exc` ended the connection rather than refused a statement: a session the server
    terminated, a connection that failed, or one psycopg found closed (no SQLSTATE at all)."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in SESSION_ENDED


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
    """A connection with `connection_options()`; a URL that is not a PostgreSQL connection
    string is a ConfigError, a server that cannot be reached a DatabaseError."""
    try:
        return psycopg.connect(url, **connection_options())
    except psycopg.ProgrammingError as exc:
        # libpq quotes the part of the URL it could not parse, which may hold the password.
        reason = re.sub(r'"[^"]*"', "…", _first_line(exc))
        raise ConfigError(f"the database URL is malformed: {reason}") from exc
    except psycopg.OperationalError as exc:
        raise ConnectionLost(f"cannot connect to the database: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to the database: {_first_line(exc)}") from exc


def execute(
    conn: Connection, name: str, layout: Layout | None = None, /, **params: Any
) -> psycopg.Cursor[Any]:
    return conn.execute(query(name, layout), params)


def backend_pid(conn: Connection) -> int:
    """The pid of the session's backend, asked of the server: a session that ended fails here,
    not in the write that trusts it to hold a lock."""
    with translated("reading the session's backend failed"):
        return execute(conn, "backend_pid").fetchone()[0]  # type: ignore[index,no-any-return]


def server_now(conn: Connection) -> datetime:
    with translated("reading the database clock failed"):
        row = execute(conn, "server_now").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]  # psycopg's rows are tuples of Any
