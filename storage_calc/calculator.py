"""One run: resolve the customers of a scope, then compute, write and record each of them."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime

import structlog

from storage_calc import db
from storage_calc.config import Settings
from storage_calc.errors import (
    ConfigError,
    ConnectionLost,
    DatabaseError,
    LockLost,
    NotFound,
    StorageCalcError,
)
from storage_calc.model import (
    AssetKey,
    Billable,
    CustomerResult,
    Layout,
    Misfiled,
    Outcome,
    RunReport,
    Scope,
    ScopeSums,
    Shard,
    Spaces,
)
from storage_calc.progress import RunProgress
from storage_calc.rollup import Tally
from storage_calc.shards import shard_spaces
from storage_calc.sources import Outside, Source
from storage_calc.sources.configured import configured_source
from storage_calc.sources.listing import S3Client
from storage_calc.stopping import WAKE_SECONDS, waited

log = structlog.get_logger("storage_calc")

# Listing requests per customer listed at once: the next customers are listed while the
# previous one is written, so that the round trips of small customers overlap.
REQUESTS_PER_CUSTOMER = 2


@dataclass(frozen=True, kw_only=True)
class Job:
    """What every customer of a run shares: where its objects come from (`source`), the
    threads that compute customers at once, each with a connection of `connections`, and the
    run's stop request and progress."""

    settings: Settings
    layout: Layout
    source: Source
    customers: ThreadPoolExecutor
    connections: db.Connections
    dry_run: bool
    stop: threading.Event
    progress: RunProgress

    def tally(self) -> Tally:
        """An empty tally of the run's layout."""
        return Tally({}, self.layout.customer_row_at_null, self.layout.asset_adjuncts)


def run(
    settings: Settings,
    s3: S3Client,
    scope: Scope = Scope(),
    shard: Shard | None = None,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    progress: RunProgress | None = None,
) -> RunReport:
    """Computes every customer of `scope` (and `shard`) and returns what happened.

    The layout of the platform's tables is read from the catalog first: a layout the job
    cannot write, or a scope in space 0 where space 0 is the customer-level row, raises a
    ConfigError before anything is written. A failure of one customer is recorded in its result
    and the run goes on with the next; a failure before any customer is computed (database or
    bucket unreachable) is the report's `error`. A database connection that breaks costs an
    attempt (`Settings.reconnect_delays`), and the flags the run set are cleared however it
    ends. A dry run writes nothing, not even the run's
    history. Setting `stop` ends the run between two listed pages: the customer in progress
    keeps its previous figures (while inventory reports are read, between two reports, with
    nothing written). Every log event of the run carries its `run_id` (None for a dry
    run). `progress` is kept up to date as customers and pages come in.
    """
    database = db.Database(settings.database_url, settings.reconnect_delays)
    connections = db.Connections(settings.database_url)
    try:
        layout = database.retried(db.detect_layout)
        check_scope(scope, layout)
        with contextlib.ExitStack() as stack:
            stop = stop or threading.Event()
            progress = progress or RunProgress()
            pool = stack.enter_context(
                ThreadPoolExecutor(settings.workers, thread_name_prefix="list")
            )
            source = stack.enter_context(
                configured_source(settings, layout, s3, pool, stop, progress)
            )
            started = database.retried(db.server_now)
            shard_text = str(shard) if shard else None
            run_id = (
                None if dry_run else database.retried(db.start_run, started, str(scope), shard_text)
            )
            database.run_id = run_id
            with structlog.contextvars.bound_contextvars(run_id=run_id):
                with ThreadPoolExecutor(
                    customers_in_flight(settings), thread_name_prefix="customer"
                ) as flight:
                    job = Job(
                        settings=settings,
                        layout=layout,
                        source=source,
                        customers=flight,
                        connections=connections,
                        dry_run=dry_run,
                        stop=stop,
                        progress=progress,
                    )
                    results, outside, error = compute(job, database, scope, shard)
                results.sort(key=lambda result: result.customer)
                report = RunReport(
                    scope=scope,
                    shard=shard,
                    dry_run=dry_run,
                    started=started,
                    finished=database.retried(db.server_now),
                    customers=tuple(results),
                    unattributed_objects=outside.tally.objects,
                    unattributed_bytes=outside.tally.bytes,
                    error=error,
                    interrupted=stop.is_set(),
                    layout=layout,
                    run_id=run_id,
                    uncounted=tuple(outside.uncounted),
                    reconnections=database.reconnections + connections.reconnections,
                )
                if run_id is not None:
                    database.retried(db.finish_run, run_id, report)
                log_summary(report)
    finally:
        clear_flags_left(database)
        connections.close()
        database.close()
    return report


