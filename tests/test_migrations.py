"""The project's own schema has versions: a database made by any earlier release upgrades in
order to what a fresh `db migrate` makes, and says what it applied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from storage_calc import db
from tests.databases import created_database

Conn = psycopg.Connection[Any]
FIXTURES = Path(__file__).parent / "fixtures"

# The storage_calc schema as the catalog describes it: tables' columns, indexes, views' text.
SCHEMA = """
SELECT 'column', c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'storage_calc'::regnamespace AND c.relkind IN ('r', 'v')
  AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'storage_calc'
UNION ALL
SELECT 'view', viewname || ': ' || definition FROM pg_views WHERE schemaname = 'storage_calc'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'storage_calc'::regnamespace
ORDER BY 1, 2
"""


def schema(conn: Conn) -> list[tuple[str, str]]:
    return conn.execute(SCHEMA).fetchall()


@pytest.fixture
def empty_url(server_url: str) -> Iterator[str]:
    with created_database(server_url) as url:
        yield url


@pytest.mark.parametrize(
    "release", ["schema_first_release.sql", "schema_before_versions.sql"], ids=["first", "last"]
)
def test_a_database_of_an_earlier_release_upgrades_to_what_a_fresh_migrate_makes(
    release: str, empty_url: str, conn: Conn
) -> None:
    with db.connect(empty_url) as old:
        old.execute((FIXTURES / release).read_text())
        migrated = db.migrate(old)
        assert [m.version for m in migrated.applied] == [m.version for m in db.migrations()]
        assert migrated.platform_created is None
        assert schema(old) == schema(conn)


def test_the_history_of_an_earlier_release_keeps_its_customer_rows_as_a_null_space(
    empty_url: str,
) -> None:
    with db.connect(empty_url) as old:
        old.execute((FIXTURES / "schema_first_release.sql").read_text())
        old.execute("INSERT INTO storage_calc.runs (scope) VALUES ('all')")
        old.execute(
            "INSERT INTO storage_calc.changes VALUES (1, 2, 0, 0, 1, 0, 10, 0, 0),"
            " (1, 2, 5, 0, 1, 0, 10, 0, 0)"
        )
        db.migrate(old)
        assert old.execute(
            "SELECT space, size_after FROM storage_calc.changes ORDER BY space NULLS FIRST"
        ).fetchall() == [(None, 10), (5, 10)]


def test_migrate_applies_each_version_once(conn: Conn) -> None:
    assert db.migrate(conn).applied == ()
    assert [row[0] for row in conn.execute("SELECT version FROM storage_calc.migrations")] == [
        m.version for m in db.migrations()
    ]


def test_the_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in db.migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_the_migrations_lock_is_not_customer_zeros(database_url: str, conn: Conn) -> None:
    conn.execute("SELECT pg_advisory_lock(%s, 0)", (db.LOCK_NAMESPACE,))
    with db.connect(database_url) as other:
        other.execute("SET lock_timeout = '5s'")
        assert db.migrate(other).applied == ()
