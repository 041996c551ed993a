"""Reads of the figures over time (storage_calc.space_figures, stepped by
`figures.write_staged`) for `report billing`: the steps and commits of a period, and every
customer's byte-hours summed by the database."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from datetime import datetime

from storage_calc.billing import FIGURES, Commit, Gap, Period, Step, Totals
from storage_calc.db.connection import Connection, execute, translated
from storage_calc.db.reads import fetch


@contextlib.contextmanager
def snapshot(conn: Connection) -> Iterator[None]:
    """A read-only transaction whose statements all see one snapshot of the database."""
    with translated("starting a read-only transaction failed"), conn.transaction():
        execute(conn, "repeatable_read")
        execute(conn, "report_settings")
        yield


def billing_steps(
    conn: Connection, start: datetime, end: datetime, customer: int | None
) -> list[Step]:
    """The steps a period needs: each space's step in force at `start` and those before
    `end`."""
    return fetch(
        conn,
        "billing_steps",
        Step,
        "the figures over time",
        start=start,
        end=end,
        customer=customer,
    )


def billing_commits(
    conn: Connection, start: datetime, end: datetime, customer: int | None
) -> list[Commit]:
    """The commits of figures from `start` up to `end`."""
    return fetch(
        conn,
        "billing_commits",
        Commit,
        "the commits of figures",
        start=start,
        end=end,
        customer=customer,
    )


def _hour(moment: datetime) -> int:
    """Hours since the epoch, of a whole hour."""
    return int(moment.timestamp()) // 3600


def billing_totals(
    conn: Connection, period: Period, end: datetime, customer: int | None, classes: bool = True
) -> tuple[list[Totals], dict[int, tuple[int, Gap | None]]]:
    """Every customer's (or one's) byte-hours over `period` up to `end`, summed by the
    database (by storage class too, where `classes`), and each customer's commits in it and
    longest gap (see billing.from_totals)."""
    months = period.months()
    params = {
        "start": period.start,
        "end": period.end,
        "customer": customer,
        "classes": classes,
        "start_h": _hour(period.start),
        "end_h": _hour(end),
        "month_from": [_hour(a) for a, _, _ in months],
        "month_to": [_hour(b) for _, b, _ in months],
    }
    summed = [name for name in FIGURES if name != "stored"]
    with translated("summing the figures over time failed"):
        rows = execute(conn, "billing_totals", **params).fetchall()
        totals = []
        for _, group in itertools.groupby(rows, key=lambda row: row[0]):
            first, *others = group
            months_ = [row for row in (first, *others) if row[5] is not None]
            figures: dict[str, list[int | None]] = {
                name: [None if row[6 + i] is None else int(row[6 + i]) for row in months_]
                for i, name in enumerate(summed)
            }
            figures["stored"] = [
                a + t + j  # type: ignore[operator]  # never None: sums of NOT NULL columns
                for a, t, j in zip(
                    figures["artefacts"], figures["thumbnails"], figures["adjuncts"], strict=True
                )
            ]
            totals.append(
                Totals(
                    customer=first[0],
                    seen_from=first[1],
                    covered_from=first[2],
                    first_figure=first[3],
                    last_figure=first[4],
                    months=[row[5] for row in months_],
                    figures=figures if months_ else {},
                    classes=[
                        None if row[14] is None else {k: int(v) for k, v in row[14].items()}
                        for row in months_
                    ],
                )
            )
        seen = execute(
            conn,
            "billing_gaps",
            customers=[t.customer for t in totals],
            seen=[t.seen_from for t in totals],
            start=period.start,
            end=end,
            one=customer,
        ).fetchall()
    gaps: dict[int, tuple[int, Gap | None]] = {c: (n, Gap(a, b)) for c, n, a, b in seen}
    return totals, gaps
