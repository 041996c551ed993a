"""The `storage-calc` command: a thin shell over the library.

Only this module knows about click and exit codes: 0 done, 1 a scope failed (or not found),
2 bad usage or configuration, 75 every requested scope was locked by another run.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import click

from storage_calc import calculator, db, embedded, jsonld, logs, reports, resources, tables
from storage_calc.config import (
    DEFAULT_API_BASE_URL,
    DEFAULT_CRON,
    DEFAULT_QUOTA_MARGIN,
    DEFAULT_STORAGE_BUCKET,
    DEFAULT_THUMBS_BUCKET,
    DEFAULT_TIMEZONE,
    DEFAULT_WORKERS,
    Settings,
    indexed_shard,
    parse_age,
    parse_base_url,
    parse_location,
    parse_margin,
    parse_shard,
)
from storage_calc.errors import ConfigError, StorageCalcError
from storage_calc.keys import INT4_MAX, parse_asset_id
from storage_calc.listing import make_s3_client
from storage_calc.model import AssetKey, LocationKind, Outcome, RunReport, Scope, Shard
from storage_calc.progress import RunProgress, live_line
from storage_calc.stopping import stop_on_signals

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75

CUSTOMER = click.IntRange(0, INT4_MAX)
SPACE = click.IntRange(1, INT4_MAX)


class Failure(click.ClickException):
    """One `Error: ...` line on stderr and the contract's exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Library errors become one line on stderr: configuration errors exit 2, the rest 1."""
    try:
        yield
    except ConfigError as exc:
        raise Failure(str(exc), EXIT_USAGE) from exc
    except StorageCalcError as exc:
        raise Failure(str(exc)) from exc


class ParsedParam(click.ParamType):
    """A ParamType over one of the library's parsers, failing with exit 2 on a ConfigError."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


def _parse_asset(text: str) -> AssetKey:
    key = parse_asset_id(text)
    if key is None:
        raise ConfigError(
            f"{text!r} is not an asset id: expected CUSTOMER/SPACE/ID, such as 2/5/my-asset"
        )
    return key


ASSET = ParsedParam("C/S/ID", _parse_asset)
SHARD = ParsedParam("I/N", parse_shard)


def option(*decls: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option that can also come from STORAGE_CALC_<NAME>, shown in --help."""
    name = max(decls, key=len).lstrip("-").split("/")[0].upper().replace("-", "_")
    return click.option(*decls, envvar=f"STORAGE_CALC_{name}", show_envvar=True, **kwargs)


