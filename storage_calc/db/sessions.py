"""A run's sessions: the advisory locks of runs and customers, the `CheckingInProgress` flags,
the connections of the customers in flight, and the run's own connection, opened again when a
failure broke it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

import structlog

from storage_calc.db.connection import (
    Connection,
    connect,
    execute,
    translated,
)
from storage_calc.errors import ConnectionLost
from storage_calc.model import (
    Spaces,
)

T = TypeVar("T")


P = ParamSpec("P")


log = structlog.get_logger("storage_calc")


# The first key of every advisory lock the job takes: the platform's own locks, if any, use
# other namespaces, so a customer or run id can never collide with them.
LOCK_NAMESPACE = 0x7374636C  # "stcl": customers


COMMIT_LOCK_NAMESPACE = 0x7374636D  # "stcm": a customer's writes


RUN_LOCK_NAMESPACE = 0x7374726E  # "strn": runs in progress


def try_lock_customer(conn: Connection, customer: int, shared: bool = False) -> bool:
    """Takes the customer's lock for the session, exclusive or `shared` (by the shards of one
    run); False if another session holds it in a mode that excludes this one."""
    name = "try_lock_customer_shared" if shared else "try_lock_customer"
    with translated(f"locking customer {customer} failed"):
        row = execute(conn, name, namespace=LOCK_NAMESPACE, customer=customer)
        return bool(row.fetchone()[0])  # type: ignore[index]  # a SELECT of a function: one row


def unlock_customer(conn: Connection, customer: int, shared: bool = False) -> None:
    name = "unlock_customer_shared" if shared else "unlock_customer"
    with translated(f"unlocking customer {customer} failed"):
        execute(conn, name, namespace=LOCK_NAMESPACE, customer=customer)


def lock_run(conn: Connection, run_id: int) -> None:
    """Holds the run for `conn`'s session (again, after a reconnection)."""
    with translated("locking the run failed"):
        execute(conn, "lock_run", namespace=RUN_LOCK_NAMESPACE, run_id=run_id)


def set_in_progress(
    conn: Connection, in_progress: bool, customer: int, spaces: Spaces, asset: str | None
) -> None:
    """Sets `CheckingInProgress` of a scope's assets, committed at once so readers see it."""
    with translated(f"flagging customer {customer} failed"), conn.transaction():
        execute(
            conn,
            "set_in_progress",
            in_progress=in_progress,
            customer=customer,
            asset=asset,
            **spaces.params(),
        )


class Connections:
    """Connections of the customers in flight, each with its staging table: taken for one
    customer, given back after it, replaced by a new one when a failure broke it (counted in
    `reconnections`), all closed at the end of the run."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.reconnections = 0
        self._idle: list[Connection] = []
        self._opened: list[Connection] = []
        self._lock = threading.Lock()

    def take(self) -> Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn = connect(self.url)
        with self._lock:
            self._opened.append(conn)
        return conn

    def give_back(self, conn: Connection) -> None:
        with self._lock:
            if conn.closed or conn.broken:
                conn.close()
                self._opened.remove(conn)
                self.reconnections += 1
            else:
                self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
            self._idle.clear()


@dataclass(frozen=True)
class Flagged:
    """A scope whose `CheckingInProgress` the run set and has not cleared yet."""

    spaces: Spaces
    asset: str | None


class Database:
    """The run's connection, opened again if a failure broke it.

    A database that cannot be reached at first is an error at once. The advisory locks of a
    session die with it, so a new connection takes the run's lock and the locks of the
    customers in progress again. A customer whose lock another run took in between is `lost`:
    this run must not write it. Every statement of the run goes through `retried`, which waits
    each of `delays` in turn for a connection that broke to come back; once it has not, the
    database is `down` and statements are tried once.
    """

    def __init__(self, url: str, delays: Sequence[float] = ()) -> None:
        self.url = url
        self.delays = tuple(delays)
        self._conn = connect(url)
        self.run_id: int | None = None
        # The customers this session has locked, and whether in shared mode.
        self.locked: dict[int, bool] = {}
        self.lost: set[int] = set()
        self.flagged: dict[int, Flagged] = {}
        self.reconnections = 0
        self.down: str | None = None

    @property
    def conn(self) -> Connection:
        if self._conn.closed or self._conn.broken:
            self._conn.close()
            self._conn = connect(self.url)
            self.reconnections += 1
            log.warning("database_reconnected", connection="run", reconnections=self.reconnections)
            if self.run_id is not None:
                lock_run(self._conn, self.run_id)
            for customer, shared in sorted(self.locked.items()):
                if not try_lock_customer(self._conn, customer, shared):
                    del self.locked[customer]
                    self.lost.add(customer)
        return self._conn

    def retried(
        self, operation: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`operation(conn, *args, **kwargs)` on the run's connection, again on a new one after
        each delay while the connection breaks; the last ConnectionLost once the delays are
        spent."""
        delays = () if self.down else self.delays
        for attempt in range(len(delays) + 1):
            try:
                return operation(self.conn, *args, **kwargs)
            except ConnectionLost as exc:
                if attempt == len(delays):
                    self.down = str(exc)
                    raise
                log.warning("database_connection_lost", error=str(exc), retry_in_s=delays[attempt])
                time.sleep(delays[attempt])
        raise AssertionError("unreachable: the last attempt returns or raises")

    def lock_customer(self, customer: int, shared: bool = False) -> bool:
        if not self.retried(try_lock_customer, customer, shared):
            return False
        self.locked[customer] = shared
        return True

    def unlock_customer(self, customer: int) -> None:
        if customer in self.locked:
            shared = self.locked.pop(customer)
            self.retried(unlock_customer, customer, shared)

    def flag(self, customer: int, spaces: Spaces, asset: str | None) -> None:
        """Sets `CheckingInProgress` of the scope, to be cleared by its write or `unflag`."""
        self.retried(set_in_progress, True, customer, spaces, asset)
        self.flagged[customer] = Flagged(spaces, asset)

    def unflag(self, customer: int) -> None:
        """Clears the flags the run set on the customer, unless another run took it meanwhile
        (they are that run's to clear)."""
        flagged = self.flagged.pop(customer, None)
        if flagged is None or customer in self.lost:
            return
        self.retried(set_in_progress, False, customer, flagged.spaces, flagged.asset)

    def written(self, customer: int) -> None:
        """The customer's write cleared its flags."""
        self.flagged.pop(customer, None)

    def close(self) -> None:
        self._conn.close()
