"""The commands that only read: show, runs, report and serve."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from storage_calc import (
    auth,
    billing,
    billing_formats,
    db,
    jsonld,
    prices,
    reports,
    resources,
    tables,
)
from storage_calc.cli.options import (
    ASSET,
    CUSTOMER,
    EXIT_USAGE,
    Failure,
    ParsedParam,
    api_option,
    command_line_option,
    connected,
    customer_filter,
    database_option,
    json_option,
    option,
    quota_option,
    reported,
    settings_from,
)
from storage_calc.config import parse_age
from storage_calc.keys import INT4_MAX
from storage_calc.model import AssetKey


@click.group("show")
def show() -> None:
    """Print a storage resource as the platform's API documents it."""


def print_resource(resource: dict[str, Any] | None, what: str) -> None:
    if resource is None:
        raise Failure(f"{what} not found")
    click.echo(jsonld.render(resource))


@show.command("customer")
@click.argument("customer", type=CUSTOMER)
@command_line_option(
    "--space",
    type=click.IntRange(0, INT4_MAX),
    help="A space instead of the customer. 0 is the stub space in the platform's current "
    "layout and the customer-level row in the seed layout.",
)
@database_option
@api_option
def show_customer(customer: int, space: int | None, **params: Any) -> None:
    """Print the CustomerStorage of a customer (or of one of its spaces), with the @id the
    platform's API gives it in the database's layout.

    \b
    Examples:
        storage-calc show customer 2
        storage-calc show customer 2 --space 5
    """
    settings = settings_from(params)
    with reported(), db.connect(settings.database_url) as conn:
        resource = resources.customer_storage(conn, customer, space, settings.api_base_url)
    what = f"customer {customer}" + ("" if space is None else f" space {space}")
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
    with reported(), db.connect(settings.database_url) as conn:
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
    with reported(), db.connect(settings.database_url) as conn:
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


@click.command("runs")
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


@click.group("report")
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


@report_group.command("misfiled")
@customer_filter
@json_option
@database_option
def report_misfiled(customer: int | None, as_json: bool, **params: Any) -> None:
    """Show the "Images" rows filed under a customer whose Id names another customer or space
    (such as 22/1/x filed under space 2), found by each customer's latest complete
    computation. They count in no figure until the platform files them where their Id says.

    \b
    Examples:
        storage-calc report misfiled
        storage-calc report misfiled --customer 22 --json
    """
    with connected(params) as conn:
        rows = reports.misfiled_assets(conn, customer)
    print_rows(rows, as_json, "no misfiled assets found")


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


@report_group.command("billable")
@customer_filter
@json_option
@database_option
def report_billable(customer: int | None, as_json: bool, **params: Any) -> None:
    """Show what S3 bills for storage per customer and space, beyond the current objects the
    platform's figures count: current bytes by storage class, billed bytes (minimum sizes of
    the Infrequent Access classes, overhead of the archive classes), noncurrent versions,
    delete markers and unfinished multipart uploads with the oldest one's start. Space
    "none" holds the keys under the customer's prefix outside any space.

    \b
    Examples:
        storage-calc report billable
        storage-calc report billable --customer 2 --json
    """
    with connected(params) as conn:
        rows = reports.billable_storage(conn, customer)
    print_rows(rows, as_json, "no billable bytes recorded")


def _period(
    month: billing.Period | None, start: datetime | None, end: datetime | None
) -> billing.Period:
    """The period of --month, or of --from and --to."""
    if month is not None:
        if start is not None or end is not None:
            raise Failure("give either --month or --from and --to", EXIT_USAGE)
        return month
    if start is None or end is None:
        raise Failure("give --month, or both --from and --to", EXIT_USAGE)
    with reported():
        return billing.Period(start, end)


def _prices(path: Path | None) -> prices.Prices | None:
    if path is None:
        return None
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Failure(f"cannot read the prices file {path}: {exc}", EXIT_USAGE) from exc
    with reported():
        return prices.parse_prices(text, str(path))


