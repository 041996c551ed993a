"""Report rows as aligned text tables for people: sizes in binary units, times in UTC. Formats
what it is given and reads nothing: `reports` is imported for the types of its rows only.

Scripts read `--json` instead, which keeps exact bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from storage_calc import reports
from storage_calc.model import Migration, PrunedFigures, SchemaStatus

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_bytes(count: int) -> str:
    """`1023 B`, `1.5 KiB`, `24.6 MiB`: powers of 1024, one decimal."""
    if abs(count) < 1024:
        return f"{count} B"
    value = float(count)
    for unit in _UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def format_signed_bytes(count: int) -> str:
    return ("+" if count > 0 else "") + format_bytes(count)


def format_signed(count: int) -> str:
    return f"{count:+,}" if count else "0"


def format_time(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s" if minutes else f"{rest:.1f}s"


def format_percent(percent: Decimal | None) -> str:
    return "" if percent is None else f"{percent:.1f}%"


def format_limit(limit: int | None, bytes_: bool) -> str:
    if limit is None:
        return "no policy"
    return format_bytes(limit) if bytes_ else f"{limit:,}"


@dataclass(frozen=True)
class Column:
    """A column: its title, how a row gives its cell, and whether it holds a number."""

    title: str
    cell: Callable[[Any], str]
    number: bool = True


def render(columns: Sequence[Column], rows: Sequence[Any]) -> str:
    """The rows under a header line, numbers aligned right and text left."""
    cells = [[column.title for column in columns]] + [
        [column.cell(row) for column in columns] for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(
            (cell.rjust(width) if column.number else cell.ljust(width))
            for cell, width, column in zip(line, widths, columns, strict=True)
        ).rstrip()
        for line in cells
    ]
    return "\n".join(lines)


RUNS = (
    Column("id", lambda r: str(r.id)),
    Column("started (UTC)", lambda r: format_time(r.started), number=False),
    Column("took", lambda r: format_seconds(r.seconds)),
    Column("scope", lambda r: r.scope + (f" shard {r.shard}" if r.shard else ""), number=False),
    Column("outcome", lambda r: r.outcome, number=False),
    Column("customers", lambda r: f"{r.customers:,}"),
    Column("failed", lambda r: f"{r.customers_failed:,}"),
    Column("skipped", lambda r: f"{r.customers_skipped:,}"),
    Column("objects", lambda r: f"{r.objects:,}"),
    Column("listed", lambda r: format_bytes(r.bytes)),
    Column("orphaned", lambda r: format_bytes(r.orphan_bytes)),
    Column("drift", lambda r: format_bytes(r.drift_bytes)),
    Column("misfiled", lambda r: f"{r.misfiled:,}"),
    Column("error", lambda r: r.error or "", number=False),
)

CUSTOMER_USAGE = (
    Column("customer", lambda r: str(r.customer)),
    Column("policy", lambda r: r.storage_policy, number=False),
    Column("images", lambda r: f"{r.images:,}"),
    Column("of", lambda r: format_limit(r.max_images, bytes_=False)),
    Column("used", lambda r: format_percent(r.images_percent)),
    Column("size", lambda r: format_bytes(r.size_bytes)),
    Column("of", lambda r: format_limit(r.max_size_bytes, bytes_=True)),
    Column("used", lambda r: format_percent(r.size_percent)),
    Column("thumbnails", lambda r: format_bytes(r.thumbnails_bytes)),
    Column("calculated (UTC)", lambda r: format_time(r.last_calculated), number=False),
)

SPACE_USAGE = (
    Column("rank", lambda r: str(r.rank)),
    Column("customer", lambda r: str(r.customer)),
    Column("space", lambda r: str(r.space)),
    Column("images", lambda r: f"{r.images:,}"),
    Column("size", lambda r: format_bytes(r.size_bytes)),
    Column("thumbnails", lambda r: format_bytes(r.thumbnails_bytes)),
    Column("total", lambda r: format_bytes(r.total_bytes)),
    Column("calculated (UTC)", lambda r: format_time(r.last_calculated), number=False),
)

DRIFT = (
    Column("customer", lambda r: str(r.customer)),
    Column("space", lambda r: "all" if r.space is None else str(r.space)),
    Column("runs", lambda r: str(r.runs)),
    Column("images", lambda r: f"{r.images_before:,} → {r.images_after:,}"),
    Column("Δ", lambda r: format_signed(r.images_after - r.images_before)),
    Column("size", lambda r: f"{format_bytes(r.size_before)} → {format_bytes(r.size_after)}"),
    Column("Δ", lambda r: format_signed_bytes(r.size_after - r.size_before)),
    Column("thumbnails Δ", lambda r: format_signed_bytes(r.thumbnails_after - r.thumbnails_before)),
    Column("corrected", lambda r: format_bytes(r.corrected_bytes)),
    Column("last changed (UTC)", lambda r: format_time(r.last_changed), number=False),
)

CUSTOMER_ORPHANS = (
    Column("customer", lambda r: str(r.customer)),
    Column("spaces", lambda r: str(r.spaces)),
    Column("objects", lambda r: f"{r.objects:,}"),
    Column("size", lambda r: format_bytes(r.bytes)),
    Column("asset ids", lambda r: f"{r.assets:,}"),
    Column("run", lambda r: str(r.run_id)),
    Column("found (UTC)", lambda r: format_time(r.found_at), number=False),
)

SPACE_ORPHANS = (
    Column("customer", lambda r: str(r.customer)),
    Column("space", lambda r: str(r.space)),
    Column("objects", lambda r: f"{r.objects:,}"),
    Column("size", lambda r: format_bytes(r.bytes)),
    Column("asset ids", lambda r: f"{r.assets:,}"),
    Column("examples", lambda r: " ".join(r.examples), number=False),
)

MISFILED = (
    Column("customer", lambda r: str(r.customer)),
    Column("misfiled", lambda r: f"{r.misfiled:,}"),
    Column("examples", lambda r: " ".join(r.examples), number=False),
    Column("run", lambda r: str(r.run_id)),
    Column("found (UTC)", lambda r: format_time(r.found_at), number=False),
)

QUOTA = (
    Column("customer", lambda r: str(r.customer)),
    Column("policy", lambda r: r.storage_policy, number=False),
    Column("status", lambda r: r.status, number=False),
    Column("images", lambda r: f"{r.images:,} of {r.max_images:,}"),
    Column("used", lambda r: format_percent(r.images_percent)),
    Column("size", lambda r: f"{format_bytes(r.size_bytes)} of {format_bytes(r.max_size_bytes)}"),
    Column("used", lambda r: format_percent(r.size_percent)),
)


def format_classes(by_storage_class: dict[str, int]) -> str:
    return ", ".join(f"{cls} {format_bytes(size)}" for cls, size in by_storage_class.items())


BILLABLE = (
    Column("customer", lambda r: str(r.customer)),
    Column("space", lambda r: "none" if r.space is None else str(r.space)),
    Column("objects", lambda r: f"{r.current_objects:,}"),
    Column("current", lambda r: format_bytes(r.current_bytes)),
    Column("billed", lambda r: format_bytes(r.billed_bytes)),
    Column("noncurrent", lambda r: f"{r.noncurrent_versions:,}"),
    Column("size", lambda r: format_bytes(r.noncurrent_bytes)),
    Column("delete markers", lambda r: f"{r.delete_markers:,}"),
    Column("uploads", lambda r: f"{r.incomplete_uploads:,}"),
    Column("size", lambda r: format_bytes(r.incomplete_upload_bytes)),
    Column("oldest upload (UTC)", lambda r: format_time(r.oldest_upload), number=False),
    Column("current by class", lambda r: format_classes(r.by_storage_class), number=False),
    Column("calculated (UTC)", lambda r: format_time(r.last_calculated), number=False),
)

# Which columns show which report row, so a caller needs only the rows.
COLUMNS: dict[type, tuple[Column, ...]] = {
    reports.RunRow: RUNS,
    reports.CustomerUsage: CUSTOMER_USAGE,
    reports.SpaceUsage: SPACE_USAGE,
    reports.Drift: DRIFT,
    reports.CustomerOrphans: CUSTOMER_ORPHANS,
    reports.SpaceOrphanRow: SPACE_ORPHANS,
    reports.MisfiledAssets: MISFILED,
    reports.QuotaUse: QUOTA,
    reports.BillableStorage: BILLABLE,
}


def schema_status(status: SchemaStatus, migrations: Sequence[Migration]) -> list[str]:
    """The lines of `db status`."""
    tables = ", ".join(f'"{name}"' for name in status.platform_tables) or "none"
    lines = [f"platform tables: {tables}"]
    if status.layout is not None:
        layout = status.layout
        lines += [
            f"layout: {layout.name}",
            "  customer-level row: "
            + ('"Space" IS NULL' if layout.customer_row_at_null else '"Space" = 0'),
            "  space 0: "
            + (
                "the stub space, computed like any other"
                if layout.customer_row_at_null
                else "the customer-level row, holds no assets"
            ),
            '  "ImageStorage"."AdjunctSize": '
            + (
                "adjunct bytes, apart from Size"
                if layout.asset_adjuncts
                else "absent: adjunct keys count in Size"
            ),
            '  "CustomerStorage" adjunct totals: '
            + ('counted from hosted "Adjuncts" rows' if layout.space_adjuncts else "absent"),
        ]
    elif status.layout_error is not None:
        lines.append(f"layout: not writable: {status.layout_error}")
    latest = migrations[-1].version if migrations else 0
    if status.applied:
        version = f"version {status.applied[-1]} of {latest}"
    else:
        version = "made before schema versions" if status.has_schema else "absent"
    lines.append(f"storage_calc schema: {version}")
    todo = []
    if not status.platform_tables:
        todo.append("create the platform's tables (--platform-schema seed or current)")
    todo += [f"apply {m.version:04d}_{m.name}" for m in status.pending]
    lines.append("db migrate would: " + ("; ".join(todo) if todo else "nothing, it is up to date"))
    return lines


def pruned_figures(pruned: PrunedFigures, open_month: datetime) -> list[str]:
    """The lines of `db prune` about the figures over time: what it deleted, and what it kept
    from before the time it pruned to, and why."""
    before = format_time(pruned.before)
    month = f"{open_month:%Y-%m}"
    needs = (
        f"the figures in force when the open month {month} starts"
        if pruned.before == open_month
        else f"the figures in force at {before} UTC; the open month {month} needs none older"
    )
    return [
        f"deleted {pruned.deleted_steps} steps and {pruned.deleted_commits} commits of figures "
        f"over time from before {before} UTC",
        f"kept {pruned.kept_steps} steps from before {before} UTC, the latest of each of "
        f"{pruned.kept_spaces} spaces: {needs}",
    ]
