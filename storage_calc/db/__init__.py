"""PostgreSQL: the only package that imports psycopg. Statements live in sql/*.sql.

Split along its callers' lines: `connection` (statements by name, connecting, errors),
`schema` (`db migrate`, `db status`, the layout), `sessions` (locks, flags and the run's
connections), `registry` (reads of `"Images"`), `figures` (staging and writing the figures),
`history` (the run history and its pruning), `billing` (the figures over time for `report
billing`), `reads` (`show`, `serve` and the reports) and `ingest` (assets
registered as the platform registers them, for the demo, tests and benchmarks). Callers use
the names below, `db.connect`, `db.write_staged` and so on; `pool` (the API's connections) is
imported by the API alone, since psycopg_pool comes with the `api` extra.
"""

from __future__ import annotations

from storage_calc.db.billing import (
    billing_commits,
    billing_steps,
    billing_totals,
    snapshot,
)
from storage_calc.db.connection import (
    CONNECT_TIMEOUT_S,
    SESSION_ENDED,
    STATEMENT_TIMEOUT_MS,
    Connection,
    backend_pid,
    connect,
    connection_options,
    execute,
    lost,
    queries,
    query,
    server_now,
    sql_file,
    translated,
)
from storage_calc.db.figures import (
    COPY_CHUNK,
    clear_staging,
    insert_image_storage,
    stage_csv,
    stage_figures,
    start_staging,
    step_figures,
    write_billable,
    write_staged,
)
from storage_calc.db.history import (
    finish_run,
    prune_figures,
    prune_runs,
    record_customer,
    start_run,
)
from storage_calc.db.ingest import (
    register_assets,
    registered,
)
from storage_calc.db.reads import (
    customer_storage,
    fetch,
    image_storage,
    storage_policy,
)
from storage_calc.db.registry import (
    all_customers,
    asset_counts,
    export_registry,
    misfiled,
    read_registry,
    stream_registry,
)
from storage_calc.db.schema import (
    CURRENT,
    MIGRATION_LOCK_NAMESPACE,
    PLATFORM_SCHEMAS,
    PLATFORM_TABLES,
    SEED,
    WITH_ADJUNCTS,
    Migrated,
    detect_layout,
    migrate,
    migration_sql,
    migrations,
    platform_tables,
    schema_status,
)
from storage_calc.db.sessions import (
    COMMIT_LOCK_NAMESPACE,
    LOCK_NAMESPACE,
    RUN_LOCK_NAMESPACE,
    Connections,
    Database,
    Flagged,
    lock_run,
    set_in_progress,
    try_lock_customer,
    unlock_customer,
)

__all__ = [
    "COMMIT_LOCK_NAMESPACE",
    "CONNECT_TIMEOUT_S",
    "COPY_CHUNK",
    "CURRENT",
    "LOCK_NAMESPACE",
    "MIGRATION_LOCK_NAMESPACE",
    "PLATFORM_SCHEMAS",
    "PLATFORM_TABLES",
    "RUN_LOCK_NAMESPACE",
    "SEED",
    "SESSION_ENDED",
    "STATEMENT_TIMEOUT_MS",
    "WITH_ADJUNCTS",
    "Connection",
    "Connections",
    "Database",
    "Flagged",
    "Migrated",
    "all_customers",
    "asset_counts",
    "backend_pid",
    "billing_commits",
    "billing_steps",
    "billing_totals",
    "clear_staging",
    "connect",
    "connection_options",
    "customer_storage",
    "detect_layout",
    "execute",
    "export_registry",
    "fetch",
    "finish_run",
    "image_storage",
    "insert_image_storage",
    "lock_run",
    "lost",
    "migrate",
    "migration_sql",
    "migrations",
    "misfiled",
    "platform_tables",
    "prune_figures",
    "prune_runs",
    "queries",
    "query",
    "read_registry",
    "record_customer",
    "register_assets",
    "registered",
    "schema_status",
    "server_now",
    "set_in_progress",
    "snapshot",
    "sql_file",
    "stage_csv",
    "stage_figures",
    "start_run",
    "start_staging",
    "step_figures",
    "storage_policy",
    "stream_registry",
    "translated",
    "try_lock_customer",
    "unlock_customer",
    "write_billable",
    "write_staged",
]
