"""The pool of connections `serve` reads through (psycopg_pool, of the `api` extra: imported
only by the API)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from psycopg_pool import ConnectionPool, PoolTimeout

from storage_calc.db.connection import Connection, connection_options
from storage_calc.errors import DatabaseError


class Pool:
    """Connections shared by the API's requests, each opened with `connection_options`."""

    def __init__(self, url: str, size: int, application_name: str, wait_s: float) -> None:
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            open=False,
            kwargs=connection_options(application_name),
        )
        self.wait_s = wait_s

    def open(self) -> None:
        """Starts opening the connections, without waiting for the database."""
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for one request; a DatabaseError when none is free within `wait_s`
        seconds (every connection busy, or the database unreachable)."""
        try:
            with self._pool.connection(timeout=self.wait_s) as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseError("no database connection is free; try again") from exc
