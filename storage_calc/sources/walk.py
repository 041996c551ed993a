"""The listing source of a run: the buckets walked with ListObjectsV2, a customer's spaces cut
into key ranges that are listed at once, each range attributing its objects as its pages
stream in, and the versions and uploads of `--billable` listed the same way.

Every listing goes through `Listing.pages`: a stop request ends it between two pages, and
every page is counted in the run's progress.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import structlog

from storage_calc import db
from storage_calc.billable import BillableTally, in_scope
from storage_calc.config import Settings
from storage_calc.errors import ListingError
from storage_calc.keys import customer_prefix, parse_int, scope_prefix, space_prefix
from storage_calc.model import AssetKey, Billable, Layout, Location, ScopeSums, Spaces, Uncounted
from storage_calc.progress import RunProgress
from storage_calc.ranges import EmptyBeyond, KeyRange, RangeCut, registry_slices
from storage_calc.rollup import Tally
from storage_calc.sources import Outside, check_stop
from storage_calc.sources.listing import Page, S3Client, list_pages
from storage_calc.sources.versions import billable_of
from storage_calc.stopping import waited

log = structlog.get_logger("storage_calc")

T = TypeVar("T")


@dataclass(frozen=True)
class RangeTask:
    """A slice of a customer's registry and the key range it covers under `prefix` (a space's,
    relative to the locations' prefixes), to list in `locations`."""

    prefix: str
    key_range: KeyRange
    assets: dict[str, int]
    locations: tuple[Location, ...]


class Stager:
    """Copies the per-asset figures of a customer into its connection's staging table in
    batches of `batch`, so that a customer of millions of assets never holds them all."""

    def __init__(self, conn: db.Connection, batch: int) -> None:
        self.conn = conn
        self.batch = batch
        self.rows: list[tuple[str, int, int, int, int]] = []
        self.staged = 0

    def add(self, rows: Iterable[tuple[str, int, int, int, int]]) -> None:
        self.rows.extend(rows)
        if len(self.rows) >= self.batch:
            self.flush()

    def flush(self) -> None:
        self.staged += db.stage_figures(self.conn, self.rows)
        self.rows.clear()

    def finish(self) -> int:
        """Copies what is left; returns how many rows were staged in all."""
        self.flush()
        return self.staged


