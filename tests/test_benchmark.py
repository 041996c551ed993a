"""The benchmark runs end to end on a tiny dataset, so that it cannot rot. Its timings are
not judged here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


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
