"""What the figures and the run history say: the reads behind `runs`, `report` and the quota
check. Every read goes through one of the `storage_calc` views or tables (docs/views.md)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from storage_calc import billing, db


@dataclass(frozen=True)
class RunRow:
    """A run of the history, newest first."""

    id: int
    started: datetime
    finished: datetime | None
    seconds: float | None
    scope: str
    shard: str | None
    outcome: str
    customers: int
    customers_failed: int
    customers_skipped: int
    objects: int
    bytes: int
    assets: int
    orphans: int
    orphan_bytes: int
    unattributed: int
    # The prefixes outside every customer it could not list: `unattributed` is short of them.
    uncounted: list[str]
    drift_bytes: int
    misfiled: int
    error: str | None


@dataclass(frozen=True)
class CustomerUsage:
    """A customer's totals beside the limits of its storage policy."""

    customer: int
    storage_policy: str
    images: int
    max_images: int | None
    images_percent: Decimal | None
    size_bytes: int
    max_size_bytes: int | None
    size_percent: Decimal | None
    thumbnails_bytes: int
    last_calculated: datetime | None


@dataclass(frozen=True)
class SpaceUsage:
    """A space's totals; `rank` 1 is the space storing the most bytes."""

    rank: int
    customer: int
    space: int
    images: int
    size_bytes: int
    thumbnails_bytes: int
    total_bytes: int
    last_calculated: datetime | None


@dataclass(frozen=True)
class Drift:
    """How a CustomerStorage row changed over the runs of a period: the figures before the
    first change and after the last (between runs the platform's own tallies move them too),
    and `corrected_bytes`, the stored and thumbnail bytes the runs themselves set right.
    `space` is None for the customer-level row."""

    customer: int
    space: int | None
    runs: int
    images_before: int
    images_after: int
    size_before: int
    size_after: int
    thumbnails_before: int
    thumbnails_after: int
    corrected_bytes: int
    last_changed: datetime


@dataclass(frozen=True)
class CustomerOrphans:
    """The orphans found by the latest complete computation of a customer."""

    customer: int
    run_id: int
    found_at: datetime | None
    spaces: int
    objects: int
    bytes: int
    assets: int


@dataclass(frozen=True)
class SpaceOrphanRow:
    """The orphans of one space in the latest complete computation of its customer."""

    customer: int
    space: int
    objects: int
    bytes: int
    assets: int
    examples: list[str]


@dataclass(frozen=True)
class MisfiledAssets:
    """The misfiled "Images" rows found by a customer's latest complete computation: rows
    filed under the customer whose Id names another customer or space, counted nowhere."""

    customer: int
    run_id: int
    found_at: datetime | None
    misfiled: int
    examples: list[str]


@dataclass(frozen=True)
class QuotaUse:
    """A customer at or beyond the margin of a limit of its policy: `over` past a limit,
    `near` otherwise."""

    customer: int
    storage_policy: str
    status: str
    images: int
    max_images: int
    images_percent: Decimal
    size_bytes: int
    max_size_bytes: int
    size_percent: Decimal


@dataclass(frozen=True)
class BillableStorage:
    """What S3 bills for storage for a customer's space (`space` None: its keys outside any
    space), as the latest computation of it found (see `storage_calc.billable`)."""

    customer: int
    space: int | None
    current_objects: int
    current_bytes: int
    billed_bytes: int
    noncurrent_versions: int
    noncurrent_bytes: int
    delete_markers: int
    incomplete_uploads: int
    incomplete_upload_bytes: int
    oldest_upload: datetime | None
    by_storage_class: dict[str, int]
    last_checked: datetime
    last_calculated: datetime


def recent_runs(conn: db.Connection, limit: int) -> list[RunRow]:
    return db.fetch(conn, "recent_runs", RunRow, "the run history", limit=limit)


def customer_usage(conn: db.Connection, customer: int | None, limit: int) -> list[CustomerUsage]:
    """Customers storing the most bytes first (images and thumbnails)."""
    return db.fetch(
        conn, "customer_usage", CustomerUsage, "customer usage", customer=customer, limit=limit
    )


def space_usage(conn: db.Connection, customer: int | None, limit: int) -> list[SpaceUsage]:
    """Spaces storing the most bytes first."""
    return db.fetch(conn, "space_usage", SpaceUsage, "space usage", customer=customer, limit=limit)


def drift_since(conn: db.Connection, since: datetime, customer: int | None) -> list[Drift]:
    """The customer rows (or, for one customer, also its space rows) changed by runs started
    since `since`, largest change of bytes first."""
    return db.fetch(conn, "drift_since", Drift, "drift", since=since, customer=customer)


def customer_orphans(conn: db.Connection) -> list[CustomerOrphans]:
    """Customers whose latest complete computation found orphans, most bytes first."""
    return db.fetch(conn, "customer_orphans", CustomerOrphans, "orphans")


def space_orphans(conn: db.Connection, customer: int) -> list[SpaceOrphanRow]:
    return db.fetch(conn, "space_orphans", SpaceOrphanRow, "orphans", customer=customer)


def misfiled_assets(conn: db.Connection, customer: int | None) -> list[MisfiledAssets]:
    """Customers (or one) whose latest complete computation found misfiled rows, most first."""
    return db.fetch(conn, "misfiled_assets", MisfiledAssets, "misfiled assets", customer=customer)


def quota_use(
    conn: db.Connection, margin: Decimal, customers: list[int] | None = None
) -> list[QuotaUse]:
    """Customers (of `customers`, or all) using at least `margin` percent of a limit of their
    policy, compared exactly (no rounding, no floating point)."""
    return db.fetch(conn, "quota", QuotaUse, "quota", margin=margin, customers=customers)


def billable_storage(conn: db.Connection, customer: int | None) -> list[BillableStorage]:
    """The billable bytes of every customer (or one), per space, by customer and space."""
    return db.fetch(
        conn, "billable_report", BillableStorage, "the billable bytes", customer=customer
    )


def billing_usage(
    conn: db.Connection,
    period: billing.Period,
    customer: int | None,
    classes: bool = True,
) -> tuple[datetime, list[billing.Usage]]:
    """What every customer (or `customer`, per space) stored over `period`, from one snapshot
    of the figures over time, reported up to the database clock's last whole hour: that hour,
    and the usages. Per space, the steps are summed here; per customer, by the database, with
    the byte-hours by storage class only where `classes`."""
    with db.snapshot(conn):
        now = db.server_now(conn)
        end = max(period.start, min(period.end, billing.floor_hour(now)))
        if customer is not None:
            steps = db.billing_steps(conn, period.start, period.end, customer)
            commits = db.billing_commits(conn, period.start, end, customer)
            return end, billing.bill(period, steps, commits, now, per_space=True)
        totals, gaps = db.billing_totals(conn, period, end, customer, classes)
    return end, billing.from_totals(period, now, totals, gaps)


def as_json(row: Any) -> dict[str, Any]:
    """A report row as JSON values: exact integers, percentages as numbers, ISO timestamps."""
    return {key: _json_value(value) for key, value in dataclasses.asdict(row).items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value