def together(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The decorators applied in the order they are listed, as if stacked above a function."""

    def apply(f: Any) -> Any:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


database_option = option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL connection URL. Unset: an embedded PostgreSQL in a per-user data "
    "directory, started on demand.",
)
api_option = option(
    "--api-base-url",
    default=DEFAULT_API_BASE_URL,
    show_default=True,
    metavar="URL",
    type=ParsedParam("URL", parse_base_url),
    help="Base of the resources' @id and @context.",
)


def location_option(name: str, default: str, kind: LocationKind, what: str) -> Any:
    return option(
        name,
        default=default,
        show_default=True,
        metavar="BUCKET[/PREFIX/]",
        type=ParsedParam("BUCKET[/PREFIX/]", lambda text: parse_location(text, kind)),
        help=f"Where the {what} are.",
    )


s3_options = together(
    location_option("--storage-bucket", DEFAULT_STORAGE_BUCKET, LocationKind.ARTEFACT, "artefacts"),
    location_option("--thumbs-bucket", DEFAULT_THUMBS_BUCKET, LocationKind.THUMBNAIL, "thumbnails"),
    option(
        "--workers",
        default=DEFAULT_WORKERS,
        show_default=True,
        type=click.IntRange(1, 256),
        help="Prefixes listed at once.",
    ),
)
shard_options = together(
    option("--shard", type=SHARD, metavar="I/N", help="Only customers whose id modulo N is I."),
    option(
        "--shards",
        type=click.IntRange(1),
        metavar="N",
        help="Only customers whose id modulo N is JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs).",
    ),
)


quota_option = option(
    "--quota-margin",
    default=str(DEFAULT_QUOTA_MARGIN),
    show_default=True,
    metavar="PERCENT",
    type=ParsedParam("PERCENT", parse_margin),
    help="Customers using at least this percentage of a limit of their storage policy are "
    "reported.",
)
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="STORAGE_CALC_JSON",
    show_envvar=True,
    help="Print JSON for scripts, with exact bytes.",
)
customer_filter = option("--customer", type=CUSTOMER, help="Only this customer.")


def settings_from(params: dict[str, Any]) -> Settings:
    locations = tuple(params[k] for k in ("storage_bucket", "thumbs_bucket") if k in params)
    return Settings(
        database_url=params.get("database_url"),
        **({"locations": locations} if locations else {}),
        api_base_url=params.get("api_base_url", DEFAULT_API_BASE_URL),
        workers=params.get("workers", DEFAULT_WORKERS),
        quota_margin=params.get("quota_margin", DEFAULT_QUOTA_MARGIN),
    )


def database_url(settings: Settings) -> str:
    return settings.database_url or embedded.start()


@contextlib.contextmanager
def connected(params: dict[str, Any]) -> Iterator[db.Connection]:
    """A connection to the configured database; library errors in the block become one line."""
    with reported(), db.connect(database_url(settings_from(params))) as conn:
        yield conn


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
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="storage-calc")
def cli() -> None:
    """Recompute the storage figures of a digital asset platform from its S3 listings.

    Every option can also be set with an environment variable STORAGE_CALC_<OPTION>. S3
    endpoint, region and credentials come from boto3's own configuration (AWS_ENDPOINT_URL_S3,
    AWS_PROFILE, ...).
    """
    logs.configure()


@cli.group("db")
def db_group() -> None:
    """Manage the database schema."""


@db_group.command("migrate")
@database_option
def migrate(**params: Any) -> None:
    """Create whatever tables, indexes and policies are missing. Idempotent; drops nothing.

    \b
    Example:
        storage-calc db migrate --database-url postgresql://calc@db/platform
    """
    with connected(params) as conn:
        db.migrate(conn)
    click.echo("schema is up to date", err=True)


@db_group.command("prune")
@option(
    "--older-than",
    required=True,
    metavar="AGE",
    type=ParsedParam("AGE", parse_age),
    help="Delete the runs started longer ago than this: a number and h, d or w, such as 90d.",
)
@database_option
def prune(older_than: timedelta, **params: Any) -> None:
    """Delete old run history: runs, with the changes, orphans and customer results they
    recorded. The figures themselves are never touched.

    \b
    Example:
        storage-calc db prune --older-than 90d
    """
    with connected(params) as conn:
        before = db.server_now(conn) - older_than
        deleted = db.prune_runs(conn, before)
    click.echo(f"deleted {deleted} runs started before {tables.format_time(before)} UTC", err=True)


@cli.command("run")
@option("--customer", type=CUSTOMER, help="Only this customer.")
@option("--space", type=SPACE, help="Only this space of --customer.")
@option(
    "--asset",
    type=ASSET,
    metavar="C/S/ID",
    help="Only this asset; its space and customer totals are refreshed.",
)
@shard_options
@option(
    "--dry-run",
    is_flag=True,
    help="Compute and print what would change as JSON lines; write nothing.",
)
@option(
    "--pushgateway",
    metavar="URL",
    type=ParsedParam("URL", parse_base_url),
    help="Push the run's metrics to this Prometheus Pushgateway when it ends.",
)
@quota_option
@database_option
@s3_options
def run_command(
    customer: int | None,
    space: int | None,
    asset: AssetKey | None,
    shard: Shard | None,
    shards: int | None,
    dry_run: bool,
    pushgateway: str | None,
    **params: Any,
) -> None:
    """Compute the figures of every customer, or of one customer, space or asset.

    Exits 0 when done, 1 when any customer failed (each named on stderr), 2 on bad usage and
    75 when every requested customer was locked by another run. SIGTERM or SIGINT stops the
    run between two listed pages: the customer in progress keeps its previous figures, the run
    is recorded as interrupted and the exit is 1.

    On a terminal a progress line shows customers done, objects listed, the listing rate and
    the time taken; elsewhere only the JSON log events are written. Customers within
    --quota-margin of a limit of their storage policy are logged as warnings. A push to
    --pushgateway that fails is logged and does not change the exit code.

    \b
    Examples:
        storage-calc run
        storage-calc run --customer 2 --space 5 --dry-run
        storage-calc run --asset 2/5/my-asset
        storage-calc run --shard 0/4
        JOB_COMPLETION_INDEX=3 storage-calc run --shards 8
        storage-calc run --pushgateway http://pushgateway:9091
    """
    shard = shard_of(shard, shards)
    scope = scope_of(customer, space, asset, shard)
    settings = settings_from(params)
    progress = RunProgress()
    with (
        reported(),
        stop_on_signals() as stop,
        live_line(sys.stderr, progress) as log_stream,
    ):
        logs.configure(log_stream)
        s3 = make_s3_client(settings.workers)
        url = database_url(settings)
        report = calculator.run(settings, url, s3, scope, shard, dry_run, stop, progress)
    if pushgateway is not None:
        from storage_calc import metrics  # here: prometheus_client only slows other runs

        metrics.push(pushgateway, report)
    if dry_run:
        for change in report.changes:
            click.echo(json.dumps(change.as_json()))
    exit_with(report)


def shard_of(shard: Shard | None, shards: int | None) -> Shard | None:
    if shards is None:
        return shard
    if shard is not None:
        raise click.UsageError("use either --shard or --shards")
    with reported():
        return indexed_shard(os.environ.get("JOB_COMPLETION_INDEX"), shards)


def scope_of(
    customer: int | None, space: int | None, asset: AssetKey | None, shard: Shard | None
) -> Scope:
    if asset is not None and (customer is not None or space is not None):
        raise click.UsageError("--asset cannot be combined with --customer or --space")
    if space is not None and customer is None:
        raise click.UsageError("--space needs --customer")
    if shard is not None and (customer is not None or asset is not None):
        raise click.UsageError("--shard applies to runs over all customers only")
    return Scope(customer, space, asset)


def exit_with(report: RunReport) -> None:
    failed = report.with_outcome(Outcome.FAILED)
    for result in failed:
        click.echo(f"Error: customer {result.customer}: {result.error}", err=True)
    if report.interrupted:
        raise Failure("interrupted: customers not computed keep their previous figures")
    if report.error:
        raise Failure(report.error)
    if failed:
        raise Failure(f"{len(failed)} of {len(report.customers)} customers failed")
    if report.outcome == "locked":
        raise Failure("every requested customer is being computed by another run", EXIT_LOCKED)


@cli.command("schedule")
@option(
    "--cron",
    default=DEFAULT_CRON,
    show_default=True,
    help="When to run, as a five-field crontab expression.",
)
@option(
    "--timezone",
    default=DEFAULT_TIMEZONE,
    show_default=True,
    help="The time zone of --cron.",
)
@option("--run-now", is_flag=True, help="Also run once at start.")
@option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Serve Prometheus metrics of the runs at http://0.0.0.0:PORT/metrics.",
)
@shard_options
@quota_option
@database_option
@s3_options
def schedule_command(
    cron: str,
    timezone: str,
    run_now: bool,
    metrics_port: int | None,
    shard: Shard | None,
    shards: int | None,
    **params: Any,
) -> None:
    """Run every customer on a schedule, in one long-running process.

    Never starts a run while the previous one is going; fires missed while the process was busy
    are folded into one. A failed run is logged and recorded, and the next fire is waited for.
    SIGTERM or SIGINT stops a run in progress between two listed pages and exits 0.

    \b
    Examples:
        storage-calc schedule
        storage-calc schedule --cron '30 1 * * *' --timezone Europe/London --run-now
        storage-calc schedule --metrics-port 9100
    """
    from storage_calc import scheduler  # here: APScheduler only slows every other command
    from storage_calc.metrics import ScheduleMetrics

    shard = shard_of(shard, shards)
    settings = settings_from(params)
    with reported(), stop_on_signals() as stop:
        trigger = scheduler.cron_trigger(cron, timezone)
        url = database_url(settings)
        s3 = make_s3_client(settings.workers)
        metrics = None
        if metrics_port is not None:
            metrics = ScheduleMetrics()
            metrics.serve(metrics_port, "0.0.0.0")
        scheduler.serve(
            scheduler.build_scheduler(settings, url, s3, trigger, shard, run_now, stop, metrics),
            stop,
        )


@cli.group("show")
def show() -> None:
    """Print a storage resource as the platform's API documents it."""


