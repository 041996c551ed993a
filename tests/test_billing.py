"""Billing over figures over time, pure: byte-hours of step functions computed by hand, months of
28 and 31 days, coverage and gaps, prices. No fixtures."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from storage_calc.billing import GIB, Commit, Period, Step, bill, month_period, parse_hour
from storage_calc.errors import ConfigError
from storage_calc.prices import parse_prices
from tests.figures_over_time import at

LATER = at("2027-06-01 00:00")


def step(customer: int, space: int | None, when: str, **figures: Any) -> Step:
    values: dict[str, Any] = {"images": 0, "artefact_bytes": 0, "thumbnail_bytes": 0}
    return Step(customer=customer, space=space, valid_from=at(when), **(values | figures))


def commit(customer: int, when: str, **kwargs: Any) -> Commit:
    return Commit(customer=customer, committed_at=at(when), **kwargs)


def test_a_31_day_month_with_runs_at_irregular_times() -> None:
    october = month_period("2026-10")
    assert october.hours == 31 * 24
    history = [
        step(2, 5, "2026-09-30 02:00", artefact_bytes=100, thumbnail_bytes=10),
        step(2, 5, "2026-10-10 02:13", artefact_bytes=300, thumbnail_bytes=10),  # from 03:00
        step(2, 5, "2026-10-20 01:00", artefact_bytes=0, thumbnail_bytes=0),  # on the hour
    ]
    [usage] = bill(october, history, [], LATER)
    # Oct 1 00:00 to Oct 10 03:00 at 100; to Oct 20 01:00 at 300; then nothing.
    assert usage.byte_hours["artefacts"] == (9 * 24 + 3) * 100 + (10 * 24 - 2) * 300
    assert usage.byte_hours["thumbnails"] == (19 * 24 + 1) * 10
    stored = (9 * 24 + 3) * 110 + (10 * 24 - 2) * 310
    assert usage.byte_hours["stored"] == stored
    assert usage.gb_months["stored"] == round(Decimal(stored) / (744 * GIB), 6)
    assert usage.average["stored"] == round(Fraction(stored, 744))
    assert usage.hours_covered == 744
    assert (usage.first_figure, usage.last_figure) == (
        at("2026-09-30 02:00"),
        at("2026-10-20 01:00"),
    )


def test_a_28_day_february_divides_by_672_hours() -> None:
    february = month_period("2027-02")
    assert february.hours == 28 * 24
    [usage] = bill(february, [step(2, 5, "2027-01-15 02:00", artefact_bytes=GIB)], [], LATER)
    assert usage.byte_hours["artefacts"] == 28 * 24 * GIB
    assert usage.gb_months["artefacts"] == Decimal(1)


def test_a_period_over_two_months_divides_each_hour_by_its_own_month() -> None:
    period = Period(at("2027-01-31 00:00"), at("2027-02-02 00:00"))
    [usage] = bill(period, [step(2, 5, "2027-01-01 00:00", artefact_bytes=GIB)], [], LATER)
    assert usage.byte_hours["artefacts"] == 48 * GIB
    assert usage.exact_gb_months()["artefacts"] == Fraction(24, 31 * 24) + Fraction(24, 28 * 24)


def test_a_customer_created_mid_month_counts_from_its_first_figure() -> None:
    november = month_period("2026-11")
    history = [step(7, 1, "2026-11-16 02:30", artefact_bytes=1000)]
    [usage] = bill(november, history, [commit(7, "2026-11-16 02:30")], LATER)
    # From Nov 16 03:00 to Dec 1 00:00: 14 days and 21 hours.
    assert usage.byte_hours["artefacts"] == (14 * 24 + 21) * 1000
    assert usage.hours_covered == 14 * 24 + 21
    assert usage.average["artefacts"] == round(Fraction((14 * 24 + 21) * 1000, 720))
    # The longest gap starts at its first figure, not at the start of the month.
    assert usage.longest_gap is not None
    assert usage.longest_gap.start == at("2026-11-16 02:30")
    assert usage.longest_gap.end == at("2026-12-01 00:00")


def test_a_period_with_no_run_at_all_carries_the_figures_in_and_shows_the_whole_gap() -> None:
    november = month_period("2026-11")
    [usage] = bill(november, [step(2, 5, "2026-10-03 02:00", artefact_bytes=5)], [], LATER)
    assert usage.byte_hours["artefacts"] == 720 * 5
    assert usage.commits == 0
    assert usage.longest_gap is not None and usage.longest_gap.hours == 720


def test_the_longest_gap_between_runs_shows_a_missed_night() -> None:
    november = month_period("2026-11")
    runs = [f"2026-11-{day:02d} 02:00" for day in range(1, 31) if day not in (14, 15)]
    [usage] = bill(
        november,
        [step(2, 5, "2026-10-31 02:00", artefact_bytes=1)],
        [commit(2, when) for when in runs],
        LATER,
    )
    assert usage.commits == 28
    assert usage.longest_gap is not None
    assert (usage.longest_gap.start, usage.longest_gap.end) == (
        at("2026-11-13 02:00"),
        at("2026-11-16 02:00"),
    )
    assert usage.longest_gap.hours == 72


def test_a_space_deleted_mid_month_counts_until_its_zero_step_and_spaces_add_up() -> None:
    november = month_period("2026-11")
    history = [
        step(2, 5, "2026-10-31 02:00", artefact_bytes=100),
        step(2, 6, "2026-10-31 02:00", artefact_bytes=40),
        step(2, 6, "2026-11-11 02:05", artefact_bytes=0),  # deleted: zero from 03:00
    ]
    per_space = bill(november, history, [], LATER, per_space=True)
    assert [(u.space, u.byte_hours["artefacts"]) for u in per_space] == [
        (5, 720 * 100),
        (6, (10 * 24 + 3) * 40),
    ]
    [customer] = bill(november, history, [], LATER)
    assert customer.byte_hours["artefacts"] == 720 * 100 + (10 * 24 + 3) * 40


def test_two_steps_within_one_hour_count_only_the_later() -> None:
    history = [
        step(2, 5, "2026-11-02 02:05", artefact_bytes=100),
        step(2, 5, "2026-11-02 02:40", artefact_bytes=50),
    ]
    [usage] = bill(Period(at("2026-11-02 00:00"), at("2026-11-03 00:00")), history, [], LATER)
    assert usage.byte_hours["artefacts"] == 21 * 50
    assert usage.first_figure == usage.last_figure == at("2026-11-02 02:40")


def test_the_open_month_is_reported_up_to_the_last_whole_hour() -> None:
    history = [step(2, 5, "2026-11-30 02:00", artefact_bytes=10)]
    [usage] = bill(month_period("2026-12"), history, [], at("2026-12-07 15:30"))
    assert usage.end == at("2026-12-07 15:00")
    assert usage.byte_hours["artefacts"] == (6 * 24 + 15) * 10
    assert usage.hours_covered == 6 * 24 + 15


def test_billable_figures_count_from_the_first_billable_run_and_by_storage_class() -> None:
    november = month_period("2026-11")
    history = [
        step(2, 5, "2026-10-31 02:00", artefact_bytes=100),
        step(2, 5, "2026-11-11 02:00", artefact_bytes=100, current_bytes=100, billed_bytes=130,
             by_storage_class={"STANDARD": 60, "STANDARD_IA": 40}, noncurrent_bytes=30,
             incomplete_upload_bytes=0),
    ]  # fmt: skip
    [usage] = bill(november, history, [], LATER)
    assert usage.byte_hours["billed"] == (19 * 24 + 22) * 130  # Nov 11 02:00 to Dec 1
    assert usage.class_byte_hours == {"STANDARD": 478 * 60, "STANDARD_IA": 478 * 40}
    assert usage.byte_hours["stored"] == 720 * 100


def test_commits_of_a_shard_cover_only_its_spaces() -> None:
    november = month_period("2026-11")
    history = [
        step(2, 5, "2026-10-31 02:00", artefact_bytes=1),
        step(2, 6, "2026-10-31 02:30", artefact_bytes=1),
    ]
    commits = [
        commit(2, "2026-11-10 02:00", only_spaces=[5]),
        commit(2, "2026-11-20 02:30", excluded_spaces=[5]),
    ]
    five, six = bill(november, history, commits, LATER, per_space=True)
    assert (five.commits, six.commits) == (1, 1)
    assert five.longest_gap is not None and five.longest_gap.start == at("2026-11-10 02:00")
    assert six.longest_gap is not None and six.longest_gap.end == at("2026-11-20 02:30")
    [customer] = bill(november, history, commits, LATER)
    assert customer.commits == 2


@pytest.mark.parametrize("text", ["2026-13", "2026-1-1", "november", "2026-11-01"], ids=str)
def test_a_month_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a month"):
        month_period(text)


def test_times_are_whole_hours_in_utc() -> None:
    assert parse_hour("2026-11-03T05") == at("2026-11-03 05:00")
    assert parse_hour("2026-11-03") == at("2026-11-03 00:00")
    assert parse_hour("2026-11-03T05:00Z") == at("2026-11-03 05:00")
    for text, reason in [
        ("2026-11-03T05:30", "not a whole hour"),
        ("2026-11-03T05:00+01:00", "not in UTC"),
        ("yesterday", "not a time"),
    ]:
        with pytest.raises(ConfigError, match=reason):
            parse_hour(text)
    with pytest.raises(ConfigError, match="must end after it starts"):
        Period(at("2026-11-03 05:00"), at("2026-11-03 05:00"))


PRICES = """
currency = "EUR"

