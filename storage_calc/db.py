"""PostgreSQL: the only module that imports psycopg. Queries live in sql/*.sql."""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
import structlog
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from storage_calc.billable import Billable, in_scope
from storage_calc.billing import FIGURES, Commit, Gap, Period, Step, Totals
from storage_calc.errors import ConfigError, ConnectionLost, DatabaseError, LockLost
from storage_calc.layouts import UniqueKey, read_layout
from storage_calc.model import (
    CustomerResult,
    CustomerStorageRow,
    Figures,
    ImageStorageRow,
    Layout,
    Misfiled,
    Outcome,
    RunReport,
    Scope,
    ScopeChange,
    Spaces,
    StoragePolicyRow,
)

Connection = psycopg.Connection[Any]
T = TypeVar("T")
P = ParamSpec("P")

log = structlog.get_logger("storage_calc")

# The first key of every advisory lock the job takes: the platform's own locks, if any, use
# other namespaces, so a customer or run id can never collide with them.
LOCK_NAMESPACE = 0x7374636C  # "stcl": customers
COMMIT_LOCK_NAMESPACE = 0x7374636D  # "stcm": a customer's writes
RUN_LOCK_NAMESPACE = 0x7374726E  # "strn": runs in progress
MIGRATION_LOCK_NAMESPACE = 0x73746D67  # "stmg": the schema's migration

# The platform's tables the job reads and writes; `db migrate` creates them only where none
# exists, and never alters one that does.
PLATFORM_TABLES = ("CustomerStorage", "ImageStorage", "Images", "StoragePolicies")
# The platform's tables in a layout, as its own migrations reach it: the seed layout, then the
# migrations that track adjuncts, then those that make space 0 the stub space.
SEED = ("platform_seed.sql",)
WITH_ADJUNCTS = (*SEED, "platform_adjunct_tracking.sql")
CURRENT = (*WITH_ADJUNCTS, "platform_space_zero.sql")
PLATFORM_SCHEMAS = {"seed": SEED, "current": CURRENT}

# Registered assets fetched per round trip while a customer's registry is streamed.
REGISTRY_BATCH = 10_000

# Bytes per write of a file copied into PostgreSQL.
COPY_CHUNK = 1 << 20

STATEMENT_TIMEOUT_MS = 15 * 60 * 1000
CONNECT_TIMEOUT_S = 10
# The SQLSTATEs of a server that ended the session (an operator's pg_terminate_backend, a
# shutdown, a crash, a failover not yet done); class 08 is a connection that failed.
SESSION_ENDED = ("57P01", "57P02", "57P03")


@cache
def queries() -> dict[str, str]:
    """The named queries of sql/queries.sql, sql/access.sql and sql/billing.sql, by name."""
    named: dict[str, str] = {}
    for path in ("queries.sql", "access.sql", "billing.sql"):
        # Each file on its own: the comment heading one is not part of the last block of another.
        blocks = re.split(r"^-- name: (\w+)\n", sql_file(path), flags=re.MULTILINE)[1:]
        named |= {name: body.strip() for name, body in zip(blocks[::2], blocks[1::2], strict=True)}
    return named


_FEATURE_LINE = re.compile(r"\s*-- (with|without): (\w+)$")


@cache
def query(name: str, layout: Layout | None = None) -> str:
    """The named query for `layout`: a line ending in `-- with: feature` kept only where the
    layout has the feature, one ending in `-- without: feature` only where it has not."""
    lines = []
    for line in queries()[name].splitlines():
        match = _FEATURE_LINE.search(line)
        if match is None:
            lines.append(line)
        elif layout is None:
            raise ValueError(f"query {name} depends on the layout: pass one")
        elif getattr(layout, match[2]) == (match[1] == "with"):
            lines.append(line[: match.start()])
    return "\n".join(lines)


def sql_file(path: str) -> str:
    return resources.files("storage_calc").joinpath(f"sql/{path}").read_text("utf-8")


@dataclass(frozen=True)
class Migration:
    """A version of the project's own schema: `sql/migrations/{version:04d}_{name}.sql`."""

    version: int
    name: str

    @property
    def sql(self) -> str:
        return sql_file(f"migrations/{self.version:04d}_{self.name}.sql")


