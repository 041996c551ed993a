"""One run: resolve the customers of a scope, then compute, write and record each of them."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

import structlog

from storage_calc import db
from storage_calc.billable import Billable, BillableTally, in_scope
from storage_calc.config import Settings
from storage_calc.errors import (
    ConfigError,
    ConnectionLost,
    DatabaseError,
    Interrupted,
    ListingError,
    LockLost,
    NotFound,
    StorageCalcError,
)
from storage_calc.inventory_source import Inventory, opened, stage_customer
from storage_calc.keys import customer_prefix, parse_int, space_prefix
from storage_calc.listing import Page, S3Client, list_pages
from storage_calc.model import (
    AssetKey,
    CustomerResult,
    Layout,
    Location,
    Misfiled,
    Outcome,
    RunReport,
    Scope,
    ScopeSums,
    Shard,
    Spaces,
    Uncounted,
)
from storage_calc.progress import RunProgress
from storage_calc.ranges import EmptyBeyond, KeyRange, RangeCut, registry_slices
from storage_calc.rollup import Tally
from storage_calc.shards import shard_spaces
from storage_calc.versions import billable_of, uploads_of

log = structlog.get_logger("storage_calc")

# Listing requests per customer listed at once: the next customers are listed while the
# previous one is written, so that the round trips of small customers overlap.
REQUESTS_PER_CUSTOMER = 2
# Registered assets per key range of a space: a range is listed by its own requests and holds
# only its own slice of the registry, so a space of millions of assets is listed by many
# requests at once in bounded memory. About 7,000 keys, 7 pages per location for the usual
# asset; the last page of each range lists some keys of the next one for nothing.
REGISTRY_SLICE = 1_000
# Per-asset figures copied into the staging table per COPY.
STAGE_BATCH = 20_000
# How often a thread waiting for a listing wakes up. CPython runs signal handlers on the main
# thread only, between two bytecodes, and a wait without a timeout is not interrupted by a
# SIGTERM that the kernel hands to another thread (any thread may take a signal sent to the
# process): without waking, the main thread would see a stop only once the listing it waits for
# has ended, however long its requests take.
WAKE_SECONDS = 0.1

T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    """What every customer of a run shares."""

    settings: Settings
    layout: Layout
    s3: S3Client
    pool: ThreadPoolExecutor
    customers: ThreadPoolExecutor
    connections: db.Connections
    dry_run: bool
    stop: threading.Event = field(default_factory=threading.Event)
    progress: RunProgress = field(default_factory=RunProgress)
    # The reports' sums, when the run reads inventories instead of listing.
    inventory: Inventory | None = None

    def pages(
        self,
        bucket: str,
        prefix: str,
        delimiter: str | None = None,
        max_keys: int = 1000,
        start_after: str | None = None,
    ) -> Iterator[Page]:
        """The listing of `prefix`, given up between two pages once a stop is requested."""
        for page in list_pages(self.s3, bucket, prefix, delimiter, max_keys, start_after):
            if self.stop.is_set():
                raise Interrupted("interrupted before its figures were written")
            self.progress.listed(len(page.objects))
            yield page

    def tally(self, registry: dict[str, int]) -> Tally:
        """An empty tally of the run's layout over `registry`."""
        return Tally(
            registry,
            stub_space=self.layout.customer_row_at_null,
            split_adjuncts=self.layout.asset_adjuncts,
        )


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
        with contextlib.ExitStack() as reports:
            inventory = None
            if settings.source == "inventory":
                inventory = reports.enter_context(opened(settings, s3, layout, stop))
            started = database.retried(db.server_now)
            shard_text = str(shard) if shard else None
            run_id = (
                None if dry_run else database.retried(db.start_run, started, str(scope), shard_text)
            )
            database.run_id = run_id
            with structlog.contextvars.bound_contextvars(run_id=run_id):
                with (
                    ThreadPoolExecutor(settings.workers, thread_name_prefix="list") as pool,
                    ThreadPoolExecutor(
                        customers_in_flight(settings), thread_name_prefix="customer"
                    ) as flight,
                ):
                    job = Job(
                        settings, layout, s3, pool, flight, connections, dry_run,
                        stop or threading.Event(), progress or RunProgress(), inventory,
                    )  # fmt: skip
                    results, outside, error = compute(job, database, scope, shard)
                results.sort(key=lambda result: result.customer)
                report = RunReport(
                    scope, shard, dry_run, started, database.retried(db.server_now),
                    tuple(results), outside.tally.objects, outside.tally.bytes, error,
                    job.stop.is_set(), layout, run_id, tuple(outside.uncounted),
                    database.reconnections + connections.reconnections,
                )  # fmt: skip
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


