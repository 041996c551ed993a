"""The inventory source of a run (`run --source inventory`): the newest report of each
location's bucket, checked, downloaded and summed before any customer is computed, and each
customer's figures staged from those sums instead of from listings."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import structlog

from storage_calc import db
from storage_calc.billable import BillableTally, billing_classes, in_scope
from storage_calc.config import Settings
from storage_calc.errors import ConfigError, Interrupted, InventoryError
from storage_calc.keys import scope_prefix
from storage_calc.model import (
    AssetKey,
    Billable,
    Destination,
    Layout,
    Location,
    LocationKind,
    ScopeSums,
    Spaces,
)
from storage_calc.sources import Outside, check_stop
from storage_calc.sources.inventory import Report, check_age, download_report, latest_report
from storage_calc.sources.inventory_sums import MISSING_LIBRARY, InventorySums, ReportFiles
from storage_calc.sources.listing import S3Client
from storage_calc.sources.versions import uploads_of

log = structlog.get_logger("storage_calc")
T = TypeVar("T")

OPTIONS = {
    LocationKind.ARTEFACT: "--storage-inventory",
    LocationKind.THUMBNAIL: "--thumbs-inventory",
}


@dataclass(frozen=True, kw_only=True)
class Inventory:
    """A run's reports, summed (`sums`, in `directory`), as the run's source: `created` is
    when the oldest of the reports was created, the `LastChecked` of every figure computed from
    them. Unfinished uploads, which no report lists, are listed on `s3`."""

    sums: InventorySums
    created: datetime
    directory: Path
    settings: Settings
    layout: Layout
    s3: S3Client
    stop: threading.Event | None

    def customers(self, outside: Outside | None) -> set[int]:
        if outside is not None:
            count, size = self.sums.outside()
            outside.tally.objects = outside.tally.unattributed_objects = count
            outside.tally.bytes = outside.tally.unattributed_bytes = size
        return self.sums.customers()

    def checked(self) -> datetime | None:
        return self.created

    def stage(
        self, conn: db.Connection, customer: int, spaces: Spaces, asset: AssetKey | None
    ) -> tuple[ScopeSums, int]:
        """Stages the figures of a customer's `spaces` (or `asset`) from the reports' sums."""
        asset_id = asset.id if asset else None
        with tempfile.TemporaryDirectory(dir=self.directory) as tmp:
            registry, staged = Path(tmp) / "registry.csv", Path(tmp) / "staged.csv"
            db.export_registry(conn, self.layout, customer, spaces, asset_id, registry)
            sums = self.sums.stage(customer, spaces, asset_id, registry, staged)
            return sums, db.stage_csv(conn, staged)

    def billable(self, customer: int, spaces: Spaces) -> tuple[Billable, ...]:
        """The versions and delete markers of the reports of all versions; the unfinished
        uploads listed."""
        tally = BillableTally()
        for space, cls, latest, marker, count, size, billed in self.sums.versions(customer):
            tally.add_versions((customer, space), cls, latest, marker, count, size, billed)
        prefix = scope_prefix(customer, spaces.one)
        uploads_of(self.s3, self.settings.locations, prefix, tally, self.counted)
        return tuple(row for row in tally.rows() if in_scope(row, customer, spaces))

    def counted(self, page: T, objects: int) -> T:
        """A page of unfinished uploads; Interrupted once a stop is requested."""
        check_stop(self.stop)
        return page


def destination(settings: Settings, location: Location) -> Destination:
    """The inventory destination configured for `location`'s bucket."""
    found = (
        settings.storage_inventory
        if location.kind is LocationKind.ARTEFACT
        else settings.thumbs_inventory
    )
    if found is None:
        raise ConfigError(
            f"--source inventory needs {OPTIONS[location.kind]}: the S3 Inventory destination "
            f"of bucket {location.bucket!r}"
        )
    return found


@contextlib.contextmanager
def opened(
    settings: Settings, s3: S3Client, layout: Layout, stop: threading.Event | None = None
) -> Iterator[Inventory]:
    """The run's reports, checked (complete, of the configured bucket, younger than
    `max_inventory_age`), downloaded and summed, for the duration of the block; Interrupted
    between two reports once `stop` is set.

    Every report is found and checked before any data file is downloaded, so a stale or
    foreign report fails the run at once; any fault is one InventoryError and nothing is
    written. The data files and DuckDB's database live in a temporary directory (under TMPDIR)
    that the block removes."""
    reports = [
        (location, latest_report(s3, destination(settings, location), location.bucket))
        for location in settings.locations
    ]
    for _, report in reports:
        check_age(report, settings.max_inventory_age)
    with tempfile.TemporaryDirectory(prefix="storage-calc-inventory-") as tmp:
        directory = Path(tmp)
        billing = billing_classes() if settings.billable else None
        sums = InventorySums(
            directory, layout.customer_row_at_null, layout.asset_adjuncts, billing, settings.tuning
        )
        try:
            summing = 0.0
            for number, (location, report) in enumerate(reports):
                if stop is not None and stop.is_set():
                    raise Interrupted("interrupted while reading the inventory reports")
                files = directory / f"report-{number}"
                files.mkdir()
                source = downloaded(s3, location, report, files)
                began = time.monotonic()
                sums.add(source)
                summing += time.monotonic() - began
            began = time.monotonic()
            sums.finish()
            summing += time.monotonic() - began
            log.info("inventory_attributed", objects=sums.objects, seconds=round(summing, 3))
            created = min(report.created for _, report in reports)
            yield Inventory(
                sums=sums,
                created=created,
                directory=directory,
                settings=settings,
                layout=layout,
                s3=s3,
                stop=stop,
            )
        finally:
            sums.close()


def downloaded(s3: S3Client, location: Location, report: Report, directory: Path) -> ReportFiles:
    """`report`'s data files in `directory`, ORC ones rewritten as Parquet, which DuckDB
    reads; logs their size and the time taken."""
    began = time.monotonic()
    files = download_report(s3, report, directory)
    if report.file_format == "ORC":
        files = tuple(orc_as_parquet(path) for path in files)
    downloaded_s = round(time.monotonic() - began, 3)
    source = ReportFiles(
        location, report, files, tuple(f"s3://{report.bucket}/{f.key}" for f in report.files)
    )
    log.info(
        "inventory_downloaded",
        location=str(location),
        report=report.manifest_url,
        created=report.created.isoformat(),
        still_written=list(report.skipped),
        files=len(files),
        bytes=sum(path.stat().st_size for path in files),
        seconds=downloaded_s,
    )
    return source


def orc_as_parquet(path: Path) -> Path:
    """An ORC data file rewritten as Parquet beside it, stripe by stripe."""
    try:
        import pyarrow.orc as orc
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InventoryError(MISSING_LIBRARY) from exc
    target = path.with_suffix(".parquet")
    source = orc.ORCFile(path)
    with pq.ParquetWriter(target, source.schema) as writer:
        for stripe in range(source.nstripes):
            writer.write_batch(source.read_stripe(stripe))
    path.unlink()
    return target
