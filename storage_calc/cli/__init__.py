"""The `storage-calc` command: a thin shell over the library.

Only this package knows about click and exit codes: 0 done, 1 a scope failed (or not found),
2 bad usage or configuration, 75 every requested scope was locked by another run. The group
and the `db` commands are here; `compute` holds run, schedule and demo, `read` the commands
that only read, and `options` what they share.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click

from storage_calc import billing, db, logs, tables
from storage_calc.cli import compute, read
from storage_calc.cli.options import EXIT_FAILED, ParsedParam, connected, database_option, option
from storage_calc.config import parse_age
from storage_calc.db import grants


class OneLineErrors(click.Group):
    """Reports every error, usage errors included, as one `Error: ...` line on stderr."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Error: interrupted", err=True)
            sys.exit(EXIT_FAILED)
        except Exception as exc:
            # A bug, or a failure no check foresaw: still one line, never a traceback.
            click.echo(f"Error: unexpected {type(exc).__name__}: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="storage-calc")
def cli() -> None:
    """Recompute the storage figures of a digital asset platform from its S3 listings.

    Options that describe the installation (database, buckets, workers, API base URL, quota
    margin, metrics, schedule) can also be set with an environment variable
    STORAGE_CALC_<OPTION>, shown in each command's --help. Options that choose what a command
    covers or make a run write nothing (--customer, --space, --asset, --shard, --shards,
    --dry-run) are marked "command line only": a variable left in an environment file must
    never narrow or disable a nightly run. S3 endpoint, region and credentials come from
    boto3's own configuration (AWS_ENDPOINT_URL_S3, AWS_PROFILE, ...).
    """
    logs.configure()


@cli.group("db")
def db_group() -> None:
    """Manage the database schema."""


@db_group.command("migrate")
@option(
    "--platform-schema",
    type=click.Choice(list(db.PLATFORM_SCHEMAS)),
    default="seed",
    show_default=True,
    help="The layout of the platform's tables to create where none of them exists: seed "
    "(customer row at space 0) or current (customer row at a NULL space, stub space 0, "
    "adjunct columns). Existing platform tables are never altered.",
)
@database_option
def migrate(platform_schema: str, **params: Any) -> None:
    """Create the platform's tables where none exists, and create or upgrade the project's own
    schema (storage_calc), saying what it applied. Idempotent; drops and rewrites no data, and
    alters no platform table that exists.

    \b
    Examples:
        storage-calc db migrate --database-url postgresql://calc@db/platform
        storage-calc db migrate --platform-schema current
    """
    with connected(params) as conn:
        migrated = db.migrate(conn, platform_schema)
        layout = db.detect_layout(conn)
    if migrated.platform_created:
        click.echo(f"created the platform's tables, {migrated.platform_created} layout", err=True)
    for migration in migrated.applied:
        click.echo(f"applied storage_calc {migration.version:04d}_{migration.name}", err=True)
    click.echo(
        f"schema is up to date; the platform's tables have the {layout.name} layout", err=True
    )


@db_group.command("status")
@database_option
def status(**params: Any) -> None:
    """Print the layout of the platform's tables as the job reads it, the version of the
    project's schema and what `db migrate` would do. Changes nothing.

    \b
    Example:
        storage-calc db status
    """
    with connected(params) as conn:
        found = db.schema_status(conn)
    for line in tables.schema_status(found, db.migrations()):
        click.echo(line)


@db_group.command("grants")
@option(
    "--job-role",
    default=grants.DEFAULT_JOB_ROLE,
    show_default=True,
    metavar="ROLE",
    help="The role that runs `run` and `schedule`.",
)
@option(
    "--read-role",
    default=grants.DEFAULT_READ_ROLE,
    show_default=True,
    metavar="ROLE",
    help="The role that only reads: serve, show, runs, report and the dashboards.",
)
@database_option
def grants_command(job_role: str, read_role: str, **params: Any) -> None:
    """Print the GRANT statements giving the job's role and the read-only role what they
    need on this database and nothing more. Run them as the owner, after `db migrate`; the
    roles must exist. Changes nothing.

    \b
    Example:
        storage-calc db grants | psql "$OWNER_DATABASE_URL"
    """
    with connected(params) as conn:
        lines = grants.statements(conn, job_role, read_role)
    for line in lines:
        click.echo(line)


@db_group.command("prune")
@option(
    "--older-than",
    required=True,
    metavar="AGE",
    type=ParsedParam("AGE", parse_age),
    help="Delete the runs started longer ago than this, and the figures over time that no "
    "month still open needs: a number and h, d or w, such as 90d.",
)
@database_option
def prune(older_than: timedelta, **params: Any) -> None:
    """Delete old run history: runs, with the changes, orphans and customer results they
    recorded; and the figures over time from before the same age, but those a month not yet
    closed needs (all of the current month's, and each space's latest step from before it)
    and each space's latest step, which later periods start from. The platform's figures are
    never touched.

    \b
    Example:
        storage-calc db prune --older-than 90d
    """
    with connected(params) as conn:
        now = db.server_now(conn)
        before = now - older_than
        deleted = db.prune_runs(conn, before)
        open_month = billing.month_start(now)
        figures = db.prune_figures(conn, min(before, open_month))
    click.echo(f"deleted {deleted} runs started before {tables.format_time(before)} UTC", err=True)
    for line in tables.pruned_figures(figures, open_month):
        click.echo(line, err=True)


for command in (
    compute.run_command,
    compute.schedule_command,
    read.show,
    read.runs_command,
    read.report_group,
    read.serve_command,
    read.api_key_command,
    compute.demo_command,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="storage-calc")
