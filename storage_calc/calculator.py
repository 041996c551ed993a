"""One run: resolve the customers of a scope, then compute, write and record each of them."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime

import structlog

from storage_calc import db
from storage_calc.config import Settings
from storage_calc.errors import (
    ConfigError,
    DatabaseError,
    Interrupted,
    NotFound,
    StorageCalcError,
)
from storage_calc.keys import customer_prefix, parse_int, space_prefix
from storage_calc.listing import Page, S3Client, list_pages
from storage_calc.model import (
    CustomerResult,
    Layout,
    Location,
    Misfiled,
    Outcome,
    RunReport,
    Scope,
    Shard,
)
from storage_calc.progress import RunProgress
from storage_calc.rollup import Tally

log = structlog.get_logger("storage_calc")

# Customers listed at once: the next ones are listed while the previous one is written, and
# memory stays bounded by the assets of this many customers.
CUSTOMERS_IN_FLIGHT = 3


@dataclass(frozen=True)
class Job:
    """What every customer of a run shares."""

    settings: Settings
    layout: Layout
    s3: S3Client
    pool: ThreadPoolExecutor
    customers: ThreadPoolExecutor
    dry_run: bool
    stop: threading.Event = field(default_factory=threading.Event)
    progress: RunProgress = field(default_factory=RunProgress)

    def pages(
        self, bucket: str, prefix: str, delimiter: str | None = None, max_keys: int = 1000
    ) -> Iterator[Page]:
        """The listing of `prefix`, given up between two pages once a stop is requested."""
        for page in list_pages(self.s3, bucket, prefix, delimiter, max_keys):
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
    bucket unreachable) is the report's `error`. A dry run writes nothing, not even the run's
    history. Setting `stop` ends the run between two listed pages: the customer in progress
    keeps its previous figures. Every log event of the run carries its `run_id` (None for a dry
    run). `progress` is kept up to date as customers and pages come in.
    """
    database = db.Database(settings.database_url)
    try:
        layout = db.detect_layout(database.conn)
        check_scope(scope, layout)
        started = db.server_now(database.conn)
        shard_text = str(shard) if shard else None
        run_id = None if dry_run else db.start_run(database.conn, started, str(scope), shard_text)
        database.run_id = run_id
        with structlog.contextvars.bound_contextvars(run_id=run_id):
            with (
                ThreadPoolExecutor(settings.workers, thread_name_prefix="list") as pool,
                ThreadPoolExecutor(CUSTOMERS_IN_FLIGHT, thread_name_prefix="customer") as flight,
            ):
                job = Job(
                    settings, layout, s3, pool, flight, dry_run,
                    stop or threading.Event(), progress or RunProgress(),
                )  # fmt: skip
                results, outside, error = compute(job, database, scope, shard)
            report = RunReport(
                scope, shard, dry_run, started, db.server_now(database.conn), tuple(results),
                outside.objects, outside.bytes, error, job.stop.is_set(), layout, run_id,
            )  # fmt: skip
            if run_id is not None:
                db.finish_run(database.conn, run_id, report)
            log_summary(report)
    finally:
        database.close()
    return report


def compute(
    job: Job, database: db.Database, scope: Scope, shard: Shard | None
) -> tuple[list[CustomerResult], Tally, str | None]:
    """The results of the customers of the run, recorded as they end, the keys outside every
    customer, and the error that ended the run early, if any."""
    results: list[CustomerResult] = []
    outside = job.tally({})
    try:
        customers = resolve_customers(job, database, scope, shard, outside)
        for result in compute_customers(job, database, customers, scope):
            if database.run_id is not None:
                db.record_customer(database.conn, database.run_id, scope, result)
            results.append(result)
            job.progress.customer_done()
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
        duration_s=round(report.duration_seconds, 3),
    )


