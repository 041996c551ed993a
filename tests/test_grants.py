"""`db grants` on the real PostgreSQL: the job runs under its role, `serve`, `show`, the reports
and the dashboards under the read-only role, and neither role can change the platform's
tables beyond the figures."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from click.testing import Result
from psycopg import sql
from psycopg.conninfo import make_conninfo
from starlette.testclient import TestClient

from storage_calc import auth, db
from storage_calc.api import create_app
from tests.api_keys import SALT, add_customers_table, platform
from tests.conftest import STORAGE, THUMBS
from tests.test_dashboard import PANELS, grafana_macros

_numbers = itertools.count()


@dataclass(frozen=True)
class Roles:
    job: str
    read: str


@pytest.fixture
def roles(database_url: str, conn: psycopg.Connection[Any]) -> Iterator[Roles]:
    """Two new login roles, granted what `db grants` prints, as the owner runs it."""
    suffix = f"{os.getpid()}_{next(_numbers)}"
    names = {"job": f"sc_job_{suffix}", "read": f"sc_read_{suffix}"}
    for name in names.values():
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    urls = {k: make_conninfo(database_url, user=v) for k, v in names.items()}
    try:
        yield Roles(**urls)
    finally:
        for name in names.values():
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def role_of(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url)["user"]  # type: ignore[return-value]


@pytest.fixture
def granted(invoke: Callable[..., Result], roles: Roles, conn: psycopg.Connection[Any]) -> Roles:
    result = invoke(
        "db", "grants", "--job-role", role_of(roles.job), "--read-role", role_of(roles.read)
    )
    assert result.exit_code == 0, result.stderr
    conn.execute(result.stdout)
    return roles


@pytest.fixture
def sample(register: Callable[..., None], put: Callable[..., None]) -> None:
    register("2/5/a", "2/6/b", "3/1/c")
    put(STORAGE, {"2/5/a": 100, "2/6/b": 200, "3/1/c": 300, "2/5/orphan": 7})
    put(THUMBS, {"2/5/a/open/100.jpg": 5})


def test_the_grants_name_every_table_the_job_writes(invoke: Callable[..., Result]) -> None:
    out = invoke("db", "grants").stdout
    assert (
        'GRANT SELECT, INSERT, UPDATE, DELETE ON "CustomerStorage", "ImageStorage" '
        'TO "storage_calc_job";' in out
    )
    assert 'GRANT SELECT ON "Images", "StoragePolicies" TO "storage_calc_job";' in out
    assert 'GRANT SELECT ON "storage_calc"."migrations" TO "storage_calc_job";' in out


def test_role_names_are_quoted_as_identifiers(invoke: Callable[..., Result]) -> None:
    out = invoke("db", "grants", "--job-role", 'job"; DROP TABLE x; --').stdout
    assert 'TO "job""; DROP TABLE x; --";' in out


@pytest.mark.parametrize("args", [[], ["--asset", "2/5/a"], ["--customer", "2"], ["--billable"]])
def test_the_job_runs_under_its_role(
    sample: None,
    granted: Roles,
    invoke: Callable[..., Result],
    conn: psycopg.Connection[Any],
    args: list[str],
) -> None:
    result = invoke("run", *args, "--database-url", granted.job)
    assert result.exit_code == 0, result.stderr
    outcome = conn.execute("SELECT outcome FROM storage_calc.runs").fetchone()
    assert outcome is not None and outcome[0] == "done"


def test_a_dry_run_under_the_jobs_role_prints_the_changes(
    sample: None, granted: Roles, invoke: Callable[..., Result]
) -> None:
    result = invoke("run", "--dry-run", "--database-url", granted.job)
    assert result.exit_code == 0, result.stderr
    changes = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(c["customer"], c["space"]) for c in changes} >= {(2, 5), (2, 6), (3, 1)}


def test_a_run_under_the_jobs_role_writes_the_figures(
    sample: None, granted: Roles, invoke: Callable[..., Result], conn: psycopg.Connection[Any]
) -> None:
    assert invoke("run", "--database-url", granted.job).exit_code == 0
    row = conn.execute(
        'SELECT "TotalSizeOfStoredImages" FROM "CustomerStorage"'
        ' WHERE "Customer" = 2 AND "Space" = 0'
    ).fetchone()
    assert row == (300,)


@pytest.mark.parametrize(
    "statement",
    [
        'ALTER TABLE "Images" ADD COLUMN x int',
        'ALTER TABLE "ImageStorage" ADD COLUMN x int',
        'DROP TABLE "CustomerStorage"',
        'DROP TABLE "Images"',
        'TRUNCATE "ImageStorage"',
        'DELETE FROM "Images"',
        'UPDATE "StoragePolicies" SET "MaximumNumberOfStoredImages" = 0',
        "DROP TABLE storage_calc.runs",
        "DELETE FROM storage_calc.migrations",
        "CREATE TABLE storage_calc.x (a int)",
        "CREATE TABLE public.x (a int)",
    ],
)
def test_the_jobs_role_cannot_change_the_platforms_tables(granted: Roles, statement: str) -> None:
    with psycopg.connect(granted.job, autocommit=True) as job:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            job.execute(statement)


def test_db_migrate_needs_the_owner(granted: Roles, invoke: Callable[..., Result]) -> None:
    result = invoke("db", "migrate", "--database-url", granted.job)
    assert result.exit_code == 1
    assert "permission denied" in result.stderr or "must be owner" in result.stderr


@pytest.fixture
def with_customers(conn: psycopg.Connection[Any]) -> None:
    add_customers_table(conn)


@pytest.mark.parametrize(
    "statement",
    [
        'UPDATE "CustomerStorage" SET "NumberOfStoredImages" = 0',
        'DELETE FROM "ImageStorage"',
        "DELETE FROM storage_calc.runs",
        'SELECT * FROM "Images"',
        'SELECT "Name" FROM "Customers"',
    ],
)
def test_the_read_role_neither_writes_nor_reads_beyond_the_figures(
    with_customers: None, granted: Roles, statement: str
) -> None:
    with psycopg.connect(granted.read, autocommit=True) as read:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            read.execute(statement)


@pytest.fixture
def computed(sample: None, granted: Roles, invoke: Callable[..., Result]) -> Roles:
    """Two runs under the job's role, the second finding a change; customer 2's billable bytes."""
    assert invoke("run", "--billable", "--database-url", granted.job).exit_code == 0
    assert invoke("run", "--database-url", granted.job).exit_code == 0
    return granted


def test_serve_reads_under_the_read_role(with_customers: None, computed: Roles) -> None:
    keys = auth.CustomersTable(SALT)
    with TestClient(create_app(computed.read, "https://api.dlcs.example", keys)) as client:
        for path in (
            "/customers/2/storage",
            "/customers/2/spaces/5/storage",
            "/customers/2/spaces/5/images/a/storage",
        ):
            assert client.get(path, headers=platform("k2a", 2)).status_code == 200, path
        assert client.get("/storagePolicies/default").status_code == 200
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        ["show", "customer", "2"],
        ["show", "asset", "2/5/a"],
        ["show", "policy", "default"],
        ["runs", "--json"],
        ["report", "usage", "--json"],
        ["report", "drift", "--json"],
        ["report", "orphans", "--json"],
        ["report", "misfiled", "--json"],
        ["report", "quota", "--json"],
        ["report", "billable", "--json"],
        ["report", "billing", "--month", f"{datetime.now(UTC):%Y-%m}", "--json"],
        ["db", "status"],
    ],
)
def test_every_reading_command_runs_under_the_read_role(
    computed: Roles, invoke: Callable[..., Result], args: list[str]
) -> None:
    result = invoke(*args, "--database-url", computed.read)
    assert result.exit_code == 0, result.stderr
    assert result.stdout


def test_every_dashboard_query_runs_under_the_read_role(computed: Roles) -> None:
    with psycopg.connect(computed.read, autocommit=True) as read:
        for panel in PANELS:
            for target in panel["targets"]:
                read.execute(grafana_macros(target["rawSql"])).fetchall()


def test_the_read_role_keeps_the_views_db_migrate_makes_again(
    computed: Roles, database_url: str
) -> None:
    with db.connect(database_url) as owner:
        db.migrate(owner)
    with psycopg.connect(computed.read, autocommit=True) as read:
        assert read.execute("SELECT count(*) FROM storage_calc.customer_usage").fetchone() != (0,)


def test_db_prune_runs_under_the_jobs_role(computed: Roles, invoke: Callable[..., Result]) -> None:
    result = invoke("db", "prune", "--older-than", "0h", "--database-url", computed.job)
    assert (result.exit_code, result.stderr.split()[:2]) == (0, ["deleted", "2"])
