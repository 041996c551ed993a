"""Billing over random histories: the library's byte-hours equal a sum taken hour by hour, and the
database's sums of every customer equal the library's, over periods across a 31-day January and
a 28-day February, beginning and ending anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import psycopg
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from storage_calc import db, reports
from storage_calc.billing import GIB, HOUR, Commit, Period, Step, bill, month_start, next_month
from tests.figures_over_time import at, commit

Conn = psycopg.Connection[Any]
FIRST = at("2024-12-25 00:00")
DAYS = 75  # to March 10th: December's end, January, February and part of March
LATER = at("2027-01-01 00:00")
CLASSES = ("STANDARD", "GLACIER")


@dataclass(frozen=True)
class Written:
    """A commit of a history: `customer` at `when`, of `only` these spaces (or all), with
    figures for each space of `spaces`, named as tests.figures_over_time.commit takes them."""

    customer: int
    when: datetime
    only: tuple[int, ...] | None
    spaces: dict[int | None, dict[str, Any]]


def billable_figures() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "current": st.integers(0, 10**12),
            "noncurrent": st.integers(0, 10**6),
            "incomplete_uploads": st.integers(0, 10**6),
            "billed": st.integers(0, 10**12),
            "by_storage_class": st.dictionaries(st.sampled_from(CLASSES), st.integers(0, 10**9)),
        }
    )


figures = st.builds(
    lambda platform, adjuncts, billable: {**platform, **adjuncts, **billable},
    st.fixed_dictionaries(
        {
            "images": st.integers(0, 1000),
            "artefacts": st.integers(0, 10**12),
            "thumbnails": st.integers(0, 10**6),
        }
    ),
    st.one_of(st.just({}), st.fixed_dictionaries({"adjuncts": st.integers(0, 10**6)})),
    st.one_of(st.just({}), billable_figures()),
)


@st.composite
def histories(draw: st.DrawFn) -> list[Written]:
    minutes = draw(st.sets(st.integers(0, DAYS * 24 * 60), min_size=1, max_size=12))
    written = []
    for minute in sorted(minutes):
        only = draw(st.one_of(st.none(), st.just((1,)), st.just((2,))))
        spaces = draw(st.dictionaries(st.sampled_from(only or (1, 2, None)), figures, max_size=3))
        written.append(
            Written(draw(st.sampled_from((2, 3))), FIRST + timedelta(minutes=minute), only, spaces)
        )
    return written


@st.composite
def periods(draw: st.DrawFn) -> Period:
    start = draw(st.integers(0, (DAYS + 5) * 24))
    hours = draw(st.integers(1, 40 * 24))
    return Period(FIRST + start * HOUR, FIRST + (start + hours) * HOUR)


def as_steps(history: list[Written]) -> list[Step]:
    return [
        Step(
            customer=w.customer,
            space=space,
            valid_from=w.when,
            images=f["images"],
            artefact_bytes=f["artefacts"],
            thumbnail_bytes=f["thumbnails"],
            adjunct_bytes=f.get("adjuncts"),
            current_bytes=f.get("current"),
            by_storage_class=f.get("by_storage_class"),
            noncurrent_bytes=f.get("noncurrent"),
            incomplete_upload_bytes=f.get("incomplete_uploads"),
            billed_bytes=f.get("billed"),
        )
        for w in history
        for space, f in w.spaces.items()
    ]


def as_commits(history: list[Written]) -> list[Commit]:
    return [Commit(customer=w.customer, committed_at=w.when, only_spaces=w.only) for w in history]


def hour_by_hour(period: Period, steps: list[Step], customer: int) -> dict[str, Any]:
    """The byte-hours and exact GB-months of `customer` over `period`, taking at each hour the
    latest step of each space committed at or before it."""
    byte_hours: dict[str, int] = {}
    gb_months: dict[str, Fraction] = {}
    covered = 0
    mine = sorted((s for s in steps if s.customer == customer), key=lambda s: s.valid_from)
    hour = period.start
    while hour < period.end:
        month = month_start(hour)
        month_hours = (next_month(month) - month) // HOUR
        in_force = {step.space: step for step in mine if step.valid_from <= hour}
        covered += bool(in_force)
        for step in in_force.values():
            adjuncts = step.adjunct_bytes or 0
            values = {
                "images": step.images,
                "artefacts": step.artefact_bytes,
                "thumbnails": step.thumbnail_bytes,
                "adjuncts": adjuncts,
                "stored": step.artefact_bytes + step.thumbnail_bytes + adjuncts,
                "current": step.current_bytes,
                "noncurrent": step.noncurrent_bytes,
                "incomplete_uploads": step.incomplete_upload_bytes,
                "billed": step.billed_bytes,
            }
            for name, value in values.items():
                if value is not None:
                    byte_hours[name] = byte_hours.get(name, 0) + value
                    gb_months[name] = gb_months.get(name, Fraction(0)) + Fraction(
                        value, month_hours * GIB
                    )
        hour += HOUR
    return {"byte_hours": byte_hours, "gb_months": gb_months, "hours_covered": covered}


@hypothesis_settings(max_examples=60, deadline=None)
@given(history=histories(), period=periods())
def test_byte_hours_are_the_sum_of_the_figures_in_force_at_each_hour(
    history: list[Written], period: Period
) -> None:
    steps = as_steps(history)
    usages = bill(period, steps, as_commits(history), LATER)
    for usage in usages:
        expected = hour_by_hour(period, steps, usage.customer)
        assert usage.byte_hours == expected["byte_hours"]
        exact = usage.exact_gb_months()
        assert {n: exact[n] for n in expected["gb_months"]} == expected["gb_months"]
        assert usage.hours_covered == expected["hours_covered"]


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=histories(), period=periods())
def test_the_database_sums_random_histories_as_the_library_does(
    conn: Conn, history: list[Written], period: Period
) -> None:
    # Every example runs in the test's one database.
    conn.execute(
        "TRUNCATE storage_calc.space_figures, storage_calc.figure_spaces,"
        " storage_calc.figure_commits CASCADE"
    )
    for w in history:
        commit(conn, w.customer, w.when, w.spaces, w.only)
    _, summed = reports.billing_usage(conn, period, None)
    now = db.server_now(conn)
    steps = db.billing_steps(conn, period.start, period.end, None)
    commits = db.billing_commits(conn, period.start, period.end, None)
    library = bill(period, steps, commits, now)
    assert summed == library
    assert [u.exact_gb_months() for u in summed] == [u.exact_gb_months() for u in library]
    assert [u.exact_class_gb_months() for u in summed] == [
        u.exact_class_gb_months() for u in library
    ]