@cache
def migrations() -> tuple[Migration, ...]:
    """Every version of the project's schema, in order."""
    folder = resources.files("storage_calc").joinpath("sql/migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2]))
    return tuple(sorted(found, key=lambda m: m.version))


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


@dataclass(frozen=True)
class Migrated:
    """What `migrate` did: the layout of the platform's tables it created (None if they
    existed) and the versions of the project's schema it applied."""

    platform_created: str | None
    applied: tuple[Migration, ...]


def migrate(conn: Connection, platform_schema: str = "seed") -> Migrated:
    """Brings the database up to date; safe to run again and concurrently.

    Where none of the platform's tables exists, creates them as the platform's migrations do,
    in the `seed` or `current` layout; where they exist, alters nothing of them. Applies the
    versions of the project's own schema not yet applied, in order, and creates its views again.
    """
    with translated("migrating the schema failed"), conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (MIGRATION_LOCK_NAMESPACE,))
        created = None
        present = platform_tables(conn)
        if not present:
            for path in PLATFORM_SCHEMAS[platform_schema]:
                conn.execute(sql_file(path))
            created = platform_schema
        elif missing := sorted(set(PLATFORM_TABLES) - set(present)):
            raise ConfigError(
                f"the database has {_quoted(present)} but not {_quoted(missing)}: db migrate "
                "creates the platform's tables only where none of them exists"
            )
        execute(conn, "seed_default_policy")
        execute(conn, "create_migrations_table")
        done = {row[0] for row in execute(conn, "applied_migrations")}
        execute(conn, "drop_views")
        applied = tuple(m for m in migrations() if m.version not in done)
        for migration in applied:
            conn.execute(migration.sql)
            execute(conn, "record_migration", version=migration.version, name=migration.name)
        conn.execute(sql_file("views.sql"))
    return Migrated(created, applied)


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def platform_tables(conn: Connection) -> list[str]:
    """The platform's tables (of PLATFORM_TABLES) this database has."""
    return [row[0] for row in execute(conn, "platform_tables", names=list(PLATFORM_TABLES))]


def detect_layout(conn: Connection) -> Layout:
    """The layout of the platform's tables, read from the catalog; a ConfigError naming what
    was found where the job cannot write it."""
    with translated("reading the layout of the platform's tables failed"):
        missing = sorted(set(PLATFORM_TABLES) - set(platform_tables(conn)))
        if missing:
            raise ConfigError(
                f"the database has no {_quoted(missing)}; run 'storage-calc db migrate' first"
            )
        columns = {(t, c): nullable for t, c, nullable in execute(conn, "platform_columns")}
        keys = [UniqueKey(t, n, tuple(c), p) for t, n, c, p in execute(conn, "unique_keys")]
    return read_layout(columns, keys)


@dataclass(frozen=True)
class SchemaStatus:
    """What `db status` shows: the platform's tables and their layout (or why the job cannot
    write it), and the versions of the project's schema, applied and to apply."""

    platform_tables: tuple[str, ...]
    layout: Layout | None
    layout_error: str | None
    has_schema: bool
    applied: tuple[int, ...]
    pending: tuple[Migration, ...]


def schema_status(conn: Connection) -> SchemaStatus:
    with translated("reading the schema's status failed"):
        present = tuple(platform_tables(conn))
        state = execute(conn, "schema_state").fetchone()
        assert state is not None  # a SELECT without FROM: always one row
        has_schema, has_versions = state
        applied = tuple(r[0] for r in execute(conn, "applied_migrations")) if has_versions else ()
    layout, layout_error = None, None
    if present:
        try:
            layout = detect_layout(conn)
        except ConfigError as exc:
            layout_error = str(exc)
    pending = tuple(m for m in migrations() if m.version not in applied)
    return SchemaStatus(present, layout, layout_error, has_schema, applied, pending)


# What the platform's ingest writes for a new image in the "Images" columns that are NOT NULL
# without a usable default, so that a registered asset looks like the platform's own.
IMAGE_COLUMNS: dict[str, object] = {
    "Origin": "https://example.org/origin.jpg",
    "Tags": "",
    "Roles": "",
    "PreservedUri": "",
    "Reference1": "",
    "Reference2": "",
    "Reference3": "",
    "NumberReference1": 0,
    "NumberReference2": 0,
    "NumberReference3": 0,
    "MaxUnauthorised": -1,
    "Width": 0,
    "Height": 0,
    "Error": "",
    "Batch": 0,
    "Ingesting": False,
    "Family": "I",
    "MediaType": "image/jpeg",
    "DeliveryChannels": "iiif-img,thumbs",
}


def register_assets(conn: Connection, asset_ids: Iterable[str]) -> int:
    """Registers assets (`c/s/asset`) in "Images" as the platform's ingest does, filling the
    columns this database's "Images" has; returns how many. For the demo, tests and
    benchmarks: the calculator itself only reads the registry."""
    with translated('registering assets in "Images" failed'), conn.transaction():
        present = {row[0] for row in execute(conn, "images_columns")}
        extra = {name: value for name, value in IMAGE_COLUMNS.items() if name in present}
        names = ["Id", "Customer", "Space", *(["Created"] if "Created" in present else []), *extra]
        statement = sql.SQL('COPY "Images" ({}) FROM STDIN').format(
            sql.SQL(", ").join(sql.Identifier(name) for name in names)
        )
        created = [server_now(conn)] if "Created" in present else []
        count = 0
        with conn.cursor().copy(statement) as copy:
            for asset_id in asset_ids:
                customer, space, _ = asset_id.split("/", 2)
                copy.write_row([asset_id, int(customer), int(space), *created, *extra.values()])
                count += 1
    return count


