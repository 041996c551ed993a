"""What operators read: `runs`, `report usage|drift|orphans|quota`, `db prune` and the quota
warnings, each after real runs on a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from click.testing import Result

from storage_calc import reports
from tests.conftest import STORAGE, THUMBS

Invoke = Callable[..., Result]
Put = Callable[[str, dict[str, int]], None]


@pytest.fixture
def two_customers(register: Callable[..., None], put: Put) -> None:
    register("2/5/a", "2/5/b", "2/6/c", "3/1/d")
    put(STORAGE, {"2/5/a": 3000, "2/5/b": 2048, "2/6/c": 1024, "3/1/d": 100})
    put(THUMBS, {"2/5/a/open/100.jpg": 10})
    put(STORAGE, {"2/5/gone/original": 500, "2/6/lost": 70})


def json_out(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def lines(result: Result) -> list[str]:
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


def test_runs_lists_the_latest_run_first_with_its_figures(
    two_customers: None, invoke: Invoke
) -> None:
    invoke("run", "--customer", "3")
    invoke("run")
    table = lines(invoke("runs"))
    assert table[0].split()[:6] == ["id", "started", "(UTC)", "took", "scope", "outcome"]
    assert table[1].split()[0] == "2" and " all " in table[1] and " done " in table[1]
    assert table[2].split()[0] == "1" and " customer 3 " in table[2]
    assert "6.6 KiB" in table[1]  # 6,752 bytes listed


def test_runs_json_has_exact_bytes_and_counts(two_customers: None, invoke: Invoke) -> None:
    invoke("run")
    [run] = json_out(invoke("runs", "--json"))
    assert run | {"started": None, "finished": None, "seconds": None} == {
        "id": 1, "started": None, "finished": None, "seconds": None, "scope": "all",
        "shard": None, "outcome": "done", "customers": 2, "customers_failed": 0,
        "customers_skipped": 0, "objects": 7, "bytes": 6752, "assets": 4, "orphans": 2,
        "orphan_bytes": 570, "unattributed": 0, "uncounted": [], "drift_bytes": 6182, "misfiled": 0,
        "error": None,
    }  # fmt: skip
    assert run["seconds"] >= 0


def test_runs_record_which_customers_failed(
    two_customers: None, invoke: Invoke, fail_listing: Callable[..., None]
) -> None:
    fail_listing("prefix=3%2F")
    assert invoke("run").exit_code == 1
    [run] = json_out(invoke("runs", "--json"))
    assert (run["outcome"], run["customers"], run["customers_failed"]) == ("failed", 2, 1)
    assert run["error"].startswith("customer 3: ")


def test_runs_without_history_says_so(invoke: Invoke) -> None:
    assert lines(invoke("runs")) == ["no runs recorded yet"]


def test_usage_shows_customers_and_spaces_in_binary_units(
    two_customers: None, invoke: Invoke
) -> None:
    invoke("run")
    table = lines(invoke("report", "usage"))
    customers, spaces = table[: table.index("")], table[table.index("") + 1 :]
    assert [line.split()[:3] for line in customers[1:]] == [
        ["2", "default", "3"], ["3", "default", "1"],
    ]  # fmt: skip
    assert "5.9 KiB" in customers[1]  # 6,072 bytes
    assert [line.split()[:4] for line in spaces[1:]] == [
        ["1", "2", "5", "2"], ["2", "2", "6", "1"], ["3", "3", "1", "1"],
    ]  # fmt: skip


def test_usage_json_has_exact_bytes_and_policy_limits(two_customers: None, invoke: Invoke) -> None:
    invoke("run")
    usage = json_out(invoke("report", "usage", "--customer", "2", "--json"))
    [customer] = usage["customers"]
    assert customer | {"last_calculated": None} == {
        "customer": 2, "storage_policy": "default", "images": 3, "max_images": 1_000_000_000,
        "images_percent": 0.0, "size_bytes": 6072, "max_size_bytes": 1_125_899_906_842_624,
        "size_percent": 0.0, "thumbnails_bytes": 10, "last_calculated": None,
    }  # fmt: skip
    assert [(s["space"], s["size_bytes"]) for s in usage["spaces"]] == [(5, 5048), (6, 1024)]


def test_drift_shows_the_change_since_the_first_run_of_the_period(
    two_customers: None, invoke: Invoke, put: Put
) -> None:
    invoke("run")
    put(STORAGE, {"2/5/b": 4096})
    invoke("run")
    drift, _ = json_out(invoke("report", "drift", "--json"))
    assert (drift["customer"], drift["space"], drift["runs"]) == (2, None, 2)
    assert (drift["size_before"], drift["size_after"]) == (0, 8120)
    assert (drift["images_before"], drift["images_after"]) == (0, 3)
    assert drift["corrected_bytes"] == 6082 + 2048


def test_drift_leaves_out_runs_before_the_period(
    two_customers: None, invoke: Invoke, put: Put, conn: Any
) -> None:
    invoke("run")
    conn.execute("UPDATE storage_calc.runs SET started = started - interval '2 days'")
    put(STORAGE, {"2/5/b": 4096})
    invoke("run")
    [drift] = json_out(invoke("report", "drift", "--json"))
    assert (drift["customer"], drift["size_before"], drift["size_after"]) == (2, 6072, 8120)
    assert drift["corrected_bytes"] == 2048
    assert "+2.0 KiB" in lines(invoke("report", "drift"))[1]


def test_drift_corrected_counts_each_runs_correction_not_the_growth_between_runs(
    two_customers: None, invoke: Invoke, conn: Any
) -> None:
    invoke("run", "--customer", "3")
    conn.execute(  # the platform's tallies drift by 40 bytes between runs
        'UPDATE "CustomerStorage" SET "TotalSizeOfStoredImages" = 60 WHERE "Customer" = 3'
    )
    invoke("run", "--customer", "3")
    [drift] = json_out(invoke("report", "drift", "--json"))
    assert (drift["size_before"], drift["size_after"], drift["corrected_bytes"]) == (0, 100, 140)


def test_drift_of_one_customer_includes_its_spaces(two_customers: None, invoke: Invoke) -> None:
    invoke("run")
    rows = json_out(invoke("report", "drift", "--customer", "2", "--json"))
    assert [(r["space"], r["size_after"]) for r in rows] == [(None, 6072), (5, 5048), (6, 1024)]


def test_orphans_per_customer_come_from_its_latest_complete_computation(
    two_customers: None, invoke: Invoke, s3: Any
) -> None:
    invoke("run")
    s3.delete_object(Bucket=STORAGE, Key="2/6/lost")
    invoke("run", "--customer", "2", "--space", "5")  # one space: not a complete computation
    [customer] = json_out(invoke("report", "orphans", "--json"))
    assert (customer["customer"], customer["objects"], customer["bytes"]) == (2, 2, 570)
    invoke("run", "--customer", "2")
    [customer] = json_out(invoke("report", "orphans", "--json"))
    assert (customer["objects"], customer["bytes"], customer["spaces"]) == (1, 500, 1)


def test_orphans_of_one_customer_show_spaces_and_example_keys(
    two_customers: None, invoke: Invoke
) -> None:
    invoke("run")
    table = lines(invoke("report", "orphans", "--customer", "2"))
    assert [line.split() for line in table[1:]] == [
        ["2", "5", "1", "500", "B", "1", "s3://dlcs-storage/2/5/gone"],
        ["2", "6", "1", "70", "B", "1", "s3://dlcs-storage/2/6/lost"],
    ]


def test_no_orphans_says_so(register: Callable[..., None], put: Put, invoke: Invoke) -> None:
    register("2/5/a")
    put(STORAGE, {"2/5/a": 1})
    invoke("run")
    assert lines(invoke("report", "orphans")) == ["no orphans found"]


@pytest.fixture
def small_policy(conn: Any, register: Callable[..., None]) -> Callable[..., None]:
    """Customer 2 on a policy of 10 images and 1,000 bytes, storing `images` assets of
    `size` bytes in total (the first asset takes the remainder)."""
    conn.execute(
        "INSERT INTO \"StoragePolicies\" VALUES ('small', 10, 1000);"
        ' INSERT INTO "CustomerStorage" ("Customer", "Space", "StoragePolicy",'
        ' "NumberOfStoredImages", "TotalSizeOfStoredImages", "TotalSizeOfThumbnails")'
        " VALUES (2, 0, 'small', 0, 0, 0)"
    )

    def store(invoke: Invoke, put: Put, images: int, size: int) -> None:
        ids = [f"2/5/a{n}" for n in range(images)]
        register(*ids)
        sizes = [size // images] * images
        sizes[0] += size - sum(sizes)
        put(STORAGE, dict(zip(ids, sizes, strict=True)))
        assert invoke("run").exit_code == 0

    return store


@pytest.mark.parametrize(
    ("images", "size", "status"),
    [
        (8, 899, None),  # 80 % of the images, 89.9 % of the bytes
        (9, 10, "near"),  # exactly 90 % of the images
        (1, 900, "near"),  # exactly 90 % of the bytes
        (10, 1000, "near"),  # at the limits, not past them
        (11, 10, "over"),
        (1, 1001, "over"),
    ],
)
def test_quota_lists_customers_from_exactly_the_margin(
    small_policy: Callable[..., None],
    invoke: Invoke,
    put: Put,
    images: int,
    size: int,
    status: str | None,
) -> None:
    small_policy(invoke, put, images, size)
    rows = json_out(invoke("report", "quota", "--json"))
    assert [row["status"] for row in rows] == ([status] if status else [])


def test_quota_margin_is_configurable(
    small_policy: Callable[..., None], invoke: Invoke, put: Put, conn: Any
) -> None:
    small_policy(invoke, put, 8, 10)
    assert json_out(invoke("report", "quota", "--quota-margin", "80.1", "--json")) == []
    [row] = json_out(invoke("report", "quota", "--quota-margin", "80%", "--json"))
    assert (row["customer"], row["images"], row["max_images"], row["images_percent"]) == (
        2, 8, 10, 80.0,
    )  # fmt: skip
    assert [use.storage_policy for use in reports.quota_use(conn, Decimal(80))] == ["small"]


def test_quota_table_shows_use_against_limits(
    small_policy: Callable[..., None], invoke: Invoke, put: Put
) -> None:
    small_policy(invoke, put, 11, 950)
    table = lines(invoke("report", "quota"))
    assert table[1].split() == [
        "2", "small", "over", "11", "of", "10", "110.0%", "950", "B", "of", "1000", "B", "95.0%",
    ]  # fmt: skip


def test_a_run_logs_a_warning_for_a_customer_near_quota(
    small_policy: Callable[..., None], invoke: Invoke, put: Put
) -> None:
    small_policy(invoke, put, 9, 10)
    result = invoke("run", "--quota-margin", "90")
    warnings = [json.loads(line) for line in result.stderr.splitlines() if "quota_" in line]
    assert [(w["event"], w["level"], w["customer"], w["images"]) for w in warnings] == [
        ("quota_near", "warning", 2, 9)
    ]
    assert "quota_" not in invoke("run", "--quota-margin", "95").stderr


def test_an_empty_quota_report_names_the_margin(invoke: Invoke) -> None:
    assert lines(invoke("report", "quota")) == ["no customer uses 90% or more of a policy limit"]


@pytest.mark.parametrize("margin", ["0", "100.5", "-1", "ninety", "nan"])
def test_a_bad_margin_is_one_line_and_exit_2(invoke: Invoke, margin: str) -> None:
    result = invoke("report", "quota", "--quota-margin", margin)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "is not a percentage above 0 and at most 100" in result.stderr


def test_prune_deletes_old_runs_with_their_history(
    two_customers: None, invoke: Invoke, conn: Any
) -> None:
    invoke("run")
    invoke("run")
    conn.execute("UPDATE storage_calc.runs SET started = now() - interval '91 days' WHERE id = 1")
    result = invoke("db", "prune", "--older-than", "90d")
    assert result.exit_code == 0
    assert result.stderr.startswith("deleted 1 runs started before ")
    assert conn.execute("SELECT id FROM storage_calc.runs").fetchall() == [(2,)]
    for table in ("changes", "orphans", "customer_runs"):
        assert conn.execute(f"SELECT DISTINCT run_id FROM storage_calc.{table}").fetchall() in (
            [(2,)],
            [],
        )
    assert conn.execute("SELECT count(*) FROM storage_calc.customer_runs").fetchone() == (2,)


def test_prune_never_touches_the_figures(two_customers: None, invoke: Invoke, conn: Any) -> None:
    invoke("run")
    before = conn.execute('SELECT * FROM "CustomerStorage" ORDER BY 1, 2').fetchall()
    assert invoke("db", "prune", "--older-than", "0h").exit_code == 0
    assert conn.execute("SELECT count(*) FROM storage_calc.runs").fetchone() == (0,)
    assert conn.execute('SELECT * FROM "CustomerStorage" ORDER BY 1, 2').fetchall() == before


@pytest.mark.parametrize("age", ["90", "90x", "d", "-1d", "1.5d"])
def test_a_bad_age_is_one_line_and_exit_2(invoke: Invoke, age: str) -> None:
    result = invoke("db", "prune", "--older-than", age)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "is not an age" in result.stderr
