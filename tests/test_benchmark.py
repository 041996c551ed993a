"""The benchmark runs end to end on a tiny dataset, so that it cannot rot, and refuses a run
that failed or miscounted. Its timings are not judged here."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.dataset import ODD_NAMES, STRAYS, generate
from benchmarks.figures import check_run
from storage_calc import calculator
from storage_calc.config import Settings
from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_the_benchmark_runs_and_its_figures_match_the_ground_truth(
    aws_env: None, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--objects", "600", "--repeat", "1",
         "--db-rows", "500", "--cache", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("figures: equal to the ground truth after every run")
    assert any(line.startswith("a/floor = ") and "a/s5cmd = " in line for line in lines)
    assert any(line.startswith("b/a = ") and "d/a = " in line for line in lines)
    for variant in ("a  storage-calc, spread", "d  storage-calc, dominant"):
        assert any(line.startswith(variant) for line in lines)
    assert any(line.startswith("database: 500 ImageStorage rows") for line in lines)
    assert any(line.startswith("  rewrite ") for line in lines)


@pytest.mark.slow
def test_the_memory_benchmark_runs_and_checks_the_customer_figures(
    aws_env: None, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "benchmarks.memory", "--assets", "500", "--objects", "100",
               "--cache", str(tmp_path)]  # fmt: skip
    for _ in range(2):  # the second time from the cache
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        lines = result.stdout.splitlines()
        assert (
            lines[-1]
            == "figures: equal to the ground truth after both runs, NumberOfStoredImages 500"
        )
        assert any(line.startswith("rerun, flagging, rewriting") for line in lines)
    assert "reusing" in result.stderr


@pytest.mark.slow
def test_the_inventory_benchmark_runs_and_its_floor_matches_the_ground_truth(
    aws_env: None, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "benchmarks.inventory", "--objects", "7000", "--assets",
               "1000", "--cache", str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    for fmt in ("parquet", "csv"):
        assert any(line.startswith(f"{fmt:<8} {7000:>11,}") for line in lines), result.stdout
        assert f"{fmt}: floor's figures equal the ground truth for every customer" in lines
        assert f"{fmt}: ours's figures equal the ground truth for every customer" in lines
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_check_of_a_run_refuses_a_failed_one_and_a_wrong_unattributed_count(
    register: Callable[..., None], put: Callable[..., None], fail_listing: Callable[..., None],
    settings: Settings, s3: S3Client, conn: Any,
) -> None:  # fmt: skip
    register("2/5/a")
    put(STORAGE, {"2/5/a": 1, "+30/4/x": 2, "transient/y": 3})
    calculator.run(settings, s3)
    assert check_run(conn, outside=2) == []
    assert check_run(conn, outside=3) == ["run 1: 2 unattributed keys, expected 3"]
    fail_listing("prefix=%2B30%2F")
    calculator.run(settings, s3)
    problems = check_run(conn, outside=2)
    assert [p.split(":")[0] for p in problems] == ["run 2", "run 2", "run 2"]
    assert "prefixes not counted: s3://dlcs-storage/+30/" in problems[1]


def test_a_dataset_holds_every_odd_kind_of_name_and_the_strays() -> None:
    data = generate(5_000)
    names = {asset.split("/", 2)[2] for asset in data.assets}
    for odd in ODD_NAMES:
        assert any(re.fullmatch(re.escape(odd).replace(r"\{\}", "[0-9]{7}"), n) for n in names), odd
    assert set(STRAYS) <= set(data.storage)
    assert data.outside == len(STRAYS) + sum(
        1 for key in data.storage if key.startswith("transient/")
    )


@pytest.mark.slow
def test_the_billing_benchmark_runs_and_its_byte_hours_match_a_sum_in_sql() -> None:
    command = [sys.executable, "-m", "benchmarks.billing", "--customers", "20", "--spaces", "3",
               "--nights", "40", "--repeat", "1"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("history: 20 customers x 3 spaces, 40 nights")
    assert any(line.split()[:3] == ["figure_commits", "800", "rows"] for line in lines)
    assert any(line.startswith("report billing --month 2026-11 (a table), every") for line in lines)
    assert any(line.startswith("report billing --month 2026-11 --csv (by") for line in lines)
    assert any(line.startswith("byte-hours: equal to the sum computed in SQL") for line in lines)
    assert lines[-1].startswith("storage-calc report billing --month 2026-11 --csv, a process")