def registered(conn: Connection, asset_ids: Iterable[str]) -> set[str]:
    """Those of `asset_ids` registered in "Images"."""
    with translated('reading "Images" failed'):
        return {row[0] for row in execute(conn, "registered", ids=list(asset_ids))}


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
            conn, "registry", customer=customer, asset=asset, first_space=layout.first_space,
            **spaces.params(),
        )  # fmt: skip
        return {asset_id: asset_space for asset_id, asset_space in rows}


def asset_counts(conn: Connection, layout: Layout) -> dict[tuple[int, int], int]:
    """The registered assets of every (customer, space)."""
    with translated('counting the assets in "Images" failed'):
        rows = execute(conn, "asset_counts", first_space=layout.first_space)
        return {(customer, space): count for customer, space, count in rows}


def stream_registry(
    conn: Connection, layout: Layout, customer: int, spaces: Spaces
) -> Iterator[tuple[str, int]]:
    """The registered assets of a customer or space as (id, space), sorted by space and then
    by id in UTF-8 byte order, fetched a batch at a time.

    The cursor is declared WITH HOLD: the server sorts and keeps the whole result when the
    declaring statement commits, so no transaction, and no snapshot holding back the platform's
    vacuum, stays open while the customer is listed.
    """
    cursor = conn.cursor("storage_calc_registry", withhold=True)
    try:
        with translated(f"reading the assets of customer {customer} failed"):
            cursor.itersize = REGISTRY_BATCH
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
        "customer": customer, "asset": asset, "first_space": layout.first_space,
        **spaces.params(),
    }  # fmt: skip
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


def _customer_rows(
    conn: Connection, layout: Layout, customer: int
) -> dict[int | None, CustomerStorageRow]:
    with conn.cursor(row_factory=class_row(CustomerStorageRow)) as cur:
        cur.execute(query("customer_rows", layout), {"customer": customer})
        return {row.space: row for row in cur}


def write_customer(
    conn: Connection,
    layout: Layout,
    customer: int,
    spaces: Spaces,
    asset: str | None,
    asset_rows: Iterable[tuple[str, int, int, int, int]],
    checked: datetime,
    dry_run: bool,
) -> tuple[ScopeChange, ...]:
    """Stages `asset_rows` (id, space, size, thumbnail size, adjunct size) and writes them with
    `write_staged`, on a connection that holds the customer's lock or needs none."""
    start_staging(conn)
    staged = stage_figures(conn, asset_rows)
    try:
        return write_staged(conn, layout, customer, spaces, asset, staged, checked, dry_run)
    finally:
        clear_staging(conn)


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
                conn, "customer_lock_held",
                namespace=LOCK_NAMESPACE, customer=customer, holder=lock_holder,
            ).fetchone()  # fmt: skip
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


def start_run(conn: Connection, started: datetime, scope: str, shard: str | None) -> int:
    """Records a new run, held by `conn`'s session until it ends, and closes the runs whose
    process died as `abandoned`. The run is locked before it is visible, so that no other run
    can take it for abandoned."""
    with translated("recording the run failed"), conn.transaction():
        execute(conn, "close_abandoned_runs", namespace=RUN_LOCK_NAMESPACE)
        row = execute(conn, "insert_run", started=started, scope=scope, shard=shard).fetchone()
        assert row is not None
        lock_run(conn, row[0])
    return row[0]  # type: ignore[no-any-return]  # psycopg's rows are tuples of Any


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
            misfiled=result.misfiled.count,
            misfiled_examples=list(result.misfiled.examples),
        )
        for change in result.changes:
            before, after = change.before, change.after
            execute(
                conn,
                "insert_change",
                run_id=run_id,
                customer=change.customer,
                space=None if change.customer_row else change.space,
                images_before=before.number_of_stored_images,
                images_after=after.number_of_stored_images,
                size_before=before.total_size_of_stored_images,
                size_after=after.total_size_of_stored_images,
                thumbnails_before=before.total_size_of_thumbnails,
                thumbnails_after=after.total_size_of_thumbnails,
                adjuncts_before=before.number_of_stored_adjuncts,
                adjuncts_after=after.number_of_stored_adjuncts,
                adjunct_size_before=before.total_size_of_stored_adjuncts,
                adjunct_size_after=after.total_size_of_stored_adjuncts,
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
            misfiled=report.misfiled,
            uncounted=[u.prefix for u in report.uncounted],
        )


def prune_runs(conn: Connection, before: datetime) -> int:
    """Deletes the runs started before `before`, with their changes, orphans and customer
    results; returns how many runs were deleted."""
    with translated("pruning the run history failed"), conn.transaction():
        return execute(conn, "prune_runs", before=before).rowcount


