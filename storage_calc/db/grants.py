"""`storage-calc db grants`: the privileges of the role that runs the job and of the role that
only reads its figures, and nothing more, as statements for the database's owner to run.

The job's role reads the platform's registry (`"Images"`, `"StoragePolicies"`, `"Adjuncts"`
where the layout has it), reads and writes `"ImageStorage"` and `"CustomerStorage"` and the
project's own tables, and only reads the project's record of migrations. The read-only role,
for `serve`, `show`, `runs`, the reports and the dashboards, reads the figures, the policies,
the project's tables, views and record of migrations (for `db status`), and of `"Customers"`
only the columns `serve` checks keys with. Neither may create, alter or drop anything:
`db migrate` runs as the owner, whose default privileges give both roles what later
migrations create.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from storage_calc.db.connection import Connection
from storage_calc.db.reads import fetch

FIGURES = ('"CustomerStorage"', '"ImageStorage"')
REGISTRY = ('"Adjuncts"', '"Images"', '"StoragePolicies"')
CUSTOMERS_COLUMNS = ("Id", "Keys", "Administrator")
NAMES = ("Adjuncts", "Customers", "CustomerStorage", "ImageStorage", "Images", "StoragePolicies")
DEFAULT_JOB_ROLE = "storage_calc_job"
DEFAULT_READ_ROLE = "storage_calc_read"
WRITE = sql.SQL("SELECT, INSERT, UPDATE, DELETE")


@dataclass(frozen=True)
class Targets:
    database: str
    owner: str
    platform: list[str] | None
    tables: list[str] | None
    views: list[str] | None
    sequences: list[str] | None


def _names(names: list[str]) -> sql.Composable:
    # The platform's names come quoted, and qualified where need be, from the catalog.
    return sql.SQL(", ").join(sql.SQL(name) for name in names)


def _own(names: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier("storage_calc", name) for name in names)


def statements(conn: Connection, job_role: str, read_role: str) -> list[str]:
    """The statements granting `job_role` and `read_role` their privileges on the connected
    database, as its tables are now."""
    (found,) = fetch(conn, "grant_targets", Targets, "the grants' tables", platform=list(NAMES))
    job, read = sql.Identifier(job_role), sql.Identifier(read_role)
    database, owner = sql.Identifier(found.database), sql.Identifier(found.owner)
    schema = sql.Identifier("storage_calc")
    platform = found.platform or []
    figures = [t for t in platform if t in FIGURES]
    registry = [t for t in platform if t in REGISTRY]
    policies = [t for t in registry if t == '"StoragePolicies"']
    tables, views = found.tables or [], found.views or []
    grant = sql.SQL("GRANT {} ON {} TO {}")
    composed = [
        grant.format(sql.SQL("CONNECT, TEMPORARY"), sql.SQL("DATABASE {}").format(database), job),
        grant.format(sql.SQL("CONNECT"), sql.SQL("DATABASE {}").format(database), read),
        grant.format(sql.SQL("USAGE"), sql.SQL("SCHEMA {}").format(schema), job),
        grant.format(sql.SQL("USAGE"), sql.SQL("SCHEMA {}").format(schema), read),
    ]
    if registry:
        composed.append(grant.format(sql.SQL("SELECT"), _names(registry), job))
    if figures:
        composed.append(grant.format(WRITE, _names(figures), job))
    if figures or policies:
        composed.append(grant.format(sql.SQL("SELECT"), _names(figures + policies), read))
    if '"Customers"' in platform:
        columns = sql.SQL(", ").join(map(sql.Identifier, CUSTOMERS_COLUMNS))
        composed.append(
            grant.format(sql.SQL("SELECT ({})").format(columns), _names(['"Customers"']), read)
        )
    composed += [grant.format(sql.SQL("SELECT"), _own(["migrations"]), r) for r in (job, read)]
    if tables:
        composed.append(grant.format(WRITE, _own(tables), job))
    if tables or views:
        composed.append(grant.format(sql.SQL("SELECT"), _own(tables + views), read))
    if views:
        composed.append(grant.format(sql.SQL("SELECT"), _own(views), job))
    if found.sequences:
        composed.append(
            grant.format(
                sql.SQL("USAGE, SELECT"), sql.SQL("SEQUENCE {}").format(_own(found.sequences)), job
            )
        )
    default = sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON {} TO {}")
    composed += [
        default.format(owner, schema, WRITE, sql.SQL("TABLES"), job),
        default.format(owner, schema, sql.SQL("USAGE, SELECT"), sql.SQL("SEQUENCES"), job),
        default.format(owner, schema, sql.SQL("SELECT"), sql.SQL("TABLES"), read),
    ]
    return [statement.as_string(conn) + ";" for statement in composed]
