"""Figures over time from real runs (moto S3, the real PostgreSQL) and `report billing` over
them: each space stepped in the transaction that writes it, only when a figure changed; failed
and dry runs add nothing; histories moved to chosen times and billed by hand."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from click.testing import Result

from storage_calc import calculator, db, reports
from storage_calc.billing import Period, bill, month_start
from storage_calc.config import Settings
from storage_calc.model import AssetKey, Outcome, Scope, Shard
from storage_calc.sources.listing import S3Client
from storage_calc.tables import format_time
from tests.conftest import STORAGE, THUMBS, error_response
from tests.figures_over_time import at, commit, steps

Conn = psycopg.Connection[Any]


def moved_to(conn: Conn, when: datetime) -> None:
    """Moves the commits made since the last move (at the database clock, after every time of
    the history) to `when`, with their steps."""
    conn.execute(
        "WITH moved AS (UPDATE storage_calc.figure_commits SET committed_at = %(when)s"
        " WHERE committed_at > %(when)s RETURNING id)"
        " UPDATE storage_calc.space_figures SET valid_from = %(when)s"
        " WHERE commit_id IN (SELECT id FROM moved)",
        {"when": when},
    )


def commits(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT customer, only_spaces, excluded_spaces FROM storage_calc.figure_commits ORDER BY id"
    ).fetchall()


@pytest.fixture
def failing(s3: S3Client) -> Iterator[dict[str, bool]]:
    """While `failing["on"]`, every listing of customer 2 is denied."""
    state = {"on": False}

    def answer(request: Any, **_: Any) -> Any:
        if state["on"] and "list-type=2" in request.url and "prefix=2%2F" in request.url:
            return error_response(403, "AccessDenied")
        return None

    s3.meta.events.register("before-send.s3.ListObjectsV2", answer)
    yield state
    s3.meta.events.unregister("before-send.s3.ListObjectsV2", answer)


def test_a_run_steps_each_space_and_an_unchanged_rerun_adds_a_commit_only(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register("2/5/a", "2/6/b")
    put(STORAGE, {"2/5/a": 100, "2/6/b": 40})
    put(THUMBS, {"2/5/a/open/100.jpg": 10})
    calculator.run(settings, s3)
    calculator.run(settings, s3)
    assert steps(conn) == [(1, 2, 5, 1, 100, 10), (1, 2, 6, 1, 40, 0)]
    assert commits(conn) == [(2, None, None), (2, None, None)]
    run_ids = conn.execute("SELECT run_id FROM storage_calc.figure_commits ORDER BY id")
    assert [row[0] for row in run_ids] == [1, 2]


def test_dry_runs_and_failed_runs_add_nothing(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn, failing: dict[str, bool],
) -> None:  # fmt: skip
    register("2/5/a")
    put(STORAGE, {"2/5/a": 100})
    calculator.run(settings, s3)
    put(STORAGE, {"2/5/a": 300})
    calculator.run(settings, s3, dry_run=True)
    failing["on"] = True
    report = calculator.run(settings, s3)
    assert report.customers[0].outcome is Outcome.FAILED
    assert steps(conn) == [(1, 2, 5, 1, 100, 0)]
    assert len(commits(conn)) == 1


def test_a_run_of_one_asset_or_one_space_steps_only_that_space(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register("2/5/a", "2/6/b")
    put(STORAGE, {"2/5/a": 100, "2/6/b": 40})
    calculator.run(settings, s3)
    put(STORAGE, {"2/5/a": 300, "2/6/b": 50})
    calculator.run(settings, s3, scope=Scope(asset=AssetKey(2, 5, "a")))
    calculator.run(settings, s3, scope=Scope(customer=2, space=6))
    assert steps(conn)[2:] == [(2, 2, 5, 1, 300, 0), (3, 2, 6, 1, 50, 0)]
    assert commits(conn)[1:] == [(2, [5], None), (2, [6], None)]


def test_shards_step_the_spaces_each_computed_at_its_own_commit(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    register(*[f"2/{space}/a{n}" for space in (1, 2) for n in range(3)])
    put(STORAGE, {"2/1/a0": 1, "2/2/a0": 10})
    calculator.run(settings, s3, shard=Shard(0, 2))
    calculator.run(settings, s3, shard=Shard(1, 2))
    stepped = steps(conn)
    assert sorted((space, size) for _, _, space, _, size, _ in stepped) == [(1, 1), (2, 10)]
    assert sorted(commit for commit, *_ in stepped) == [1, 2]
    [first, second] = commits(conn)
    assert first[1:] != second[1:]


def test_a_billable_run_steps_its_figures_and_other_runs_carry_them_over(
    register: Callable[..., None], versioned: None, settings: Settings, s3: S3Client,
    conn: Conn, put: Callable[..., None],
) -> None:  # fmt: skip
    register("2/5/a")
    calculator.run(replace(settings, billable=True), s3)
    calculator.run(settings, s3)
    put(THUMBS, {"2/5/a/open/200.jpg": 7})
    calculator.run(settings, s3)
    rows = conn.execute(
        "SELECT s.space, f.thumbnail_bytes, f.current_bytes, f.noncurrent_bytes, f.billed_bytes,"
        " f.by_storage_class FROM storage_calc.space_figures f"
        " JOIN storage_calc.figure_spaces s ON s.id = f.space_id WHERE s.customer = 2"
        " ORDER BY f.commit_id, s.space NULLS FIRST"
    ).fetchall()
    [(billable,)] = conn.execute(
        "SELECT billed_bytes FROM storage_calc.billable_storage WHERE customer = 2 AND space = 5"
    ).fetchall()
    # The billable run: the keys outside any space (2/pdf/x) and space 5; the third run
    # steps space 5 again for its thumbnail, carrying the billable figures.
    assert [row[:2] for row in rows] == [(None, 0), (5, 5), (5, 12)]
    assert rows[1][4] == rows[2][4] == billable
    assert rows[1][2:] == rows[2][2:]
    assert rows[0][2] == 7 and rows[1][5]["STANDARD"] > 0


# A November of real runs, moved to chosen times (2024, before any clock a test meets):
# customer 2 has a in space 5 and b in space 6; customer 3 comes mid-month.
NOVEMBER = [
    "2024-10-31 02:10",  # nightly: a 100 + thumbnail 10, b 40
    "2024-11-10 02:40",  # nightly: a 300
    "2024-11-12 14:00",  # --asset 2/5/a: a 500
    "2024-11-14 02:00",  # nightly, failed for customer 2 (a is 700 by then): adds nothing
    "2024-11-16 02:20",  # nightly: a 700, b unregistered (space 6 zeroed), customer 3 c 1000
    "2024-11-25 01:55",  # nightly: nothing changed
]


@pytest.fixture
def november(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn, failing: dict[str, bool],
) -> None:  # fmt: skip
    register("2/5/a", "2/6/b")
    put(STORAGE, {"2/5/a": 100, "2/6/b": 40})
    put(THUMBS, {"2/5/a/open/100.jpg": 10})
    calculator.run(settings, s3)
    moved_to(conn, at(NOVEMBER[0]))
    put(STORAGE, {"2/5/a": 300})
    calculator.run(settings, s3)
    moved_to(conn, at(NOVEMBER[1]))
    put(STORAGE, {"2/5/a": 500})
    calculator.run(settings, s3, scope=Scope(asset=AssetKey(2, 5, "a")))
    moved_to(conn, at(NOVEMBER[2]))
    put(STORAGE, {"2/5/a": 700})
    failing["on"] = True
    assert calculator.run(settings, s3).customers[0].outcome is Outcome.FAILED
    moved_to(conn, at(NOVEMBER[3]))
    failing["on"] = False
    conn.execute('DELETE FROM "Images" WHERE "Id" = \'2/6/b\'')
    register("3/1/c")
    put(STORAGE, {"3/1/c": 1000})
    calculator.run(settings, s3)
    moved_to(conn, at(NOVEMBER[4]))
    calculator.run(settings, s3)
    moved_to(conn, at(NOVEMBER[5]))


def billing_json(invoke: Callable[..., Result], *args: str) -> dict[str, Any]:
    result = invoke("report", "billing", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_month_of_real_runs_bills_the_byte_hours_computed_by_hand(
    november: None, invoke: Callable[..., Result]
) -> None:
    report = billing_json(invoke, "--month", "2024-11")
    assert (report["from"], report["to"], report["hours"]) == (
        "2024-11-01T00:00:00+00:00", "2024-12-01T00:00:00+00:00", 720,
    )  # fmt: skip
    two, three = report["rows"]
    # Space 5: 100 until Nov 10 03:00 (the first whole hour after 02:40), 300 until the asset
    # run's Nov 12 14:00, 500 until Nov 16 03:00, then 700; space 6: 40 until Nov 16 03:00.
    space_5 = (9 * 24 + 3) * 100 + (2 * 24 + 11) * 300 + (3 * 24 + 13) * 500 + (14 * 24 + 21) * 700
    space_6 = (15 * 24 + 3) * 40
    assert two["figures"]["artefacts"]["byte_hours"] == space_5 + space_6
    assert two["figures"]["thumbnails"]["byte_hours"] == 720 * 10
    assert two["figures"]["stored"]["byte_hours"] == space_5 + space_6 + 720 * 10
    assert two["figures"]["stored"]["gb_months"] == round(
        (space_5 + space_6 + 7200) / 720 / 2**30, 6
    )
    assert two["figures"]["images"] == {
        "image_hours": 720 * 1 + (15 * 24 + 3) * 1, "average": round((720 + 363) / 720)
    }  # fmt: skip
    assert (two["commits"], two["hours_covered"]) == (4, 720)
    assert (two["first_figure"], two["last_figure"]) == (
        "2024-10-31T02:10:00+00:00", "2024-11-16T02:20:00+00:00",
    )  # fmt: skip
    # Nothing from Nov 1 00:00 until the run of Nov 10 02:40 (the one of Nov 14 failed).
    assert two["longest_gap_hours"] == round(9 * 24 + 2 + 40 / 60, 3)
    assert two["longest_gap_from"] == "2024-11-01T00:00:00+00:00"
    # Customer 3 from Nov 16 03:00; its longest gap starts at its first figure.
    assert three["figures"]["artefacts"]["byte_hours"] == (14 * 24 + 21) * 1000
    assert three["hours_covered"] == 14 * 24 + 21
    assert three["longest_gap_from"] == "2024-11-16T02:20:00+00:00"
    assert three["longest_gap_hours"] == round(8 * 24 + 23 + 35 / 60, 3)


def test_one_customer_is_billed_per_space(november: None, invoke: Callable[..., Result]) -> None:
    rows = billing_json(invoke, "--month", "2024-11", "--customer", "2")["rows"]
    assert [(r["space"], r["figures"]["artefacts"]["byte_hours"]) for r in rows] == [
        (5, (9 * 24 + 3) * 100 + (2 * 24 + 11) * 300 + (3 * 24 + 13) * 500 + (14 * 24 + 21) * 700),
        (6, (15 * 24 + 3) * 40),
    ]
    # The asset run computed space 5 only.
    assert [r["commits"] for r in rows] == [4, 3]


def test_a_period_after_the_last_run_carries_the_last_figures(
    november: None, invoke: Callable[..., Result]
) -> None:
    report = billing_json(invoke, "--from", "2024-12-01T00", "--to", "2024-12-03T00")
    two, three = report["rows"]
    assert two["figures"]["stored"]["byte_hours"] == 48 * (700 + 10)
    assert three["figures"]["stored"]["byte_hours"] == 48 * 1000
    assert (two["commits"], two["longest_gap_hours"]) == (0, 48)


def test_the_csv_has_a_line_per_customer_with_exact_byte_hours(
    november: None, invoke: Callable[..., Result], tmp_path: Any
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        'currency = "USD"\n[classes.STANDARD]\nper_gb_month = "0.023"\nfigure = "stored"\n'
    )
    result = invoke("report", "billing", "--month", "2024-11", "--csv", "--prices", str(prices))
    assert result.exit_code == 0, result.stderr
    header, two, _three = result.stdout.splitlines()
    columns = header.split(",")
    assert columns[:4] == ["from", "to", "customer", "space"]
    assert columns[-2:] == ["cost", "currency"]
    row = dict(zip(columns, two.split(","), strict=True))
    assert row["customer"] == "2" and row["currency"] == "USD"
    assert (
        int(row["artefacts_byte_hours"])
        == (9 * 24 + 3) * 100
        + (2 * 24 + 11) * 300
        + (3 * 24 + 13) * 500
        + (14 * 24 + 21) * 700
        + (15 * 24 + 3) * 40
    )
    assert row["cost"] == "0.00"  # a few hundred bytes


def test_the_table_shows_coverage_and_the_total_cost(
    november: None, invoke: Callable[..., Result], tmp_path: Any
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        'currency = "EUR"\n[classes.STANDARD]\nper_gb_month = 1e9\nfigure = "stored"\n'
    )
    result = invoke("report", "billing", "--month", "2024-11", "--prices", str(prices))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("2024-11-01 00:00 to 2024-12-01 00:00 UTC (720 hours)")
    assert lines[1].split()[:4] == ["customer", "hours", "commits", "longest"]
    assert lines[2].split()[:3] == ["2", "720/720", "4"]
    assert lines[3].split()[:3] == ["3", "357/720", "2"]
    assert lines[-1].startswith("total: ") and lines[-1].endswith(" EUR")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2024-13"], "'2024-13' is not a month"),
        (["--from", "2024-11-01T00"], "give --month, or both --from and --to"),
        (["--month", "2024-11", "--from", "2024-11-01T00"], "give either --month or --from"),
        (["--from", "2024-11-01T00:30", "--to", "2024-11-02"], "is not a whole hour"),
        (["--from", "2024-11-02", "--to", "2024-11-01"], "must end after it starts"),
        (["--month", "2024-11", "--json", "--csv"], "give either --json or --csv"),
        (["--month", "2024-11", "--prices", "/nonexistent/prices.toml"], "cannot read the prices"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    invoke: Callable[..., Result], args: list[str], message: str
) -> None:
    result = invoke("report", "billing", *args)
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()[-1:]
    assert line.startswith("Error: ") and message in line, result.stderr


def test_a_bad_prices_file_is_one_error_line_and_exit_2(
    invoke: Callable[..., Result], tmp_path: Any
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        'currency = "USD"\n[classes.STANDARD]\nper_gb_month = "cheap"\nfigure = "stored"\n'
    )
    result = invoke("report", "billing", "--month", "2024-11", "--prices", str(prices))
    assert (result.exit_code, result.stderr) == (
        2, f"Error: {prices}: [classes.STANDARD]: per_gb_month 'cheap' is not a number\n",
    )  # fmt: skip


def test_db_prune_keeps_the_figures_the_open_month_needs_and_says_so(
    conn: Conn, invoke: Callable[..., Result]
) -> None:
    month = month_start(db.server_now(conn))
    for days, size in ((100, 1), (40, 2), (20, 3), (1, 4)):
        commit(conn, 2, month - timedelta(days=days), {5: {"artefacts": size}})
    commit(conn, 2, month - timedelta(days=30))  # a night that changed nothing
    commit(conn, 3, month - timedelta(days=50), {1: {"artefacts": 9}})
    open_month = ["--month", f"{month:%Y-%m}", "--json"]
    before = invoke("report", "billing", *open_month).stdout
    result = invoke("db", "prune", "--older-than", "0h")
    assert result.exit_code == 0, result.stderr
    first = format_time(month)
    assert result.stderr.splitlines()[1:] == [
        f"deleted 3 steps and 4 commits of figures over time from before {first} UTC",
        f"kept 2 steps from before {first} UTC, the latest of each of 2 spaces: the figures in "
        f"force when the open month {month:%Y-%m} starts",
    ]
    assert invoke("report", "billing", *open_month).stdout == before
    assert steps(conn) == [(1, 2, 5, 0, 4, 0), (2, 3, 1, 0, 9, 0)]


def test_db_prune_of_an_older_age_keeps_the_step_in_force_at_that_age(
    conn: Conn, invoke: Callable[..., Result]
) -> None:
    now = db.server_now(conn)
    for days, size in ((200, 1), (150, 2), (60, 3)):
        commit(conn, 2, now - timedelta(days=days), {5: {"artefacts": size}})
    result = invoke("db", "prune", "--older-than", "90d")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[2].endswith("needs none older")
    assert "kept 1 steps" in result.stderr
    assert [size for *_, size, _ in steps(conn)] == [2, 3]


@pytest.fixture
def winter(conn: Conn) -> None:
    """Helper-written history over January and February 2025 (31 and 28 days): customer 2 with
    a space deleted mid-February and billable figures from January 20; customer 4 from
    February 10; customer 5 only before the period."""
    commit(conn, 2, at("2024-12-31 02:00"), {1: {"artefacts": 1000, "thumbnails": 24},
                                             2: {"artefacts": 500}})  # fmt: skip
    commit(conn, 2, at("2025-01-20 02:30"), {
        1: {"artefacts": 1000, "thumbnails": 24, "current": 1024, "billed": 1100,
            "noncurrent": 76, "incomplete_uploads": 0,
            "by_storage_class": {"STANDARD": 1000, "GLACIER": 24}},
    })  # fmt: skip
    commit(conn, 2, at("2025-02-14 02:00"), {2: {"artefacts": 0}}, only=[2])
    commit(conn, 4, at("2025-02-10 02:15"), {3: {"artefacts": 2**30}})
    commit(conn, 5, at("2024-06-01 02:00"), {1: {"artefacts": 7}})


def test_a_28_day_february_and_a_31_day_january_divide_by_their_own_hours(
    winter: None, invoke: Callable[..., Result]
) -> None:
    february = {r["customer"]: r for r in billing_json(invoke, "--month", "2025-02")["rows"]}
    # Space 1 all month; space 2 until its zero step on Feb 14 02:00.
    assert february[2]["figures"]["artefacts"]["byte_hours"] == 672 * 1000 + (13 * 24 + 2) * 500
    assert february[2]["figures"]["billed"]["byte_hours"] == 672 * 1100
    assert february[2]["current_by_storage_class"]["GLACIER"]["byte_hours"] == 672 * 24
    # Customer 4: one GiB from Feb 10 03:00, of the 672 hours of February.
    assert february[4]["figures"]["artefacts"] == {
        "byte_hours": (18 * 24 + 21) * 2**30,
        "average_bytes": round((18 * 24 + 21) * 2**30 / 672),
        "gb_months": round((18 * 24 + 21) / 672, 6),
    }
    assert february[5]["figures"]["artefacts"]["byte_hours"] == 672 * 7
    assert february[5]["commits"] == 0 and february[5]["longest_gap_hours"] == 672
    january = {r["customer"]: r for r in billing_json(invoke, "--month", "2025-01")["rows"]}
    assert january[2]["figures"]["stored"]["byte_hours"] == 744 * (1000 + 24 + 500)
    assert january[2]["figures"]["billed"]["byte_hours"] == (11 * 24 + 21) * 1100
    assert january[2]["figures"]["stored"]["gb_months"] == round(744 * 1524 / 744 / 2**30, 6)
    assert 4 not in january


@pytest.mark.parametrize(
    ("fixture", "start", "end"),
    [
        ("november", "2024-11-01 00:00", "2024-12-01 00:00"),
        ("november", "2024-11-10 00:00", "2024-11-17 05:00"),
        ("winter", "2025-01-10 00:00", "2025-02-20 00:00"),
        ("winter", "2025-02-01 00:00", "2025-03-01 00:00"),
    ],
)
def test_the_database_sums_every_customer_as_the_library_does_step_by_step(
    request: pytest.FixtureRequest, fixture: str, start: str, end: str, conn: Conn
) -> None:
    request.getfixturevalue(fixture)
    period = Period(at(start), at(end))
    now = db.server_now(conn)
    _, summed = reports.billing_usage(conn, period, None)
    steps_ = db.billing_steps(conn, period.start, period.end, None)
    commits_ = db.billing_commits(conn, period.start, period.end, None)
    assert summed == bill(period, steps_, commits_, now)
    assert [u.exact_gb_months() for u in summed] == [
        u.exact_gb_months() for u in bill(period, steps_, commits_, now)
    ]


def test_the_monthly_view_gives_the_byte_hours_of_the_report(november: None, conn: Conn) -> None:
    rows = conn.execute(
        "SELECT month, customer, stored_byte_hours, stored_gb_months"
        " FROM storage_calc.monthly_gb_months WHERE month < '2024-12-01' ORDER BY 1, 2"
    ).fetchall()
    stored = (
        (9 * 24 + 3) * 100 + (2 * 24 + 11) * 300 + (3 * 24 + 13) * 500 + (14 * 24 + 21) * 700
        + (15 * 24 + 3) * 40 + 720 * 10
    )  # fmt: skip
    assert [row[:3] for row in rows] == [
        (at("2024-10-01 00:00"), 2, 21 * (100 + 10 + 40)),  # from Oct 31 03:00
        (at("2024-11-01 00:00"), 2, stored),
        (at("2024-11-01 00:00"), 3, (14 * 24 + 21) * 1000),
    ]
    assert rows[1][3] == round(Decimal(stored) / (720 * 2**30), 6)