@dataclass
class Outside:
    """The keys outside every customer (`tally`) and the prefixes of them that could not be
    listed."""

    tally: Tally
    uncounted: list[Uncounted] = field(default_factory=list)


def compute(
    job: Job, database: db.Database, scope: Scope, shard: Shard | None
) -> tuple[list[CustomerResult], Outside, str | None]:
    """The results of the customers of the run, recorded in the order they end, the keys outside
    every customer, and the error that ended the run early, if any."""
    results: list[CustomerResult] = []
    outside = Outside(job.tally({}))
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
    elif job.inventory is not None:
        customers = set(database.retried(db.all_customers)) | job.inventory.sums.customers()
        if shard is None:
            count, size = job.inventory.sums.outside()
            outside.tally.objects = outside.tally.unattributed_objects = count
            outside.tally.bytes = outside.tally.unattributed_bytes = size
        found = plan(job, database, customers, shard)
    else:
        customers = set(database.retried(db.all_customers))
        others: list[tuple[str, Future[Tally]]] = []
        for location, objects, prefixes in levels(job, ""):
            if shard is None:
                outside.tally.merge(objects)
            for prefix in prefixes:
                customer = parse_int(prefix[:-1])
                if customer is not None:
                    customers.add(customer)
                elif shard is None:
                    where = f"s3://{location.bucket}/{location.prefix}{prefix}"
                    others.append((where, job.pool.submit(tally_prefix, job, location, prefix)))
        for where, future in others:
            try:
                outside.tally.merge(waited(future))
            except ListingError as exc:
                log.error("prefix_not_counted", prefix=where, error=str(exc))
                outside.uncounted.append(Uncounted(where, str(exc)))
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
                "customer_retried", customer=pending.customer, attempt=pending.attempt + 2,
                in_s=delay, error=result.error,
            )  # fmt: skip
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
            pending.result = CustomerResult(customer, Outcome.LOCKED, error="locked by another run")
            return pending
        pending.checked = (
            job.inventory.checked if job.inventory else database.retried(db.server_now)
        )
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
                listed.conn, job.layout, pending.customer, pending.spaces, pending.asset_id,
                listed.staged, pending.checked, job.dry_run, lock_holder=holder,
                billable=listed.billable, run_id=database.run_id,
            )  # fmt: skip
            pending.write_seconds = round(time.monotonic() - writing, 3)
            database.written(pending.customer)
            sums = listed.sums
            pending.result = CustomerResult(
                pending.customer, Outcome.DONE, sums.objects, sums.bytes, listed.staged,
                sums.unattributed_objects, sums.unattributed_bytes, sums.orphans,
                changes, misfiled=pending.misfiled, billable=listed.billable,
            )  # fmt: skip
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
    return CustomerResult(pending.customer, Outcome.FAILED, error=error)


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
    """Lists a customer's `spaces` (or `asset`) in every location and stages its per-asset
    figures on a connection of its own, a slice of its registry at a time (`tally_slices`);
    with an inventory, stages them from the reports' sums instead.

    Where the run computes every space of the customer but some (`spaces.only` is None), the
    customer's prefix is listed first to find them; `spaces.only` are listed directly."""
    conn = job.connections.take()
    try:
        db.start_staging(conn)
        billable = billable_rows(job, customer, spaces) if asset is None else None
        if job.inventory is not None:
            asset_id = asset.id if asset else None
            sums, staged = stage_customer(
                job.inventory, conn, job.layout, customer, spaces, asset_id
            )
            return Listed(sums, conn, staged, billable)
        tally = job.tally({})
        stager = Stager(conn)
        if asset is not None:
            registry = {asset.id: asset.space}
            alone = job.tally(registry)
            for location in job.settings.locations:
                alone.merge(tally_asset(job, location, asset.id, registry))
            stager.add(alone.asset_rows())
            tally.merge(alone)
            return Listed(tally.sums(), conn, stager.finish(), billable)
        if spaces.only is None:
            prefixes = {
                prefix: locations
                for prefix, locations in discover(job, tally, customer).items()
                if parse_int(prefix[len(customer_prefix(customer)) : -1]) not in spaces.excluded
            }
        else:
            everywhere = job.settings.locations
            prefixes = {space_prefix(customer, s): everywhere for s in sorted(spaces.only)}
        assets = db.stream_registry(conn, job.layout, customer, spaces)
        tasks = range_tasks(customer, assets, prefixes)
        tally_slices(job, tasks, tally, stager)
        return Listed(tally.sums(), conn, stager.finish(), billable)
    except BaseException:
        give_back(job, conn)
        raise