def clear_flags_left(database: db.Database) -> None:
    """Clears the flags the run set and did not clear, whatever ended it (a stop, an error, a
    bug), on a new connection if the run's broke; only a database that stays unreachable keeps
    them, for the next run to clear."""
    for customer in list(database.flagged):
        try:
            database.unflag(customer)
        except StorageCalcError as exc:
            log.error("flags_not_cleared", customer=customer, error=str(exc))


def compute(
    job: Job, database: db.Database, scope: Scope, shard: Shard | None
) -> tuple[list[CustomerResult], Outside, str | None]:
    """The results of the customers of the run, recorded in the order they end, the keys outside
    every customer, and the error that ended the run early, if any."""
    results: list[CustomerResult] = []
    outside = Outside(job.tally())
    try:
        customers = resolve_customers(job, database, scope, shard, outside)
        for result in compute_customers(job, database, customers, scope, shard is not None):
            if (run_id := database.run_id) is not None:
                database.retried(db.record_customer, run_id, scope, result)
            results.append(result)
            job.progress.customer_done()
        if database.down is not None:
            return results, outside, f"the database stayed unreachable: {database.down}"
    except StorageCalcError as exc:
        return results, outside, str(exc)
    except Exception as exc:
        log.error("run_error", error=str(exc), exc_info=exc)
        return results, outside, f"unexpected error: {type(exc).__name__}: {exc}"
    return results, outside, None


def check_scope(scope: Scope, layout: Layout) -> None:
    """Space 0 holds assets only where the layout has a stub space."""
    space = scope.asset.space if scope.asset else scope.space
    if space == 0 and not layout.customer_row_at_null:
        raise ConfigError(
            f"space 0 is the customer-level row in this database's layout ({layout.name}), "
            "not a space that holds assets"
        )


def log_summary(report: RunReport) -> None:
    log.info(
        "run_finished",
        scope=str(report.scope),
        layout=report.layout.name if report.layout else None,
        shard=str(report.shard) if report.shard else None,
        dry_run=report.dry_run,
        **report.counts(),
        reconnections=report.reconnections,
        duration_s=round(report.duration_seconds, 3),
    )


def resolve_customers(
    job: Job, database: db.Database, scope: Scope, shard: Shard | None, outside: Outside
) -> dict[int, Spaces]:
    """The customers a run computes, in order, each with the spaces it computes of them.

    For a run over everything these are the customers with registered assets or figures plus
    those found on S3 (whose objects are all orphans); a shard computes its share of them (see
    `storage_calc.shards`). Keys outside every customer prefix are added to `outside` (as
    unattributed) only when the run covers every customer (no shard). A prefix of them that
    cannot be listed is named in `outside.uncounted` and fails no customer: they hold none of
    its keys.
    """
    if scope.asset is not None:
        found = {scope.asset.customer: Spaces(only=frozenset({scope.asset.space}))}
    elif scope.customer is not None:
        only = None if scope.space is None else frozenset({scope.space})
        found = {scope.customer: Spaces(only=only)}
    else:
        on_s3 = job.source.customers(outside if shard is None else None)
        customers = set(database.retried(db.all_customers)) | on_s3
        found = plan(job, database, customers, shard)
    job.progress.customers_found(len(found))
    return found


def plan(
    job: Job, database: db.Database, customers: set[int], shard: Shard | None
) -> dict[int, Spaces]:
    """Every customer with all its spaces, or the share of `shard`."""
    if shard is None:
        return {customer: Spaces() for customer in sorted(customers)}
    weights = database.retried(db.asset_counts, job.layout)
    return shard_spaces(weights, customers, shard)