@report_group.command("billing")
@command_line_option(
    "--month",
    type=ParsedParam("YYYY-MM", billing.month_period),
    metavar="YYYY-MM",
    help="The calendar month (UTC) to bill, such as 2026-11.",
)
@command_line_option(
    "--from",
    "start",
    type=ParsedParam("TIME", billing.parse_hour),
    metavar="TIME",
    help="Instead of --month: the period's start, a whole hour in UTC (2026-11-03T05).",
)
@command_line_option(
    "--to",
    "end",
    type=ParsedParam("TIME", billing.parse_hour),
    metavar="TIME",
    help="With --from: the period's end (not included), a whole hour in UTC.",
)
@command_line_option("--customer", type=CUSTOMER, help="Only this customer, one row per space.")
@option(
    "--prices",
    "prices_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="A TOML file of prices per GB-month and storage class: adds each row's cost and the "
    "total (README, Billing).",
)
@json_option
@option(
    "--csv", "as_csv", is_flag=True, help="Print CSV for invoicing systems, with exact byte-hours."
)
@database_option
def report_billing(
    month: billing.Period | None,
    start: datetime | None,
    end: datetime | None,
    customer: int | None,
    prices_file: Path | None,
    as_json: bool,
    as_csv: bool,
    **params: Any,
) -> None:
    """Show what each customer stored over a billing period, as AWS bills storage: byte-hours
    over the period divided by the hours of the month, in GB-months of 2^30 bytes, per figure
    (artefacts, thumbnails, adjuncts, their sum `stored`, and the billable figures of
    --billable runs), with the hours covered by figures, the first and last figure used and
    the longest time without a run. With --customer, one row per space.

    \b
    Examples:
        storage-calc report billing --month 2026-11
        storage-calc report billing --from 2026-11-01T00 --to 2026-11-15T00 --customer 7
        storage-calc report billing --month 2026-11 --prices prices.toml --csv > bill.csv
    """
    if as_json and as_csv:
        raise Failure("give either --json or --csv", EXIT_USAGE)
    period = _period(month, start, end)
    priced = _prices(prices_file)
    with connected(params) as conn:
        # The table shows no storage class: only JSON, CSV and prices by class need them.
        classes = as_json or as_csv or (priced is not None and priced.by_class)
        reported_to, usages = reports.billing_usage(conn, period, customer, classes)
    report = billing_formats.report_of(period, reported_to, customer is not None, usages, priced)
    if as_json:
        click.echo(billing_formats.as_json(report))
    elif as_csv:
        click.echo(billing_formats.csv_text(report), nl=False)
    else:
        click.echo(billing_formats.table(report))


@click.command("serve")
@option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@option(
    "--keys-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help='The API keys, for a database without the platform\'s "Customers" table: a line '
    "`CUSTOMER KEY SHA256-OF-SECRET [admin]` each (`storage-calc api-key` makes one).",
)
@option(
    "--api-salt",
    metavar="SALT",
    help='The platform\'s ApiSalt, to check the keys of its "Customers" table. Prefer the '
    "environment variable: a command line is visible to every user of the host.",
)
@command_line_option(
    "--no-auth",
    "public",
    is_flag=True,
    help="Serve every customer's figures to anyone who can reach the port.",
)
@database_option
@api_option
def serve_command(
    host: str, port: int, keys_file: Path | None, api_salt: str | None, public: bool, **params: Any
) -> None:
    """Serve the storage resources over HTTP, read-only, from the same database.

    GET /customers/C/storage, /customers/C/spaces/S/storage,
    /customers/C/spaces/S/images/ID/storage and /storagePolicies/ID return exactly what
    `show` prints; /healthz and /ping check the database. It never writes. Needs the 'api'
    extra.

    Customer paths need HTTP Basic credentials as the platform's API takes them: a key of
    that customer or of an administrator, from the database's "Customers" table (with
    --api-salt) or from --keys-file. The policies and health checks are anonymous. Without
    keys it serves everyone, and refuses to start on an address other than loopback unless
    told --no-auth.

    \b
    Examples:
        STORAGE_CALC_API_SALT=... storage-calc serve --host 0.0.0.0 --api-base-url https://api.example.org
        storage-calc serve --host 0.0.0.0 --keys-file /etc/storage-calc/keys
    """
    try:
        import uvicorn

        from storage_calc.api import MAX_HEADER_BYTES, create_app
    except ImportError as exc:
        raise Failure(
            "serve needs the 'api' extra: pip install 'storage-calc[api]'", EXIT_USAGE
        ) from exc
    settings = settings_from(params)

    def customers_table() -> bool:
        with db.connect(settings.database_url) as conn:
            return auth.has_customers_table(conn)

    with reported():
        keys = auth.choose(customers_table, keys_file, api_salt, public, host)
        app = create_app(settings.database_url, settings.api_base_url, keys)
    if keys is None:
        click.echo(
            f"serving every customer's figures to anyone who reaches {host}:{port}", err=True
        )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )


@click.command("api-key")
@click.argument("customer", type=CUSTOMER)
@command_line_option("--admin", is_flag=True, help="A key that opens every customer's paths.")
def api_key_command(customer: int, admin: bool) -> None:
    """Make a key and secret for `serve --keys-file`: the file's line on stdout, the key and
    secret once on stderr. The file keeps only the secret's SHA-256.

    \b
    Example:
        storage-calc api-key 2 >> /etc/storage-calc/keys
    """
    key, secret, line = auth.new_key(customer, admin)
    click.echo(line)
    click.echo(f"key {key} secret {secret} (shown once)", err=True)