def billable_rows(job: Job, customer: int, spaces: Spaces) -> tuple[Billable, ...] | None:
    """What S3 bills for the customer's `spaces`, where the run computes it: versions and
    delete markers listed (or read from the inventory), unfinished uploads listed. The row of
    the keys outside any space belongs to a run of every space."""
    if not job.settings.billable:
        return None
    tally = BillableTally()
    prefix = customer_prefix(customer) if spaces.one is None else space_prefix(customer, spaces.one)
    if job.inventory is None:
        billable_of(job.s3, job.settings.locations, prefix, tally)
    else:
        for space, cls, latest, marker, count, size, billed in job.inventory.sums.versions(
            customer
        ):
            tally.add_versions((customer, space), cls, latest, marker, count, size, billed)
        uploads_of(job.s3, job.settings.locations, prefix, tally)
    return tuple(row for row in tally.rows() if in_scope(row, customer, spaces))


def discover(job: Job, tally: Tally, customer: int) -> dict[str, tuple[Location, ...]]:
    """The prefixes directly under the customer's prefix (its spaces, and whatever else is
    there) and the locations that hold each. Objects directly under the customer prefix,
    outside any space, go into `tally`."""
    found: dict[str, list[Location]] = {}
    for location, objects, prefixes in levels(job, customer_prefix(customer)):
        tally.merge(objects)
        for prefix in prefixes:
            found.setdefault(prefix, []).append(location)
    return {prefix: tuple(locations) for prefix, locations in found.items()}


def levels(job: Job, prefix: str) -> list[tuple[Location, Tally, list[str]]]:
    """One level under `prefix` in every location, listed at once with a delimiter: the
    objects directly under it, tallied, and the prefixes below it, relative to the location's
    prefix."""

    def level(location: Location) -> tuple[Location, Tally, list[str]]:
        objects, prefixes = job.tally({}), []
        for page in job.pages(location.bucket, location.prefix + prefix, delimiter="/"):
            objects.add(location.kind, location.bucket, location.prefix, page.objects)
            prefixes += [below[len(location.prefix) :] for below in page.prefixes]
        return location, objects, prefixes

    futures = [job.pool.submit(level, location) for location in job.settings.locations]
    try:
        return [waited(future) for future in futures]
    finally:
        for future in futures:
            future.cancel()


def waited(future: Future[T]) -> T:
    """The result of `future`, waited for in steps of `WAKE_SECONDS`, so that a stop requested
    by a signal meanwhile is seen at once (its handler runs between two steps) rather than when
    the future ends."""
    while not wait([future], timeout=WAKE_SECONDS).done:
        pass
    return future.result()


@dataclass(frozen=True)
class RangeTask:
    """A slice of a customer's registry and the key range it covers under `prefix` (a space's,
    relative to the locations' prefixes), to list in `locations`."""

    prefix: str
    key_range: KeyRange
    assets: dict[str, int]
    locations: tuple[Location, ...]


def range_tasks(
    customer: int,
    registry: Iterator[tuple[str, int]],
    prefixes: dict[str, tuple[Location, ...]],
) -> Iterator[RangeTask]:
    """The key ranges of a customer or space, in the order of its registry: one per
    `REGISTRY_SLICE` registered assets of a space, listed in the locations `prefixes` gives for
    its prefix (none: a space nowhere on S3 still has its assets written, with zeros), then
    each other prefix of `prefixes` whole, to find its orphans and unattributed keys."""
    unregistered = dict(prefixes)
    for piece in registry_slices(registry, REGISTRY_SLICE):
        prefix = space_prefix(customer, piece.space)
        unregistered.pop(prefix, None)
        yield RangeTask(prefix, piece.key_range, piece.assets, prefixes.get(prefix, ()))
    for prefix, locations in unregistered.items():
        yield RangeTask(prefix, KeyRange(), {}, locations)


