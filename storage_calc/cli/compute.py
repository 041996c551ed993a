"""The commands that compute figures: run, schedule and demo."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from storage_calc import calculator, jsonld, logs, quota
from storage_calc.cli.options import (
    ASSET,
    CUSTOMER,
    EXIT_LOCKED,
    SPACE,
    Failure,
    ParsedParam,
    api_option,
    command_line_option,
    database_option,
    option,
    quota_option,
    reported,
    s3_options,
    settings_from,
    shard_options,
    source_options,
)
from storage_calc.config import DEFAULT_CRON, DEFAULT_TIMEZONE, indexed_shard, parse_base_url
from storage_calc.model import AssetKey, Outcome, RunReport, Scope, Shard
from storage_calc.progress import RunProgress, live_line
from storage_calc.sources.listing import make_s3_client
from storage_calc.stopping import stop_on_signals


@click.command("run")
@command_line_option("--customer", type=CUSTOMER, help="Only this customer.")
@command_line_option("--space", type=SPACE, help="Only this space of --customer.")
@command_line_option(
    "--asset",
    type=ASSET,
    metavar="C/S/ID",
    help="Only this asset; its space and customer totals are refreshed.",
)
@shard_options
@command_line_option(
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
@source_options
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
        report = calculator.run(settings, s3, scope, shard, dry_run, stop, progress)
        quota.warn(settings, report)
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
    if report.uncounted_error:
        raise Failure(report.uncounted_error)
    if report.outcome == "locked":
        raise Failure("every requested customer is being computed by another run", EXIT_LOCKED)


@click.command("schedule")
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
    help="Serve Prometheus metrics of the runs at http://HOST:PORT/metrics, HOST being "
    "--metrics-host.",
)
@option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    metavar="HOST",
    help="Address the metrics of --metrics-port are served on; 0.0.0.0 lets Prometheus "
    "scrape them from another host, 127.0.0.1 keeps them to this one.",
)
@shard_options
@quota_option
@database_option
@s3_options
@source_options
def schedule_command(
    cron: str,
    timezone: str,
    run_now: bool,
    metrics_port: int | None,
    metrics_host: str,
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
        storage-calc schedule --metrics-port 9100 --metrics-host 127.0.0.1
    """
    from storage_calc import scheduler  # here: APScheduler only slows every other command
    from storage_calc.metrics import ScheduleMetrics

    shard = shard_of(shard, shards)
    with reported():
        trigger = scheduler.cron_trigger(cron, timezone)
    settings = settings_from(params)
    with reported(), stop_on_signals() as stop:
        s3 = make_s3_client(settings.workers)
        metrics = None
        if metrics_port is not None:
            metrics = ScheduleMetrics()
            metrics.serve(metrics_port, metrics_host)
        scheduler.serve(
            scheduler.build_scheduler(settings, s3, trigger, shard, run_now, stop, metrics),
            stop,
        )


@click.command("demo")
@database_option
@api_option
@s3_options
def demo_command(**params: Any) -> None:
    """Run the whole job on embedded services and print what it computed.

    Starts a local S3 endpoint on 127.0.0.1 with a small sample (customer 2, spaces 5 and 7),
    registers the sample's assets, runs the calculator over HTTP, says which layout of the
    platform's tables it wrote and prints the customer, space and asset resources. The figures
    stay in the database, so `storage-calc show customer 2` works afterwards; the S3 endpoint
    stops when the demo ends.
    """
    from storage_calc import demo

    settings = settings_from(params)
    with reported():
        report, resources = demo.run_demo(settings)
    if report.layout is not None:
        click.echo(f"the platform's tables have the {report.layout.name} layout", err=True)
    for resource in resources:
        click.echo(jsonld.render(resource))
    exit_with(report)
