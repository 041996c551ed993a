"""`report billing` for people (a table), for scripts (JSON) and for invoicing systems (CSV).
Pure: exact byte-hours beside GB-months rounded to six places, costs as decimal strings."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from storage_calc.billing import BYTE_FIGURES, Period, Usage
from storage_calc.prices import Prices
from storage_calc.tables import Column, format_bytes, format_time, render


@dataclass(frozen=True)
class BillingReport:
    """The rows of one report: every customer, or the spaces of one customer (`per_space`)."""

    period: Period
    reported_to: datetime
    per_space: bool
    usages: tuple[Usage, ...]
    prices: Prices | None = None

    @property
    def total_cost(self) -> Decimal | None:
        """The sum of the rows' costs, each rounded as an invoice line is."""
        if self.prices is None:
            return None
        return sum((u.cost or Decimal(0) for u in self.usages), Decimal(0))

    @property
    def billable(self) -> bool:
        return any("billed" in u.byte_hours for u in self.usages)


def _time(moment: datetime | None) -> str:
    return format_time(moment)[:16]


def _gap(usage: Usage) -> str:
    if usage.longest_gap is None:
        return ""
    return f"{float(usage.longest_gap.hours):.1f}h from {_time(usage.longest_gap.start)}"


def _space(usage: Usage) -> str:
    return "none" if usage.space is None else str(usage.space)


def _gb(usage: Usage, figure: str) -> str:
    value = usage.gb_months.get(figure)
    return "" if value is None else f"{value:.3f}"


def table(report: BillingReport) -> str:
    """The report as an aligned table, a line of the period above it and the total below."""
    if not report.usages:
        return "no figures over time cover that period"
    columns = [Column("customer", lambda u: str(u.customer))]
    if report.per_space:
        columns.append(Column("space", _space))
    columns += [
        Column("hours", lambda u: f"{u.hours_covered}/{report.period.hours}"),
        Column("commits", lambda u: f"{u.commits:,}"),
        Column("longest gap", _gap, number=False),
        Column("first figure", lambda u: _time(u.first_figure), number=False),
        Column("last figure", lambda u: _time(u.last_figure), number=False),
        Column("average stored", lambda u: format_bytes(u.average.get("stored", 0))),
        Column("GB-months stored", lambda u: _gb(u, "stored")),
        Column("artefacts", lambda u: _gb(u, "artefacts")),
        Column("thumbnails", lambda u: _gb(u, "thumbnails")),
    ]
    if any(u.byte_hours.get("adjuncts") for u in report.usages):
        columns.append(Column("adjuncts", lambda u: _gb(u, "adjuncts")))
    if report.billable:
        columns.append(Column("billed", lambda u: _gb(u, "billed")))
    if report.prices is not None:
        currency = report.prices.currency
        columns.append(Column(f"cost ({currency})", lambda u: f"{u.cost:,}"))
    period = report.period
    lines = [
        f"{_time(period.start)} to {_time(period.end)} UTC ({period.hours} hours), "
        f"figures up to {_time(report.reported_to)} UTC; GB-months of 2^30 bytes",
        render(columns, report.usages),
    ]
    if report.prices is not None:
        lines.append(f"total: {report.total_cost:,} {report.prices.currency}")
    return "\n".join(lines)


def _json_figures(usage: Usage) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name, byte_hours in usage.byte_hours.items():
        if name == "images":
            figures[name] = {"image_hours": byte_hours, "average": usage.average[name]}
        else:
            figures[name] = {
                "byte_hours": byte_hours,
                "average_bytes": usage.average[name],
                "gb_months": float(usage.gb_months[name]),
            }
    return figures


def as_json(report: BillingReport) -> str:
    """One JSON object: the period, one entry per row, and the total where priced."""
    rows = []
    for usage in report.usages:
        row: dict[str, Any] = {"customer": usage.customer}
        if report.per_space:
            row["space"] = usage.space
        gap = usage.longest_gap
        row |= {
            "hours_covered": usage.hours_covered,
            "first_figure": usage.first_figure.isoformat() if usage.first_figure else None,
            "last_figure": usage.last_figure.isoformat() if usage.last_figure else None,
            "commits": usage.commits,
            "longest_gap_hours": None if gap is None else round(float(gap.hours), 3),
            "longest_gap_from": None if gap is None else gap.start.isoformat(),
            "longest_gap_to": None if gap is None else gap.end.isoformat(),
            "figures": _json_figures(usage),
            "current_by_storage_class": {
                name: {"byte_hours": value, "gb_months": float(usage.class_gb_months[name])}
                for name, value in usage.class_byte_hours.items()
            },
        }
        if report.prices is not None:
            row["cost"] = str(usage.cost)
        rows.append(row)
    document: dict[str, Any] = {
        "from": report.period.start.isoformat(),
        "to": report.period.end.isoformat(),
        "hours": report.period.hours,
        "reported_to": report.reported_to.isoformat(),
        "rows": rows,
    }
    if report.prices is not None:
        document |= {"currency": report.prices.currency, "total_cost": str(report.total_cost)}
    return json.dumps(document)


def csv_text(report: BillingReport) -> str:
    """One line per row; per figure its exact byte-hours and GB-months, per storage class of
    the current bytes the same; the cost and currency where priced."""
    classes = sorted({name for u in report.usages for name in u.class_byte_hours})
    header = [
        "from",
        "to",
        "customer",
        "space",
        "hours",
        "hours_covered",
        "first_figure",
        "last_figure",
        "commits",
        "longest_gap_hours",
        "image_hours",
        "average_images",
    ]
    for name in BYTE_FIGURES:
        header += [f"{name}_byte_hours", f"{name}_average_bytes", f"{name}_gb_months"]
    for name in classes:
        header += [f"current_{name}_byte_hours", f"current_{name}_gb_months"]
    if report.prices is not None:
        header += ["cost", "currency"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for usage in report.usages:
        gap = usage.longest_gap
        line: list[Any] = [
            report.period.start.isoformat(),
            report.period.end.isoformat(),
            usage.customer,
            "" if not usage.space_level or usage.space is None else usage.space,
            report.period.hours,
            usage.hours_covered,
            usage.first_figure.isoformat() if usage.first_figure else "",
            usage.last_figure.isoformat() if usage.last_figure else "",
            usage.commits,
            "" if gap is None else f"{float(gap.hours):.3f}",
            usage.byte_hours.get("images", 0),
            usage.average.get("images", 0),
        ]
        for name in BYTE_FIGURES:
            present = name in usage.byte_hours
            line += [
                usage.byte_hours[name] if present else "",
                usage.average[name] if present else "",
                usage.gb_months[name] if present else "",
            ]
        for name in classes:
            present = name in usage.class_byte_hours
            line += [
                usage.class_byte_hours[name] if present else "",
                usage.class_gb_months[name] if present else "",
            ]
        if report.prices is not None:
            line += [usage.cost, report.prices.currency]
        writer.writerow(line)
    return out.getvalue()


def report_of(
    period: Period,
    reported_to: datetime,
    per_space: bool,
    usages: Sequence[Usage],
    prices: Prices | None,
) -> BillingReport:
    """The report, with each row's cost where `prices` are given."""
    if prices is not None:
        usages = [replace(u, cost=prices.cost(u)) for u in usages]
    return BillingReport(period, reported_to, per_space, tuple(usages), prices)