def resolve_customers(
    job: Job, database: db.Database, scope: Scope, shard: Shard | None, outside: Tally
) -> list[int]:
    """The customers a run computes, in order.

    For a run over everything these are the customers with registered assets or figures plus
    those found on S3 (whose objects are all orphans). Keys outside every customer prefix are
    added to `outside` (as unattributed) only when the run covers every customer (no shard).
    """
    if scope.asset is not None:
        customers = {scope.asset.customer}
    elif scope.customer is not None:
        customers = {scope.customer}
    else:
        customers = set(db.all_customers(database.conn))
        others: list[Future[Tally]] = []
        for location in job.settings.locations:
            for page in job.pages(location.bucket, location.prefix, delimiter="/"):
                if shard is None:
                    outside.add(location.kind, location.bucket, location.prefix, page.objects)
                for prefix in page.prefixes:
                    customer = parse_int(prefix[len(location.prefix) : -1])
                    if customer is not None:
                        customers.add(customer)
                    elif shard is None:
                        others.append(job.pool.submit(tally_prefix, job, location, prefix, {}))
        for future in others:
            outside.merge(future.result())
    found = sorted(c for c in customers if shard is None or shard.includes(c))
    job.progress.customers_found(len(found))
    return found


def compute_customers(
    job: Job, database: db.Database, customers: list[int], scope: Scope
) -> Iterator[CustomerResult]:
    """Each customer's result, in order, with the listings of the next customers running while
    the previous one is written. No customer is started once a stop is requested."""
    in_flight: deque[Pending] = deque()
    for customer in customers:
        if job.stop.is_set():
            break
        in_flight.append(start_customer(job, database, customer, scope))
        if len(in_flight) == CUSTOMERS_IN_FLIGHT:
            yield finish_customer(job, database, in_flight.popleft())
    while in_flight:
        yield finish_customer(job, database, in_flight.popleft())


@dataclass
class Pending:
    """A customer of the run: locked, flagged and being listed, or already ended (`result`)."""

    customer: int
    space: int | None
    asset_id: str | None
    began: float = field(default_factory=time.monotonic)
    registry: dict[str, int] = field(default_factory=dict)
    misfiled: Misfiled = field(default_factory=Misfiled)
    checked: datetime | None = None
    flagged: bool = False
    listing: Future[Tally] | None = None
    result: CustomerResult | None = None


def start_customer(job: Job, database: db.Database, customer: int, scope: Scope) -> Pending:
    """Takes the customer's advisory lock, reads its registered assets, sets its
    `CheckingInProgress` (committed, so readers see it) and starts listing it."""
    space = scope.asset.space if scope.asset else scope.space
    pending = Pending(customer, space, scope.asset.id if scope.asset else None)
    if not database.lock_customer(customer):
        log.warning("customer_locked", customer=customer, reason="another run is computing it")
        pending.result = CustomerResult(customer, Outcome.LOCKED, error="locked by another run")
        return pending
    try:
        conn = database.conn
        pending.checked = db.server_now(conn)
        pending.registry = db.read_registry(conn, job.layout, customer, space, pending.asset_id)
        pending.misfiled = db.misfiled(conn, job.layout, customer, space, pending.asset_id)
        if pending.misfiled.count:
            log.warning(
                "misfiled_assets",
                customer=customer,
                count=pending.misfiled.count,
                examples=list(pending.misfiled.examples),
                rule='"Images" rows whose Id is not under their own customer and space count '
                "nowhere",
            )
        if pending.asset_id is not None and pending.asset_id not in pending.registry:
            raise NotFound(f'asset {pending.asset_id} is not registered in "Images"')
        if not job.dry_run:
            db.set_in_progress(conn, True, customer, space, pending.asset_id)
            pending.flagged = True
        pending.listing = job.customers.submit(
            list_customer, job, customer, scope, pending.registry
        )
    except Exception as exc:
        pending.result = give_up(database, pending, exc)
    return pending