def print_resource(resource: dict[str, Any] | None, what: str) -> None:
    if resource is None:
        raise Failure(f"{what} not found")
    click.echo(jsonld.render(resource))


@show.command("customer")
@click.argument("customer", type=CUSTOMER)
@option("--space", type=click.IntRange(0, INT4_MAX), default=0, help="A space; 0 is the customer.")
@database_option
@api_option
def show_customer(customer: int, space: int, **params: Any) -> None:
    """Print the CustomerStorage of a customer (or of one of its spaces).

    \b
    Example:
        storage-calc show customer 2 --space 5
    """
    settings = settings_from(params)
    with reported(), db.connect(database_url(settings)) as conn:
        resource = resources.customer_storage(conn, customer, space, settings.api_base_url)
    what = f"customer {customer}" + (f" space {space}" if space else "")
    print_resource(resource, f"storage figures of {what}")


@show.command("asset")
@click.argument("asset", type=ASSET, metavar="C/S/ID")
@database_option
@api_option
def show_asset(asset: AssetKey, **params: Any) -> None:
    """Print the ImageStorage of an asset.

    \b
    Example:
        storage-calc show asset 2/5/my-asset
    """
    settings = settings_from(params)
    with reported(), db.connect(database_url(settings)) as conn:
        resource = resources.image_storage(
            conn, asset.customer, asset.space, asset.asset, settings.api_base_url
        )
    print_resource(resource, f"storage figures of asset {asset.id}")


