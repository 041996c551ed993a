"""What each customer stored over a billing period, as AWS bills storage: byte-hours summed over
the period, divided by the hours of the month, in GB-months of 2^30 bytes. Pure: the figures
over time (storage_calc.space_figures) come in as `Step`s, the commits as `Commit`s.

A step stands from the first whole hour at or after it until the next step of its space: each
hour of the period is charged the figures in force at its start (a run at 02:13 counts from
03:00). So byte-hours are exact integers, and a figure committed and replaced within one hour
counts for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from itertools import groupby, pairwise

from storage_calc.errors import ConfigError

HOUR = timedelta(hours=1)
GIB = 2**30
# GB-months are shown rounded to this many places; byte-hours stay exact.
GB_MONTH_PLACES = Decimal("0.000001")

# The figures of a space over time: image-hours for `images`, byte-hours for the others.
# `stored` is what the platform's figures hold: artefacts, thumbnails and adjuncts.
PLATFORM_FIGURES = ("images", "artefacts", "thumbnails", "adjuncts", "stored")
BILLABLE_FIGURES = ("current", "noncurrent", "incomplete_uploads", "billed")
FIGURES = PLATFORM_FIGURES + BILLABLE_FIGURES
BYTE_FIGURES = FIGURES[1:]


@dataclass(frozen=True, kw_only=True)
class Step:
    """A row of storage_calc.space_figures: what a space held from `valid_from` on. The
    billable figures are None until a `--billable` run has computed the space; `adjunct_bytes`
    where the layout has no adjuncts. A NULL `space` holds billable keys outside any space."""

    customer: int
    space: int | None
    valid_from: datetime
    images: int
    artefact_bytes: int
    thumbnail_bytes: int
    adjunct_bytes: int | None = None
    current_bytes: int | None = None
    by_storage_class: Mapping[str, int] | None = None
    noncurrent_bytes: int | None = None
    incomplete_upload_bytes: int | None = None
    billed_bytes: int | None = None

    def values(self) -> dict[str, int]:
        """Each figure the step has, by name (FIGURES)."""
        adjuncts = self.adjunct_bytes or 0
        values = {
            "images": self.images,
            "artefacts": self.artefact_bytes,
            "thumbnails": self.thumbnail_bytes,
            "adjuncts": adjuncts,
            "stored": self.artefact_bytes + self.thumbnail_bytes + adjuncts,
        }
        for name, value in zip(
            BILLABLE_FIGURES,
            (
                self.current_bytes,
                self.noncurrent_bytes,
                self.incomplete_upload_bytes,
                self.billed_bytes,
            ),
            strict=True,
        ):
            if value is not None:
                values[name] = value
        return values


@dataclass(frozen=True, kw_only=True)
class Commit:
    """A row of storage_calc.figure_commits: a transaction that wrote a customer's figures, of
    every space but `excluded_spaces` where `only_spaces` is None."""

    customer: int
    committed_at: datetime
    only_spaces: Sequence[int] | None = None
    excluded_spaces: Sequence[int] | None = None

    def covers(self, space: int | None) -> bool:
        """Whether the commit computed `space` (None: the keys outside any space, computed only
        with the whole customer)."""
        excluded = self.excluded_spaces or ()
        if space is None:
            return self.only_spaces is None and not excluded
        return (self.only_spaces is None or space in self.only_spaces) and space not in excluded


@dataclass(frozen=True)
class Period:
    """Whole hours in UTC, from `start` up to (not including) `end`."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for moment in (self.start, self.end):
            if moment.tzinfo is None or moment != floor_hour(moment):
                raise ConfigError(f"{moment.isoformat()} is not a whole hour in UTC")
        if self.end <= self.start:
            raise ConfigError("a billing period must end after it starts")

    @property
    def hours(self) -> int:
        return (self.end - self.start) // HOUR

    def months(self) -> list[tuple[datetime, datetime, int]]:
        """The calendar months the period overlaps: (from, to) within the period, and the hours
        of the whole month, which AWS divides a month's byte-hours by."""
        parts = []
        month = month_start(self.start)
        while month < self.end:
            following = next_month(month)
            parts.append(
                (max(month, self.start), min(following, self.end), (following - month) // HOUR)
            )
            month = following
        return parts


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def month_start(moment: datetime) -> datetime:
    """The start of the calendar month (UTC) of `moment`."""
    return floor_hour(moment).replace(day=1, hour=0)


def next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def month_period(text: str) -> Period:
    """`2026-11`: that month in UTC."""
    try:
        start = datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(f"{text!r} is not a month: YYYY-MM, such as 2026-11") from None
    return Period(start, next_month(start))


def parse_hour(text: str) -> datetime:
    """A whole hour in UTC: `2026-11-03`, `2026-11-03T05`, `2026-11-03T05:00`, with or without a
    `Z` or `+00:00`."""
    stripped = text.removesuffix("Z")
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        try:
            moment = datetime.strptime(stripped, "%Y-%m-%dT%H")
        except ValueError:
            raise ConfigError(
                f"{text!r} is not a time: YYYY-MM-DD or YYYY-MM-DDTHH[:00] in UTC"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset() != timedelta(0):
        raise ConfigError(f"{text!r} is not in UTC")
    if moment != floor_hour(moment):
        raise ConfigError(f"{text!r} is not a whole hour")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Gap:
    """The longest time within the covered part of a period without a commit."""

    start: datetime
    end: datetime

    @property
    def hours(self) -> Fraction:
        return Fraction((self.end - self.start) // timedelta(microseconds=1), 3_600_000_000)


@dataclass(frozen=True, kw_only=True)
class Usage:
    """A customer's (or, with `space_level`, one space's) storage over a period.

    `byte_hours` per figure (image-hours for `images`) and per storage class of `current`
    (`class_byte_hours`), exact; `gb_months` the same divided by the hours of each month and by
    2^30, rounded; `average` byte-hours over the hours of the period, rounded to a byte. The
    coverage: `hours_covered`, the hours of the period with a figure in force (up to `end`, the
    last whole hour reported); `first_figure` and `last_figure`, when the earliest and latest
    step that counted were committed; `commits`, the commits within the period; `longest_gap`,
    the longest time without one, from the later of the period's start and the first figure.
    """

    customer: int
    space: int | None
    space_level: bool
    end: datetime
    byte_hours: dict[str, int]
    class_byte_hours: dict[str, int]
    gb_months: dict[str, Decimal]
    class_gb_months: dict[str, Decimal]
    average: dict[str, int]
    hours_covered: int
    first_figure: datetime | None
    last_figure: datetime | None
    commits: int
    longest_gap: Gap | None
    # The byte-hours of each month of the period, and the hours of those months, from which
    # prices take exact GB-months: rounding each figure first would round a bill twice.
    by_month: dict[str, list[int]] = field(repr=False, compare=False)
    class_by_month: dict[str, list[int]] = field(repr=False, compare=False)
    month_hours: tuple[int, ...] = field(repr=False, compare=False)
    cost: Decimal | None = None

    def exact_gb_months(self) -> dict[str, Fraction]:
        """The GB-months of each figure, exact."""
        return _gb_months(self.by_month, self.month_hours)

    def exact_class_gb_months(self) -> dict[str, Fraction]:
        """The GB-months of the current bytes of each storage class, exact."""
        return _gb_months(self.class_by_month, self.month_hours)


class _Sums:
    """Byte-hours by figure and month, and the coverage, of one space or one customer."""

    def __init__(self, months: int) -> None:
        self.by_month: dict[str, list[int]] = {}
        self.classes: dict[str, list[int]] = {}
        self.months = months
        self.covered_from: datetime | None = None
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.seen_from: datetime | None = None

    def add(
        self, values: Mapping[str, int], table: dict[str, list[int]], month: int, hours: int
    ) -> None:
        for name, value in values.items():
            table.setdefault(name, [0] * self.months)[month] += value * hours

    def merge(self, other: _Sums) -> None:
        for mine, theirs in ((self.by_month, other.by_month), (self.classes, other.classes)):
            for name, months in theirs.items():
                row = mine.setdefault(name, [0] * self.months)
                for index, value in enumerate(months):
                    row[index] += value
        self.covered_from = _earliest(self.covered_from, other.covered_from)
        self.first = _earliest(self.first, other.first)
        self.last = _latest(self.last, other.last)
        self.seen_from = _earliest(self.seen_from, other.seen_from)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def bill(
    period: Period,
    steps: Iterable[Step],
    commits: Iterable[Commit],
    now: datetime,
    per_space: bool = False,
) -> list[Usage]:
    """The usage of every customer over `period` (per space with `per_space`), by customer and
    space, reported up to the last whole hour before `now`.

    `steps` are, for each space, the step in force at the period's start (if any) and those
    within it, in any order; `commits` those of the period (others are ignored).
    """
    end = max(period.start, min(period.end, floor_hour(now)))
    months = period.months()
    by_customer: dict[int, list[Commit]] = {}
    for commit in commits:
        by_customer.setdefault(commit.customer, []).append(commit)
    ordered = sorted(steps, key=lambda s: (s.customer, s.space is not None, s.space or 0))
    usages = []
    for customer, customer_steps in groupby(ordered, key=lambda s: s.customer):
        customer_commits = sorted(
            (c for c in by_customer.get(customer, ()) if period.start <= c.committed_at < end),
            key=lambda c: c.committed_at,
        )
        total = _Sums(len(months))
        for space, space_steps in groupby(customer_steps, key=lambda s: s.space):
            sums = _space_sums(sorted(space_steps, key=lambda s: s.valid_from), period, end, months)
            total.merge(sums)
            if per_space:
                covering = [c.committed_at for c in customer_commits if c.covers(space)]
                gap = _longest_gap(sums.seen_from, covering, end)
                usages.append(_usage(customer, space, True, sums, len(covering), gap, period, end))
        if not per_space:
            times = [c.committed_at for c in customer_commits]
            gap = _longest_gap(total.seen_from, times, end)
            usages.append(_usage(customer, None, False, total, len(times), gap, period, end))
    return usages


@dataclass(frozen=True, kw_only=True)
class Totals:
    """A customer's steps over a period as the database sums them (the query billing_totals,
    for reports of every customer): for each month of the period with figures (`months`,
    numbered from 1), the byte-hours of each figure (None where no step had it) and of each
    storage class of the current bytes; and its coverage, as `Usage` has it (`seen_from`: the
    later of the period's start and its first step)."""

    customer: int
    seen_from: datetime
    covered_from: datetime | None
    first_figure: datetime | None
    last_figure: datetime | None
    months: Sequence[int]
    figures: Mapping[str, Sequence[int | None]]
    classes: Sequence[Mapping[str, int] | None]


def from_totals(
    period: Period,
    now: datetime,
    totals: Iterable[Totals],
    commits: Mapping[int, tuple[int, Gap | None]],
) -> list[Usage]:
    """The usage of every customer of `totals`, as `bill` gives it from their steps; `commits`
    holds each customer's commits within the period and its longest gap (none: (0, None))."""
    end = max(period.start, min(period.end, floor_hour(now)))
    months = len(period.months())
    usages = []
    for total in totals:
        sums = _Sums(months)
        sums.covered_from, sums.seen_from = total.covered_from, total.seen_from
        sums.first, sums.last = total.first_figure, total.last_figure
        for name, values in total.figures.items():
            for month, value in zip(total.months, values, strict=True):
                if value is not None:
                    sums.by_month.setdefault(name, [0] * months)[month - 1] += value
        for month, classes in zip(total.months, total.classes, strict=True):
            for name, value in (classes or {}).items():
                sums.classes.setdefault(name, [0] * months)[month - 1] += value
        count, gap = commits.get(total.customer, (0, None))
        usages.append(_usage(total.customer, None, False, sums, count, gap, period, end))
    return usages


def _space_sums(
    steps: list[Step], period: Period, end: datetime, months: list[tuple[datetime, datetime, int]]
) -> _Sums:
    sums = _Sums(len(months))
    for index, step in enumerate(steps):
        begins = max(ceil_hour(step.valid_from), period.start)
        following = steps[index + 1].valid_from if index + 1 < len(steps) else None
        ends = min(ceil_hour(following), end) if following is not None else end
        sums.seen_from = _earliest(sums.seen_from, max(step.valid_from, period.start))
        if ends <= begins:
            continue
        sums.covered_from = _earliest(sums.covered_from, begins)
        sums.first = _earliest(sums.first, step.valid_from)
        sums.last = _latest(sums.last, step.valid_from)
        values = step.values()
        for month, (month_from, month_to, _) in enumerate(months):
            hours = (min(ends, month_to) - max(begins, month_from)) // HOUR
            if hours > 0:
                sums.add(values, sums.by_month, month, hours)
                if step.by_storage_class:
                    sums.add(step.by_storage_class, sums.classes, month, hours)
    return sums


def _gb_months(
    by_month: Mapping[str, list[int]], month_hours: Sequence[int]
) -> dict[str, Fraction]:
    return {
        name: sum(
            (Fraction(value, hours * GIB) for value, hours in zip(row, month_hours, strict=True)),
            Fraction(0),
        )
        for name, row in by_month.items()
    }


def _rounded_gb_months(
    by_month: Mapping[str, list[int]], month_hours: Sequence[int]
) -> dict[str, Decimal]:
    """GB-months rounded half even to GB_MONTH_PLACES. A month's figure is one division of
    Decimals, exact to 28 digits (byte-hours of up to 10^22 leave 16 of them); a period over
    months adds exact fractions first."""
    if len(month_hours) == 1:
        divisor = Decimal(month_hours[0] * GIB)
        return {
            name: (Decimal(row[0]) / divisor).quantize(GB_MONTH_PLACES, ROUND_HALF_EVEN)
            for name, row in by_month.items()
        }
    return {name: _rounded(value) for name, value in _gb_months(by_month, month_hours).items()}


def _rounded(value: Fraction, places: Decimal = GB_MONTH_PLACES) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
        places, rounding=ROUND_HALF_EVEN
    )


def _average(total: int, hours: int) -> int:
    """`total / hours` rounded half even, in integers."""
    quotient, remainder = divmod(total, hours)
    if 2 * remainder > hours or (2 * remainder == hours and quotient % 2):
        quotient += 1
    return quotient


def _usage(
    customer: int,
    space: int | None,
    space_level: bool,
    sums: _Sums,
    commits: int,
    longest_gap: Gap | None,
    period: Period,
    end: datetime,
) -> Usage:
    month_hours = tuple(hours for _, _, hours in period.months())
    by_month = {name: sums.by_month[name] for name in FIGURES if name in sums.by_month}
    classes = dict(sorted(sums.classes.items()))
    byte_hours = {name: sum(row) for name, row in by_month.items()}
    rounded = _rounded_gb_months(by_month, month_hours)
    rounded.pop("images", None)
    return Usage(
        customer=customer,
        space=space,
        space_level=space_level,
        end=end,
        byte_hours=byte_hours,
        class_byte_hours={name: sum(row) for name, row in classes.items()},
        gb_months=rounded,
        class_gb_months=_rounded_gb_months(classes, month_hours),
        average={n: _average(v, period.hours) for n, v in byte_hours.items()},
        hours_covered=(end - sums.covered_from) // HOUR if sums.covered_from else 0,
        first_figure=sums.first,
        last_figure=sums.last,
        commits=commits,
        longest_gap=longest_gap,
        by_month=by_month,
        class_by_month=classes,
        month_hours=month_hours,
    )


def _longest_gap(since: datetime | None, times: list[datetime], end: datetime) -> Gap | None:
    if since is None or since >= end:
        return None
    moments = [since, *(t for t in times if since <= t < end), end]
    start, stop = max(pairwise(moments), key=lambda pair: pair[1] - pair[0])
    return Gap(start, stop)