def compute_customers(
    job: Job, database: db.Database, customers: dict[int, Spaces], scope: Scope, shared: bool
) -> Iterator[CustomerResult]:
    """Each customer's result, written as soon as it is listed, with the listings of the next
    customers running while one is written; a shard (`shared`) locks its customers in shared
    mode. No customer is started once a stop is requested, or once the database stayed
    unreachable.

    A customer whose database connection broke (or whose lock died with the run's) is computed
    again from the start, after each of the settings' `reconnect_delays` in turn; the customers
    in flight are written meanwhile, so that customers failed by one failover wait together.
    """
    in_flight: list[Pending] = []
    waiting: list[Retry] = []

    def start(customer: int, spaces: Spaces, attempt: int = 0) -> None:
        in_flight.append(
            start_customer(job, database, customer, spaces, scope.asset, shared, attempt)
        )

    def stopped() -> bool:
        return job.stop.is_set() or database.down is not None

    def end() -> Iterator[CustomerResult]:
        pending = next_listed(in_flight)
        result = finish_customer(job, database, pending)
        delays = job.settings.reconnect_delays
        if pending.retry and pending.attempt < len(delays) and not stopped():
            delay = delays[pending.attempt]
            log.warning(
                "customer_retried",
                customer=pending.customer,
                attempt=pending.attempt + 2,
                in_s=delay,
                error=result.error,
            )
            waiting.append(Retry(time.monotonic() + delay, pending, result))
            return
        log_customer(pending, result)
        yield result

    def start_due(block: bool) -> Iterator[CustomerResult]:
        """Starts the retries whose wait is over, once `block`ed until the first is; once the
        run stops, ends them with the failure that made them wait."""
        if block and waiting:
            job.stop.wait(max(0.0, min(r.due for r in waiting) - time.monotonic()))
        for retry in [r for r in waiting if r.due <= time.monotonic() or stopped()]:
            waiting.remove(retry)
            if stopped():
                log_customer(retry.pending, retry.result)
                yield retry.result
            else:
                start(retry.pending.customer, retry.pending.spaces, retry.pending.attempt + 1)

    for customer, spaces in customers.items():
        if stopped():
            break
        yield from start_due(block=False)
        start(customer, spaces)
        if len(in_flight) >= customers_in_flight(job.settings):
            yield from end()
    while in_flight or waiting:
        yield from start_due(block=not in_flight)
        if in_flight:
            yield from end()


@dataclass(frozen=True)
class Retry:
    """A customer failed by a broken connection, to start again at `due` (monotonic time)."""

    due: float
    pending: Pending
    result: CustomerResult


def next_listed(in_flight: list[Pending]) -> Pending:
    """Takes from `in_flight` the first customer whose listing has ended (or that ended without
    one), waiting in steps of `WAKE_SECONDS` for one: a customer of millions of assets holds up
    neither the writes of the customers listed after it nor their start."""
    while True:
        for pending in in_flight:
            if pending.listing is None or pending.listing.done():
                in_flight.remove(pending)
                return pending
        listings = [pending.listing for pending in in_flight if pending.listing is not None]
        wait(listings, timeout=WAKE_SECONDS, return_when=FIRST_COMPLETED)


@dataclass
class Pending:
    """A customer of the run: locked, flagged and being listed, or already ended (`result`)."""

    customer: int
    spaces: Spaces
    asset_id: str | None
    # How many times the customer was computed before, in this run.
    attempt: int = 0
    began: float = field(default_factory=time.monotonic)
    misfiled: Misfiled = field(default_factory=Misfiled)
    checked: datetime | None = None
    listing: Future[Listed] | None = None
    result: CustomerResult | None = None
    # Whether it failed for a broken connection or a lock lost with one: worth another attempt.
    retry: bool = False
    # How long the customer's write transaction took: what its rows were locked for.
    write_seconds: float | None = None


@dataclass(frozen=True)
class Listed:
    """A customer listed (or read from the inventory): what its objects add up to (`sums`),
    its per-asset figures staged on `conn` (`staged` rows, one per registered asset)."""

    sums: ScopeSums
    conn: db.Connection
    staged: int
    # What S3 bills for the customer's spaces, where the run computes it (`--billable`).
    billable: tuple[Billable, ...] | None = None


def start_customer(
    job: Job,
    database: db.Database,
    customer: int,
    spaces: Spaces,
    asset: AssetKey | None,
    shared: bool,
    attempt: int = 0,
) -> Pending:
    """Takes the customer's advisory lock (in shared mode for a shard, whose spaces no other
    shard computes), sets the `CheckingInProgress` of its `spaces` (or `asset`), committed so
    that readers see it, and starts listing them."""
    pending = Pending(customer, spaces, asset.id if asset else None, attempt)
    try:
        if not database.lock_customer(customer, shared):
            log.warning("customer_locked", customer=customer, reason="another run is computing it")
            pending.result = CustomerResult(
                customer=customer, outcome=Outcome.LOCKED, error="locked by another run"
            )
            return pending
        pending.checked = job.source.checked() or database.retried(db.server_now)
        pending.misfiled = database.retried(
            db.misfiled, job.layout, customer, spaces, pending.asset_id
        )
        if pending.misfiled.count:
            log.warning(
                "misfiled_assets",
                customer=customer,
                count=pending.misfiled.count,
                examples=list(pending.misfiled.examples),
                rule='"Images" rows whose Id is not under their own customer and space count '
                "nowhere",
            )
        if asset is not None and not database.retried(
            db.read_registry, job.layout, customer, spaces, asset.id
        ):
            raise NotFound(f'asset {asset.id} is not registered in "Images"')
        if not job.dry_run:
            database.flag(customer, spaces, pending.asset_id)
        pending.listing = job.customers.submit(list_customer, job, customer, spaces, asset)
    except Exception as exc:
        pending.result = give_up(database, pending, exc)
    return pending