@show.command("policy")
@click.argument("policy")
@database_option
@api_option
def show_policy(policy: str, **params: Any) -> None:
    """Print a StoragePolicy.

    \b
    Example:
        storage-calc show policy default
    """
    settings = settings_from(params)
    with reported(), db.connect(database_url(settings)) as conn:
        resource = resources.storage_policy(conn, policy, settings.api_base_url)
    print_resource(resource, f"storage policy {policy!r}")


def print_rows(rows: list[Any], as_json: bool, empty: str) -> None:
    """Rows as a table (or `empty` when there are none), or as one JSON array."""
    if as_json:
        click.echo(json.dumps([reports.as_json(row) for row in rows]))
    elif rows:
        click.echo(tables.render(tables.COLUMNS[type(rows[0])], rows))
    else:
        click.echo(empty)


@cli.command("runs")
@option("--limit", default=20, show_default=True, type=click.IntRange(1), help="How many runs.")
@json_option
@database_option
def runs_command(limit: int, as_json: bool, **params: Any) -> None:
    """List the latest runs, newest first: scope, outcome, customers, objects, bytes, orphans.

    \b
    Examples:
        storage-calc runs
        storage-calc runs --limit 1 --json | jq '.[0].outcome'
    """
    with connected(params) as conn:
        rows = reports.recent_runs(conn, limit)
    print_rows(rows, as_json, "no runs recorded yet")


@cli.group("report")
def report_group() -> None:
    """Report what the figures and the run history say. Sizes are shown in binary units
    (KiB, MiB, GiB); --json gives exact bytes."""


@report_group.command("usage")
@customer_filter
@option("--limit", default=10, show_default=True, type=click.IntRange(1), help="Rows per table.")
@json_option
@database_option
def report_usage(customer: int | None, limit: int, as_json: bool, **params: Any) -> None:
    """Show the customers and the spaces storing the most, with the customers' policy limits.

    \b
    Examples:
        storage-calc report usage
        storage-calc report usage --customer 2 --json
    """
    with connected(params) as conn:
        customers = reports.customer_usage(conn, customer, limit)
        spaces = reports.space_usage(conn, customer, limit)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "customers": [reports.as_json(row) for row in customers],
                    "spaces": [reports.as_json(row) for row in spaces],
                }
            )
        )
        return
    print_rows(customers, False, "no customer has figures yet")
    click.echo()
    print_rows(spaces, False, "no space has figures yet")