class Listing:
    """The buckets of `settings.locations`, listed on the run's `pool` of listing threads."""

    def __init__(
        self,
        settings: Settings,
        layout: Layout,
        s3: S3Client,
        pool: ThreadPoolExecutor,
        stop: threading.Event,
        progress: RunProgress,
    ) -> None:
        self.settings = settings
        self.layout = layout
        self.s3 = s3
        self.pool = pool
        self.stop = stop
        self.progress = progress

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
            yield self.counted(page, len(page.objects))

    def counted(self, page: T, objects: int) -> T:
        """`page`, of `objects` objects, added to the progress; Interrupted once a stop is
        requested."""
        check_stop(self.stop)
        self.progress.listed(objects)
        return page

    def tally(self, registry: dict[str, int]) -> Tally:
        """An empty tally of the run's layout over `registry`."""
        return Tally(
            registry,
            stub_space=self.layout.customer_row_at_null,
            split_adjuncts=self.layout.asset_adjuncts,
        )

    def checked(self) -> datetime | None:
        return None

    def customers(self, outside: Outside | None) -> set[int]:
        """The customers with a prefix in some location. With `outside`, the objects at the
        top level and every prefix that is no customer's are counted there; a prefix of them
        that cannot be listed is named in `outside.uncounted` and fails no customer: they hold
        none of its keys."""
        customers: set[int] = set()
        others: list[tuple[str, Future[Tally]]] = []
        for location, objects, prefixes in self.levels(""):
            if outside is not None:
                outside.tally.merge(objects)
            for prefix in prefixes:
                customer = parse_int(prefix[:-1])
                if customer is not None:
                    customers.add(customer)
                elif outside is not None:
                    where = f"s3://{location.bucket}/{location.prefix}{prefix}"
                    others.append((where, self.pool.submit(self.tally_prefix, location, prefix)))
        for where, future in others:
            assert outside is not None
            try:
                outside.tally.merge(waited(future))
            except ListingError as exc:
                log.error("prefix_not_counted", prefix=where, error=str(exc))
                outside.uncounted.append(Uncounted(where, str(exc)))
        return customers

    def stage(
        self, conn: db.Connection, customer: int, spaces: Spaces, asset: AssetKey | None
    ) -> tuple[ScopeSums, int]:
        """Lists the customer's `spaces` (or `asset`) in every location and stages its
        per-asset figures on `conn`, a slice of its registry at a time (`tally_slices`).

        Where the run computes every space of the customer but some (`spaces.only` is None),
        the customer's prefix is listed first to find them; `spaces.only` are listed
        directly."""
        tally = self.tally({})
        stager = Stager(conn, self.settings.tuning.stage_batch)
        if asset is not None:
            registry = {asset.id: asset.space}
            alone = self.tally(registry)
            for location in self.settings.locations:
                alone.merge(self.tally_asset(location, asset.id, registry))
            stager.add(alone.asset_rows())
            tally.merge(alone)
            return tally.sums(), stager.finish()
        if spaces.only is None:
            prefixes = {
                prefix: locations
                for prefix, locations in self.discover(tally, customer).items()
                if parse_int(prefix[len(customer_prefix(customer)) : -1]) not in spaces.excluded
            }
        else:
            everywhere = self.settings.locations
            prefixes = {space_prefix(customer, s): everywhere for s in sorted(spaces.only)}
        batch = self.settings.tuning.registry_batch
        assets = db.stream_registry(conn, self.layout, customer, spaces, batch)
        self.tally_slices(self.range_tasks(customer, assets, prefixes), tally, stager)
        return tally.sums(), stager.finish()

    def billable(self, customer: int, spaces: Spaces) -> tuple[Billable, ...]:
        """Every version, delete marker and unfinished upload of the customer's `spaces`,
        the locations listed at once; the row of the keys outside any space belongs to a run
        of every space."""
        prefix = scope_prefix(customer, spaces.one)

        def listed(location: Location) -> BillableTally:
            tally = BillableTally()
            billable_of(self.s3, (location,), prefix, tally, self.counted)
            return tally

        futures = [self.pool.submit(listed, location) for location in self.settings.locations]
        tally = BillableTally()
        try:
            for future in futures:
                tally.merge(waited(future))
        finally:
            for future in futures:
                future.cancel()
        return tuple(row for row in tally.rows() if in_scope(row, customer, spaces))

    def discover(self, tally: Tally, customer: int) -> dict[str, tuple[Location, ...]]:
        """The prefixes directly under the customer's prefix (its spaces, and whatever else is
        there) and the locations that hold each. Objects directly under the customer prefix,
        outside any space, go into `tally`."""
        found: dict[str, list[Location]] = {}
        for location, objects, prefixes in self.levels(customer_prefix(customer)):
            tally.merge(objects)
            for prefix in prefixes:
                found.setdefault(prefix, []).append(location)
        return {prefix: tuple(locations) for prefix, locations in found.items()}

    def levels(self, prefix: str) -> list[tuple[Location, Tally, list[str]]]:
        """One level under `prefix` in every location, listed at once with a delimiter: the
        objects directly under it, tallied, and the prefixes below it, relative to the
        location's prefix."""

        def level(location: Location) -> tuple[Location, Tally, list[str]]:
            objects, prefixes = self.tally({}), []
            for page in self.pages(location.bucket, location.prefix + prefix, delimiter="/"):
                objects.add(location.kind, location.bucket, location.prefix, page.objects)
                prefixes += [below[len(location.prefix) :] for below in page.prefixes]
            return location, objects, prefixes

        futures = [self.pool.submit(level, location) for location in self.settings.locations]
        try:
            return [waited(future) for future in futures]
        finally:
            for future in futures:
                future.cancel()

    def range_tasks(
        self,
        customer: int,
        registry: Iterator[tuple[str, int]],
        prefixes: dict[str, tuple[Location, ...]],
    ) -> Iterator[RangeTask]:
        """The key ranges of a customer or space, in the order of its registry: one per
        `Tuning.registry_slice` registered assets of a space, listed in the locations
        `prefixes` gives for its prefix (none: a space nowhere on S3 still has its assets
        written, with zeros), then each other prefix of `prefixes` whole, to find its orphans
        and unattributed keys."""
        unregistered = dict(prefixes)
        for piece in registry_slices(registry, self.settings.tuning.registry_slice):
            prefix = space_prefix(customer, piece.space)
            unregistered.pop(prefix, None)
            yield RangeTask(prefix, piece.key_range, piece.assets, prefixes.get(prefix, ()))
        for prefix, locations in unregistered.items():
            yield RangeTask(prefix, KeyRange(), {}, locations)

    def tally_slices(self, tasks: Iterator[RangeTask], tally: Tally, stager: Stager) -> None:
        """Lists the ranges of `tasks`, each location of a range as a task of the run's pool,
        with at most `ranges_in_flight` ranges at once; as each range ends, its assets' figures
        are staged and its counts and orphans added to `tally`.

        Memory is bounded by the ranges in flight, whatever the size of the customer or
        space."""
        limit = self.ranges_in_flight()
        ends = EmptyBeyond()
        in_flight: list[tuple[RangeTask, list[Future[Tally]]]] = []

        def ended(futures: list[Future[Tally]]) -> bool:
            """Every location of the range listed, or one failed."""
            return all(f.done() for f in futures) or any(
                f.done() and f.exception() for f in futures
            )

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
                    add_range(tally, stager, [self.tally(task.assets)])
                    continue
                while len(in_flight) >= limit:
                    settle()
                futures = [
                    self.pool.submit(self.tally_range, location, task, ends)
                    for location in task.locations
                ]
                in_flight.append((task, futures))
            while in_flight:
                settle()
        finally:
            for _, futures in in_flight:
                for future in futures:
                    future.cancel()

    def ranges_in_flight(self) -> int:
        """Ranges of one customer listed at once: enough to keep every worker busy with one
        location each, so that a customer alone can use the whole pool."""
        return max(2, -(-self.settings.workers // len(self.settings.locations)))

    def tally_range(self, location: Location, task: RangeTask, ends: EmptyBeyond) -> Tally:
        """Attributes the objects of a range in one location as its pages stream in; a range
        that an earlier one showed to be empty there is not listed."""
        tally = self.tally(task.assets)
        cut = RangeCut(location.prefix + task.prefix, task.key_range)
        where = f"{location.bucket}/{cut.prefix}"
        if ends.covers(where, task.key_range):
            return tally
        for page in self.pages(location.bucket, cut.prefix, start_after=cut.start_after):
            tally.add(location.kind, location.bucket, location.prefix, cut.take(page.objects))
            if cut.done:
                break
        gap = cut.gap()
        if gap is not None:
            ends.note(where, gap)
        for prefix in cut.unshown():
            for page in self.pages(location.bucket, prefix):
                tally.add(location.kind, location.bucket, location.prefix, page.objects)
        return tally

    def tally_prefix(self, location: Location, prefix: str) -> Tally:
        """Counts every object under `prefix` (relative to the location's), outside every
        customer, as unattributed."""
        tally = self.tally({})
        for page in self.pages(location.bucket, location.prefix + prefix):
            tally.add(location.kind, location.bucket, location.prefix, page.objects)
        return tally

    def tally_asset(self, location: Location, asset_id: str, registry: dict[str, int]) -> Tally:
        """The objects of one asset: its exact key and everything under `id/`.

        The exact key sorts first among keys that start with it, so one key of a listing at
        the id is enough, and the cost does not depend on how many siblings share the id's
        prefix.
        """
        tally = self.tally(registry)
        exact = location.prefix + asset_id
        first = next(self.pages(location.bucket, exact, max_keys=1))
        exact_objects = [(key, size) for key, size in first.objects if key == exact]
        tally.add(location.kind, location.bucket, location.prefix, exact_objects)
        for page in self.pages(location.bucket, exact + "/"):
            tally.add(location.kind, location.bucket, location.prefix, page.objects)
        return tally


def add_range(tally: Tally, stager: Stager, tallies: list[Tally]) -> None:
    """Stages the figures of a range's assets, summed over its locations, and adds its counts
    and orphans to the customer's `tally`."""
    merged = tallies[0]
    for other in tallies[1:]:
        merged.merge(other)
    stager.add(merged.asset_rows())
    merged.sizes.clear()
    tally.merge(merged)
