"""The benchmark runs end to end on a tiny dataset, so that it cannot rot. Its timings are
not judged here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_benchmark_runs_and_its_figures_match_the_ground_truth(aws_env: None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--objects", "600", "--repeat", "1",
         "--db-rows", "500"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "figures: equal to the ground truth for all 20 customers"
    assert any(line.startswith("c/a = ") and "c/b = " in line for line in lines)
    assert any(line.startswith("c  storage-calc run") for line in lines)
    assert any(line.startswith("database: 500 ImageStorage rows") for line in lines)
    assert any(line.startswith("  rewrite ") for line in lines)