def finish_customer(job: Job, database: db.Database, pending: Pending) -> CustomerResult:
    """Waits for the customer's listing and writes its figures in one transaction."""
    if pending.result is None:
        assert pending.listing is not None and pending.checked is not None
        try:
            tally = pending.listing.result()
            conn = database.conn
            if pending.customer in database.lost:
                raise DatabaseError(
                    "the database connection broke and another run took the customer meanwhile"
                )
            changes = db.write_customer(
                conn, job.layout, pending.customer, pending.space, pending.asset_id,
                tally.asset_rows(), pending.checked, job.dry_run,
            )  # fmt: skip
            pending.result = CustomerResult(
                pending.customer, Outcome.DONE, tally.objects, tally.bytes,
                len(pending.registry), tally.unattributed_objects, tally.unattributed_bytes,
                tally.space_orphans(), changes, misfiled=pending.misfiled,
            )  # fmt: skip
            release(database, pending.customer)
        except Exception as exc:
            pending.result = give_up(database, pending, exc)
    result = replace(pending.result, seconds=round(time.monotonic() - pending.began, 3))
    if result.outcome is not Outcome.LOCKED:
        log.info(
            "customer_calculated",
            customer=result.customer,
            space=pending.space,
            asset=pending.asset_id,
            **result.counts(),
            duration_s=result.seconds,
        )
    return result


def give_up(database: db.Database, pending: Pending, exc: Exception) -> CustomerResult:
    """A failed customer keeps its previous figures: clear its flags, release its lock.

    Any exception fails the customer alone, the unexpected ones too (a bug, or an answer no
    check foresaw): named in the result and logged with their traceback, while the run goes on
    with the next customer.
    """
    if pending.flagged:
        clear_flags(database, pending.customer, pending.space, pending.asset_id)
    release(database, pending.customer)
    error = str(exc)
    if not isinstance(exc, StorageCalcError):
        error = f"unexpected error: {type(exc).__name__}: {exc}"
        log.error("customer_error", customer=pending.customer, error=error, exc_info=exc)
    return CustomerResult(pending.customer, Outcome.FAILED, error=error)


def clear_flags(database: db.Database, customer: int, space: int | None, asset: str | None) -> None:
    """Clears `CheckingInProgress` after a failure, on a new connection if the old one broke;
    the flags of a customer another run took meanwhile are that run's to clear."""
    try:
        conn = database.conn
        if customer not in database.lost:
            db.set_in_progress(conn, False, customer, space, asset)
    except StorageCalcError as exc:
        log.error("flags_not_cleared", customer=customer, error=str(exc))


def release(database: db.Database, customer: int) -> None:
    """Releases the customer's lock, if this run still holds it."""
    try:
        database.unlock_customer(customer)
    except StorageCalcError as exc:
        log.warning("unlock_failed", customer=customer, error=str(exc))


def list_customer(job: Job, customer: int, scope: Scope, registry: dict[str, int]) -> Tally:
    """Lists a customer's scope in every location, one paginated walk per space, in parallel."""
    tally = job.tally(registry)
    if scope.asset is not None:
        for location in job.settings.locations:
            tally.merge(tally_asset(job, location, scope.asset.id, registry))
        return tally
    futures: list[Future[Tally]] = []
    try:
        for location, prefix in prefixes_to_list(job, tally, customer, scope.space):
            futures.append(job.pool.submit(tally_prefix, job, location, prefix, registry))
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            tally.merge(future.result())
    finally:
        for future in futures:
            future.cancel()
    return tally


def prefixes_to_list(
    job: Job, tally: Tally, customer: int, space: int | None
) -> Iterator[tuple[Location, str]]:
    """The prefixes to list for a customer (each of its spaces) or one space, per location.

    Objects directly under the customer prefix, outside any space, go into `tally` as they are
    found.
    """
    for location in job.settings.locations:
        if space is not None:
            yield location, location.prefix + space_prefix(customer, space)
            continue
        top = location.prefix + customer_prefix(customer)
        for page in job.pages(location.bucket, top, delimiter="/"):
            tally.add(location.kind, location.bucket, location.prefix, page.objects)
            for prefix in page.prefixes:
                yield location, prefix


def tally_prefix(job: Job, location: Location, prefix: str, registry: dict[str, int]) -> Tally:
    """Attributes every object under `prefix` as its pages stream in."""
    tally = job.tally(registry)
    for page in job.pages(location.bucket, prefix):
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