[classes.STANDARD]
per_gb_month = "0.023"
figure = "current"

[classes.STANDARD_IA]
per_gb_month = 0.0125
figure = "current"
"""


def test_prices_charge_each_class_on_its_figure_from_exact_gb_months() -> None:
    prices = parse_prices(PRICES)
    history = [
        step(2, 5, "2026-10-31 02:00", current_bytes=0,
             by_storage_class={"STANDARD": 10 * GIB, "STANDARD_IA": 4 * GIB}),
    ]  # fmt: skip
    [usage] = bill(month_period("2026-11"), history, [], LATER)
    assert prices.cost(usage) == Decimal("0.28")  # 10 * 0.023 + 4 * 0.0125 = 0.28
    stored = parse_prices(
        'currency = "USD"\n[classes.STANDARD]\nper_gb_month = 1\nfigure = "stored"'
    )
    assert stored.cost(usage) == Decimal("0.00")


ONE = "currency = 'USD'\n[classes.STANDARD]\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("currency = ", "is not TOML"),
        ("[classes.STANDARD]\nper_gb_month = 1\nfigure = 'current'", "needs a currency"),
        ("currency = 'USD'", "at least one [classes.NAME]"),
        (ONE + "per_gb_month = 1\nfigure = 'size'", "figure must be"),
        (ONE + "per_gb_month = -1\nfigure = 'current'", "0 or more"),
        (ONE + "per_gb_month = 'x'\nfigure = 'current'", "not a number"),
        (ONE + "figure = 'current'", "needs per_gb_month"),
        ("vat = 1\n" + ONE + "per_gb_month = 1\nfigure = 'current'", "unknown key 'vat'"),
    ],
)  # fmt: skip
def test_a_bad_prices_file_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_prices(text, "prices.toml")


def test_a_gap_is_in_hours() -> None:
    [usage] = bill(
        Period(at("2026-11-01 00:00"), at("2026-11-01 03:00")),
        [step(2, 5, "2026-10-01 00:00")],
        [commit(2, "2026-11-01 00:30")],
        LATER,
    )
    assert usage.longest_gap is not None
    assert usage.longest_gap.end - usage.longest_gap.start == timedelta(hours=2, minutes=30)
    assert usage.longest_gap.hours == Fraction(5, 2)
