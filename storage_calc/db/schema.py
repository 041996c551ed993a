"""The schema: the platform's tables and their layout, and the project's own versions
(`db migrate`, `db status`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from storage_calc.db.connection import (
    Connection,
    execute,
    sql_file,
    translated,
)
from storage_calc.errors import ConfigError
from storage_calc.layouts import UniqueKey, read_layout
from storage_calc.model import Layout, Migration, SchemaStatus

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


def migration_sql(migration: Migration) -> str:
    """The statements of a version of the project's schema."""
    return sql_file(f"migrations/{migration.version:04d}_{migration.name}.sql")


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
            conn.execute(migration_sql(migration))
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
    return SchemaStatus(
        platform_tables=present,
        layout=layout,
        layout_error=layout_error,
        has_schema=has_schema,
        applied=applied,
        pending=pending,
    )