@dataclass(frozen=True)
class PrunedFigures:
    """What `prune_figures` did: the steps and commits from before `before` it deleted, and
    the steps it kept from before then (the latest of each of `kept_spaces`)."""

    before: datetime
    deleted_steps: int
    deleted_commits: int
    kept_steps: int
    kept_spaces: int


def prune_figures(conn: Connection, before: datetime) -> PrunedFigures:
    """Deletes the figures over time from before `before` that no period from then on needs:
    every step but the latest of each space, and the commits but those of the steps kept."""
    with translated("pruning the figures over time failed"), conn.transaction():
        steps = execute(conn, "prune_steps", before=before).rowcount
        commits = execute(conn, "prune_commits", before=before).rowcount
        kept = execute(conn, "steps_kept", before=before).fetchone()
    assert kept is not None  # an aggregate: always one row
    return PrunedFigures(before, steps, commits, kept[0], kept[1])


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


# Billable bytes: what S3 bills for storage per customer and space, in the job's own table
# storage_calc.billable_storage, never in the platform's.


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


def billable_rows(conn: Connection, customer: int | None) -> list[Billable]:
    """The billable rows of `customer` (None: of every customer), by customer and space."""
    return fetch(conn, "billable_rows", Billable, "the billable bytes", customer=customer)


# Figures over time (storage_calc.space_figures, stepped by write_staged) for `report billing`.


@contextlib.contextmanager
def snapshot(conn: Connection) -> Iterator[None]:
    """A read-only transaction whose statements all see one snapshot of the database."""
    with translated("starting a read-only transaction failed"), conn.transaction():
        execute(conn, "repeatable_read")
        execute(conn, "report_settings")
        yield


def billing_steps(
    conn: Connection, start: datetime, end: datetime, customer: int | None
) -> list[Step]:
    """The steps a period needs: each space's step in force at `start` and those before
    `end`."""
    return fetch(
        conn, "billing_steps", Step, "the figures over time", start=start, end=end,
        customer=customer,
    )  # fmt: skip


def billing_commits(
    conn: Connection, start: datetime, end: datetime, customer: int | None
) -> list[Commit]:
    """The commits of figures from `start` up to `end`."""
    return fetch(
        conn, "billing_commits", Commit, "the commits of figures", start=start, end=end,
        customer=customer,
    )  # fmt: skip


def _hour(moment: datetime) -> int:
    """Hours since the epoch, of a whole hour."""
    return int(moment.timestamp()) // 3600


def billing_totals(
    conn: Connection, period: Period, end: datetime, customer: int | None, classes: bool = True
) -> tuple[list[Totals], dict[int, tuple[int, Gap | None]]]:
    """Every customer's (or one's) byte-hours over `period` up to `end`, summed by the
    database (by storage class too, where `classes`), and each customer's commits in it and
    longest gap (see billing.from_totals)."""
    months = period.months()
    params = {
        "start": period.start, "end": period.end, "customer": customer, "classes": classes,
        "start_h": _hour(period.start), "end_h": _hour(end),
        "month_from": [_hour(a) for a, _, _ in months],
        "month_to": [_hour(b) for _, b, _ in months],
    }  # fmt: skip
    summed = [name for name in FIGURES if name != "stored"]
    with translated("summing the figures over time failed"):
        rows = execute(conn, "billing_totals", **params).fetchall()
        totals = []
        for _, group in itertools.groupby(rows, key=lambda row: row[0]):
            first, *others = group
            months_ = [row for row in (first, *others) if row[5] is not None]
            figures: dict[str, list[int | None]] = {
                name: [None if row[6 + i] is None else int(row[6 + i]) for row in months_]
                for i, name in enumerate(summed)
            }
            figures["stored"] = [
                a + t + j  # type: ignore[operator]  # never None: sums of NOT NULL columns
                for a, t, j in zip(
                    figures["artefacts"], figures["thumbnails"], figures["adjuncts"], strict=True
                )
            ]
            totals.append(
                Totals(
                    customer=first[0], seen_from=first[1], covered_from=first[2],
                    first_figure=first[3], last_figure=first[4],
                    months=[row[5] for row in months_],
                    figures=figures if months_ else {},
                    classes=[
                        None if row[14] is None else {k: int(v) for k, v in row[14].items()}
                        for row in months_
                    ],
                )
            )  # fmt: skip
        seen = execute(
            conn, "billing_gaps", customers=[t.customer for t in totals],
            seen=[t.seen_from for t in totals], start=period.start, end=end, one=customer,
        ).fetchall()  # fmt: skip
    gaps: dict[int, tuple[int, Gap | None]] = {c: (n, Gap(a, b)) for c, n, a, b in seen}
    return totals, gaps