@report_group.command("drift")
@option(
    "--since",
    default="1d",
    show_default=True,
    metavar="AGE",
    type=ParsedParam("AGE", parse_age),
    help="Runs started within this age: a number and h, d or w.",
)
@customer_filter
@json_option
@database_option
def report_drift(since: timedelta, customer: int | None, as_json: bool, **params: Any) -> None:
    """Show how the runs of a period changed the stored figures: per customer (and, with
    --customer, per space) the figures before the first change and after the last, and the
    bytes the runs corrected (the sum of each run's absolute change).

    \b
    Examples:
        storage-calc report drift
        storage-calc report drift --since 7d --customer 2
    """
    with connected(params) as conn:
        rows = reports.drift_since(conn, db.server_now(conn) - since, customer)
    print_rows(rows, as_json, "no figures changed in that period")


@report_group.command("orphans")
@customer_filter
@json_option
@database_option
def report_orphans(customer: int | None, as_json: bool, **params: Any) -> None:
    """Show the objects of unregistered assets found by each customer's latest complete
    computation: per customer, or per space with example keys for one customer.

    \b
    Examples:
        storage-calc report orphans
        storage-calc report orphans --customer 2
    """
    with connected(params) as conn:
        rows: list[Any] = (
            reports.customer_orphans(conn)
            if customer is None
            else reports.space_orphans(conn, customer)
        )
    print_rows(rows, as_json, "no orphans found")


@report_group.command("quota")
@quota_option
@json_option
@database_option
def report_quota(quota_margin: Decimal, as_json: bool, **params: Any) -> None:
    """List the customers at or beyond --quota-margin of a limit of their storage policy
    (number of images or bytes stored): `over` past the limit, `near` otherwise.

    \b
    Examples:
        storage-calc report quota
        storage-calc report quota --quota-margin 75 --json
    """
    with connected(params) as conn:
        rows = reports.quota_use(conn, quota_margin)
    print_rows(rows, as_json, f"no customer uses {quota_margin}% or more of a policy limit")


@cli.command("serve")
@option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@database_option
@api_option
def serve_command(host: str, port: int, **params: Any) -> None:
    """Serve the storage resources over HTTP, read-only, from the same database.

    GET /customers/C/storage, /customers/C/spaces/S/storage,
    /customers/C/spaces/S/images/ID/storage and /storagePolicies/ID return exactly what
    `show` prints; /healthz checks the database. It never writes. Needs the 'api' extra.

    \b
    Example:
        storage-calc serve --port 8080 --api-base-url https://api.example.org
    """
    try:
        import uvicorn

        from storage_calc.api import create_app
    except ImportError as exc:
        raise Failure(
            "serve needs the 'api' extra: pip install 'storage-calc[api]'", EXIT_USAGE
        ) from exc
    settings = settings_from(params)
    with reported():
        app = create_app(database_url(settings), settings.api_base_url)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@cli.command("demo")
@database_option
@api_option
@s3_options
def demo_command(**params: Any) -> None:
    """Run the whole job on embedded services and print what it computed.

    Starts a local S3 endpoint on 127.0.0.1 with a small sample (customer 2, spaces 5 and 7),
    registers the sample's assets, runs the calculator over HTTP and prints the customer, space
    and asset resources. The figures stay in the database, so `storage-calc show customer 2`
    works afterwards; the S3 endpoint stops when the demo ends.
    """
    from storage_calc import demo

    settings = settings_from(params)
    with reported():
        report, resources = demo.run_demo(settings, database_url(settings))
    for resource in resources:
        click.echo(jsonld.render(resource))
    exit_with(report)


def main() -> None:
    cli(prog_name="storage-calc")