def tally_slices(job: Job, tasks: Iterator[RangeTask], tally: Tally, stager: Stager) -> None:
    """Lists the ranges of `tasks`, each location of a range as a task of the run's pool, with
    at most `ranges_in_flight` ranges at once; as each range ends, its assets' figures are
    staged and its counts and orphans added to `tally`.

    Memory is bounded by the ranges in flight, whatever the size of the customer or space."""
    limit = ranges_in_flight(job)
    ends = EmptyBeyond()
    in_flight: list[tuple[RangeTask, list[Future[Tally]]]] = []

    def ended(futures: list[Future[Tally]]) -> bool:
        """Every location of the range listed, or one failed."""
        return all(f.done() for f in futures) or any(f.done() and f.exception() for f in futures)

    def settle() -> None:
        """Waits until a range ends, then stages every range that has."""
        while not any(ended(futures) for _, futures in in_flight):
            pending = [f for _, futures in in_flight for f in futures if not f.done()]
            wait(pending, return_when=FIRST_COMPLETED)
        for entry in list(in_flight):
            if ended(entry[1]):
                in_flight.remove(entry)
                add_range(tally, stager, [f.result() for f in entry[1]])

    try:
        for task in tasks:
            if not task.locations:
                add_range(tally, stager, [job.tally(task.assets)])
                continue
            while len(in_flight) >= limit:
                settle()
            futures = [job.pool.submit(tally_range, job, loc, task, ends) for loc in task.locations]
            in_flight.append((task, futures))
        while in_flight:
            settle()
    finally:
        for _, futures in in_flight:
            for future in futures:
                future.cancel()


def add_range(tally: Tally, stager: Stager, tallies: list[Tally]) -> None:
    """Stages the figures of a range's assets, summed over its locations, and adds its counts
    and orphans to the customer's `tally`."""
    merged = tallies[0]
    for other in tallies[1:]:
        merged.merge(other)
    stager.add(merged.asset_rows())
    merged.sizes.clear()
    tally.merge(merged)


def customers_in_flight(settings: Settings) -> int:
    """Customers listed at once, each on a database connection of its own: one per
    `REQUESTS_PER_CUSTOMER` workers, at least 3 (16 at the default 32 workers)."""
    return max(3, settings.workers // REQUESTS_PER_CUSTOMER)


def ranges_in_flight(job: Job) -> int:
    """Ranges of one customer listed at once: enough to keep every worker busy with one
    location each, so that a customer alone can use the whole pool."""
    return max(2, -(-job.settings.workers // len(job.settings.locations)))


def tally_range(job: Job, location: Location, task: RangeTask, ends: EmptyBeyond) -> Tally:
    """Attributes the objects of a range in one location as its pages stream in; a range that
    an earlier one showed to be empty there is not listed."""
    tally = job.tally(task.assets)
    cut = RangeCut(location.prefix + task.prefix, task.key_range)
    where = f"{location.bucket}/{cut.prefix}"
    if ends.covers(where, task.key_range):
        return tally
    for page in job.pages(location.bucket, cut.prefix, start_after=cut.start_after):
        tally.add(location.kind, location.bucket, location.prefix, cut.take(page.objects))
        if cut.done:
            break
    gap = cut.gap()
    if gap is not None:
        ends.note(where, gap)
    for prefix in cut.unshown():
        for page in job.pages(location.bucket, prefix):
            tally.add(location.kind, location.bucket, location.prefix, page.objects)
    return tally


class Stager:
    """Copies the per-asset figures of a customer into its connection's staging table in
    batches, so that a customer of millions of assets never holds them all."""

    def __init__(self, conn: db.Connection) -> None:
        self.conn = conn
        self.rows: list[tuple[str, int, int, int, int]] = []
        self.staged = 0

    def add(self, rows: Iterable[tuple[str, int, int, int, int]]) -> None:
        self.rows.extend(rows)
        if len(self.rows) >= STAGE_BATCH:
            self.flush()

    def flush(self) -> None:
        self.staged += db.stage_figures(self.conn, self.rows)
        self.rows.clear()

    def finish(self) -> int:
        """Copies what is left; returns how many rows were staged in all."""
        self.flush()
        return self.staged


def tally_prefix(job: Job, location: Location, prefix: str) -> Tally:
    """Counts every object under `prefix` (relative to the location's), outside every
    customer, as unattributed."""
    tally = job.tally({})
    for page in job.pages(location.bucket, location.prefix + prefix):
        tally.add(location.kind, location.bucket, location.prefix, page.objects)
    return tally


def tally_asset(job: Job, location: Location, asset_id: str, registry: dict[str, int]) -> Tally:
    """The objects of one asset: its exact key and everything under `id/`.

    The exact key sorts first among keys that start with it, so one key of a listing at the
    id is enough, and the cost does not depend on how many siblings share the id's prefix.
    """
    tally = job.tally(registry)
    exact = location.prefix + asset_id
    first = next(job.pages(location.bucket, exact, max_keys=1))
    exact_objects = [(key, size) for key, size in first.objects if key == exact]
    tally.add(location.kind, location.bucket, location.prefix, exact_objects)
    for page in job.pages(location.bucket, exact + "/"):
        tally.add(location.kind, location.bucket, location.prefix, page.objects)
    return tally