def finish_customer(job: Job, database: db.Database, pending: Pending) -> CustomerResult:
    """Waits for the customer's listing and writes its staged figures in one transaction."""
    if pending.result is None:
        assert pending.listing is not None and pending.checked is not None
        listed: Listed | None = None
        try:
            listed = waited(pending.listing)
            holder = database.retried(db.backend_pid)
            if pending.customer in database.lost:
                raise DatabaseError(
                    "the database connection broke and another run took the customer meanwhile"
                )
            writing = time.monotonic()
            changes = db.write_staged(
                listed.conn,
                job.layout,
                pending.customer,
                pending.spaces,
                pending.asset_id,
                staged=listed.staged,
                checked=pending.checked,
                dry_run=job.dry_run,
                lock_holder=holder,
                billable=listed.billable,
                run_id=database.run_id,
            )
            pending.write_seconds = round(time.monotonic() - writing, 3)
            database.written(pending.customer)
            sums = listed.sums
            pending.result = CustomerResult(
                customer=pending.customer,
                outcome=Outcome.DONE,
                objects=sums.objects,
                bytes=sums.bytes,
                assets=listed.staged,
                unattributed_objects=sums.unattributed_objects,
                unattributed_bytes=sums.unattributed_bytes,
                orphans=sums.orphans,
                changes=changes,
                misfiled=pending.misfiled,
                billable=listed.billable,
            )
            release(database, pending.customer)
        except Exception as exc:
            pending.result = give_up(database, pending, exc)
        finally:
            if listed is not None:
                give_back(job, listed.conn)
    return replace(pending.result, seconds=round(time.monotonic() - pending.began, 3))


def log_customer(pending: Pending, result: CustomerResult) -> None:
    if result.outcome is not Outcome.LOCKED:
        log.info(
            "customer_calculated",
            customer=result.customer,
            space=pending.spaces.one,
            asset=pending.asset_id,
            **result.counts(),
            duration_s=result.seconds,
            write_s=pending.write_seconds,
            attempts=pending.attempt + 1,
        )


def give_back(job: Job, conn: db.Connection) -> None:
    """Empties a customer's staging table and returns its connection for the next customer."""
    try:
        db.clear_staging(conn)
    except StorageCalcError:
        conn.close()
    job.connections.give_back(conn)


def give_up(database: db.Database, pending: Pending, exc: Exception) -> CustomerResult:
    """A failed customer keeps its previous figures: clear its flags, release its lock.

    Any exception fails the customer alone, the unexpected ones too (a bug, or an answer no
    check foresaw): named in the result and logged with their traceback, while the run goes on
    with the next customer. A broken connection, or a lock lost with one, marks it for another
    attempt (`retry`).
    """
    pending.retry = isinstance(exc, ConnectionLost | LockLost)
    clear_flags(database, pending.customer)
    release(database, pending.customer)
    error = str(exc)
    if not isinstance(exc, StorageCalcError):
        error = f"unexpected error: {type(exc).__name__}: {exc}"
        log.error("customer_error", customer=pending.customer, error=error, exc_info=exc)
    return CustomerResult(customer=pending.customer, outcome=Outcome.FAILED, error=error)


def clear_flags(database: db.Database, customer: int) -> None:
    """Clears `CheckingInProgress` after a failure, on a new connection if the old one broke;
    the flags of a customer another run took meanwhile are that run's to clear."""
    try:
        database.unflag(customer)
    except StorageCalcError as exc:
        log.error("flags_not_cleared", customer=customer, error=str(exc))


def release(database: db.Database, customer: int) -> None:
    """Releases the customer's lock, if this run still holds it."""
    try:
        database.unlock_customer(customer)
    except StorageCalcError as exc:
        log.warning("unlock_failed", customer=customer, error=str(exc))


def list_customer(job: Job, customer: int, spaces: Spaces, asset: AssetKey | None) -> Listed:
    """Stages the per-asset figures of a customer's `spaces` (or `asset`) from the run's source
    on a connection of its own, with its billable rows where the run computes them."""
    conn = job.connections.take()
    try:
        db.start_staging(conn)
        billable = None
        if job.settings.billable and asset is None:
            billable = job.source.billable(customer, spaces)
        sums, staged = job.source.stage(conn, customer, spaces, asset)
        return Listed(sums, conn, staged, billable)
    except BaseException:
        give_back(job, conn)
        raise


def customers_in_flight(settings: Settings) -> int:
    """Customers listed at once, each on a database connection of its own: one per
    `REQUESTS_PER_CUSTOMER` workers, at least 3 (16 at the default 32 workers)."""
    return max(3, settings.workers // REQUESTS_PER_CUSTOMER)
